"""Once per approval: the notice that a job waits, and how its webhook's delivery went.

A bookkeeping attribute on the job item, outside the Job model (its reads ignore it, and
writing it bumps no version: a job's ETag does not change), `approval_notice`:
`{approval_id, webhook: none|pending|delivered|failed, attempts, last_error?, delivered_at?}`.

The notifier *claims* the notice of an approval before it publishes: a conditional write that
succeeds only while the job still waits on that approval and no notice for it exists, so a
redelivered stream record sends nothing twice, and a later wait of the same job (a new
approval id) is noticed again. A fault after the claim releases it (the record is retried).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from botocore.exceptions import ClientError

from ..adapters.dynamo import from_item, serialize

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WebhookState = Literal["none", "pending", "delivered", "failed"]


@dataclass(frozen=True)
class ApprovalNotice:
    approval_id: str
    webhook: WebhookState = "none"
    attempts: int = 0
    last_error: str | None = None
    delivered_at: str | None = None


class ApprovalNotices(Protocol):
    def claim(self, job_id: str, approval_id: str, *, webhook: bool) -> bool:
        """Take the notice of `approval_id`: False when it was taken already, or when the job
        no longer waits on it."""

    def release(self, job_id: str, approval_id: str) -> None:
        """Give a claim back (its publishing failed: the record is retried)."""

    def get(self, job_id: str) -> ApprovalNotice | None: ...

    def record(self, job_id: str, notice: ApprovalNotice) -> bool:
        """Store the webhook's outcome if the notice is still `notice.approval_id`'s."""


def _needle(approval_id: str) -> str:
    """How the approval id reads inside the job's `pending_approval` (compact JSON text)."""
    return json.dumps({"approval_id": approval_id}, separators=(",", ":"))[1:-1]


def _failed_condition(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoApprovalNotices:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _update(self, job_id: str, **arguments: Any) -> bool:
        try:
            self._client.update_item(
                TableName=self._table, Key={"job_id": serialize(job_id)}, **arguments
            )
        except ClientError as exc:
            if _failed_condition(exc):
                return False
            raise
        return True

    def claim(self, job_id: str, approval_id: str, *, webhook: bool) -> bool:
        notice = ApprovalNotice(approval_id, "pending" if webhook else "none")
        return self._update(
            job_id,
            UpdateExpression="SET approval_notice = :notice",
            ConditionExpression="#s = :awaiting AND contains(pending_approval, :needle) "
            "AND (attribute_not_exists(approval_notice) OR approval_notice.approval_id <> :id)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":notice": serialize(_plain(notice)),
                ":awaiting": serialize("awaiting_approval"),
                ":needle": serialize(_needle(approval_id)),
                ":id": serialize(approval_id),
            },
        )

    def release(self, job_id: str, approval_id: str) -> None:
        self._update(
            job_id,
            UpdateExpression="REMOVE approval_notice",
            ConditionExpression="approval_notice.approval_id = :id",
            ExpressionAttributeValues={":id": serialize(approval_id)},
        )

    def get(self, job_id: str) -> ApprovalNotice | None:
        item = self._client.get_item(
            TableName=self._table,
            Key={"job_id": serialize(job_id)},
            ProjectionExpression="approval_notice",
            ConsistentRead=True,
        ).get("Item")
        raw = from_item(item).get("approval_notice") if item else None
        if not raw:
            return None
        return ApprovalNotice(
            approval_id=str(raw["approval_id"]),
            webhook=raw.get("webhook", "none"),
            attempts=int(raw.get("attempts", 0)),
            last_error=raw.get("last_error"),
            delivered_at=raw.get("delivered_at"),
        )

    def record(self, job_id: str, notice: ApprovalNotice) -> bool:
        return self._update(
            job_id,
            UpdateExpression="SET approval_notice = :notice",
            ConditionExpression="approval_notice.approval_id = :id",
            ExpressionAttributeValues={
                ":notice": serialize(_plain(notice)),
                ":id": serialize(notice.approval_id),
            },
        )


def _plain(notice: ApprovalNotice) -> dict[str, Any]:
    return {k: v for k, v in notice.__dict__.items() if v is not None}
