"""Sessions on the jobs table (`session#<id>` items): the session repository, and the write a
job's create makes to take its session in the same transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..clock import iso
from ..errors import SessionConflictError
from ..models import SessionRecord
from ..ports import SessionClaim
from .dynamo import from_item, serialize
from .job_items import SESSION_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def session_item_id(session_id: str) -> str:
    return f"{SESSION_PREFIX}{session_id}"


def session_condition(
    tenant_id: str, expected_active: str | None
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The condition of a write that continues (or deletes) a session: it exists, is the
    tenant's, is not deleted, and is held by the job it was read with (or by none)."""
    values: dict[str, dict[str, Any]] = {":tenant": {"S": tenant_id}}
    held = "attribute_not_exists(active_job)"
    if expected_active is not None:
        values[":expected"] = {"S": expected_active}
        held = f"({held} OR active_job = :expected)"
    condition = (
        "attribute_exists(job_id) AND tenant_id = :tenant AND attribute_not_exists(deleted) "
        f"AND {held}"
    )
    return condition, values


def session_write(table: str, session: SessionClaim) -> dict[str, Any]:
    """The transaction item that creates or continues a session for a new job."""
    key = {"job_id": {"S": session_item_id(session.session_id)}}
    at = {"S": iso(session.at)}
    if session.new:
        return {
            "Put": {
                "TableName": table,
                "Item": {
                    **key,
                    "session_id": {"S": session.session_id},
                    "tenant_id": {"S": session.tenant_id},
                    "created_at": at,
                    "updated_at": at,
                    "job_ids": {"L": [{"S": session.job_id}]},
                    "active_job": {"S": session.job_id},
                    "expires_at": serialize(session.expires_at),
                },
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
        }
    condition, values = session_condition(session.tenant_id, session.expected_active)
    return {
        "Update": {
            "TableName": table,
            "Key": key,
            "UpdateExpression": (
                "SET active_job = :job, updated_at = :at, expires_at = :exp, "
                "job_ids = list_append(if_not_exists(job_ids, :none), :jobs)"
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {
                **values,
                ":job": {"S": session.job_id},
                ":at": at,
                ":exp": serialize(session.expires_at),
                ":none": {"L": []},
                ":jobs": {"L": [{"S": session.job_id}]},
            },
        }
    }


class DynamoSessionRepository:
    """The `SessionRepository` on the jobs table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, session_id: str) -> SessionRecord | None:
        item = self._client.get_item(
            TableName=self._table,
            Key={"job_id": {"S": session_item_id(session_id)}},
            ConsistentRead=True,
        ).get("Item")
        if item is None or "tenant_id" not in item:
            return None
        data = from_item(item)
        data.pop("job_id", None)
        return SessionRecord.model_validate(data)

    def mark_deleted(self, session_id: str, tenant_id: str, expected_active: str | None) -> None:
        condition, values = session_condition(tenant_id, expected_active)
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": session_item_id(session_id)}},
                UpdateExpression="SET deleted = :yes",
                ConditionExpression=condition,
                ExpressionAttributeValues={**values, ":yes": {"BOOL": True}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise SessionConflictError(f"session {session_id} changed") from None

    def remove(self, session_id: str) -> None:
        self._client.delete_item(
            TableName=self._table, Key={"job_id": {"S": session_item_id(session_id)}}
        )
