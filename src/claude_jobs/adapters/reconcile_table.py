"""The reconciler's view of the jobs table, and the worker's note of when a message is due.

Two bookkeeping attributes on a job item, outside the Job model (its reads ignore them, and
writing them bumps no version: a job's ETag does not change):

- `message_due` (epoch seconds): the latest time the job's message is expected to be received
  — set by the worker when it defers the job or sends its message back after a fault, and by
  the reconciler when it re-drives it;
- `redrives`: how many times the reconciler re-sent its message.

On a tenant's usage item (`usage#<tenant>`), `drift` holds the last run's unrepaired drift.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..clock import epoch
from ..job_message import JobMessage
from ..observability import get_logger
from ..reconcile.reconciler import AWAITING_APPROVAL, Slots, Snapshot, UnfinishedJob
from .dynamo import from_item, serialize

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

_USAGE_PREFIX = "usage#"


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _epoch(value: Any) -> float:
    from datetime import datetime

    if isinstance(value, (int, float)):
        return float(value)
    return float(epoch(datetime.fromisoformat(str(value))))


def _pending_approval(raw: Any) -> tuple[str | None, float | None]:
    """(approval_id, expires_at as epoch seconds) of a job's `pending_approval` (JSON text)."""
    if not raw:
        return None, None
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        return str(value["approval_id"]), _epoch(value["expires_at"])
    except (ValueError, KeyError, TypeError):  # unreadable: left alone, never a failed run
        get_logger().error("a job's pending approval is unreadable")
        return None, None


class DynamoReconcileStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def snapshot(self) -> Snapshot:
        """Every queued, running or awaiting_approval job and every tenant's counters."""
        jobs: list[UnfinishedJob] = []
        slots: dict[str, Slots] = {}
        arguments: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(job_id, :usage) "
            "OR #s IN (:queued, :running, :awaiting)",
            "ProjectionExpression": "job_id, tenant_id, #s, created_at, lease_until, "
            "message_due, redrives, pending, running, drift, pending_approval",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":usage": serialize(_USAGE_PREFIX),
                ":queued": serialize("queued"),
                ":running": serialize("running"),
                ":awaiting": serialize(AWAITING_APPROVAL),
            },
            "ConsistentRead": True,
        }
        while True:
            page = self._client.scan(**arguments)
            for raw in page.get("Items", []):
                item = from_item(raw)
                job_id = str(item["job_id"])
                if job_id.startswith(_USAGE_PREFIX):
                    drift = item.get("drift")
                    tenant = job_id[len(_USAGE_PREFIX) :]
                    slots[tenant] = Slots(
                        tenant,
                        int(item.get("pending", 0)),
                        int(item.get("running", 0)),
                        tuple(json.loads(drift)) if drift else None,
                    )
                elif "tenant_id" in item and "created_at" in item:
                    lease = item.get("lease_until")
                    due = item.get("message_due")
                    approval_id, expires = _pending_approval(item.get("pending_approval"))
                    jobs.append(
                        UnfinishedJob(
                            job_id,
                            str(item["tenant_id"]),
                            str(item["status"]),
                            _epoch(item["created_at"]),
                            float(lease) if lease is not None else None,
                            float(due) if due is not None else None,
                            int(item.get("redrives", 0)),
                            approval_id,
                            expires,
                        )
                    )
            if "LastEvaluatedKey" not in page:
                return Snapshot(jobs, slots)
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def redriven(self, job: UnfinishedJob, next_due: float) -> bool:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"job_id": serialize(job.job_id)},
                UpdateExpression="SET message_due = :due ADD redrives :one",
                ConditionExpression="#s = :status",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":due": serialize(int(next_due)),
                    ":one": serialize(1),
                    ":status": serialize(job.status),
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def _usage_write(self, slots: Slots, update: str, values: dict[str, Any]) -> bool:
        condition = (
            "(attribute_not_exists(pending) OR pending = :p) "
            "AND (attribute_not_exists(running) OR running = :r)"
        )
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"job_id": serialize(f"{_USAGE_PREFIX}{slots.tenant_id}")},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues={
                    ":p": serialize(slots.pending),
                    ":r": serialize(slots.running),
                    **{name: serialize(value) for name, value in values.items()},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def note_drift(self, slots: Slots, counted: tuple[int, int]) -> None:
        seen = json.dumps([slots.pending, slots.running, *counted])
        self._usage_write(slots, "SET drift = :d", {":d": seen})

    def repair(self, slots: Slots, counted: tuple[int, int]) -> bool:
        return self._usage_write(
            slots,
            "SET pending = :np, running = :nr REMOVE drift",
            {":np": counted[0], ":nr": counted[1]},
        )

    def clear_drift(self, slots: Slots) -> None:
        self._usage_write(slots, "REMOVE drift", {})


def expect_message(client: DynamoDBClient, table_name: str, job_id: str, due: float) -> None:
    """Note that a queued job's message is due by `due` (epoch seconds): the reconciler
    leaves it alone until then. Best effort: the worst a missed note does is one early
    duplicate message (skipped by the worker's conditional claim)."""
    try:
        client.update_item(
            TableName=table_name,
            Key={"job_id": serialize(job_id)},
            UpdateExpression="SET message_due = :due",
            ConditionExpression="#s = :queued",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":due": serialize(int(due)), ":queued": serialize("queued")},
        )
    except Exception as exc:  # best effort (see above)
        if not (isinstance(exc, ClientError) and _conditional_failed(exc)):
            get_logger().warning("could not note the message's due time: %s", type(exc).__name__)


class SqsJobWaker:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def wake(self, job_id: str, tenant_id: str) -> None:
        body = JobMessage(job_id=job_id, tenant_id=tenant_id).body()
        self._client.send_message(QueueUrl=self._url, MessageBody=body)
