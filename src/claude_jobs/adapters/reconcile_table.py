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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..clock import epoch
from ..job_message import JobMessage
from ..job_status import JobStatus
from ..observability import get_logger
from ..reconcile.reconciler import Slots, Snapshot, UnfinishedJob
from ..resources import OPEN_SHARDS
from .dynamo import from_item, serialize
from .job_items import OPEN_INDEX, OPEN_SHARD, open_shard, open_shard_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

_USAGE_PREFIX = "usage#"
_UNFINISHED = frozenset(status.value for status in JobStatus if not status.is_terminal)
_PROJECTION = (
    "job_id, tenant_id, #s, created_at, lease_until, message_due, redrives, pending, running,"
    " drift, pending_approval"
)


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
        """Every queued, running or awaiting_approval job and every tenant's counters: the
        keys from the sparse unfinished-jobs index (`by_open`, one query a shard), then the
        items themselves read consistently (BatchGetItem). Finished jobs are never read: the
        cost of a run follows the unfinished jobs, not the jobs the table keeps. A job that
        ended between the two reads is dropped by its status, as the scan's filter did."""
        jobs: list[UnfinishedJob] = []
        slots: dict[str, Slots] = {}
        for raw in self._consistent_items(self._open_keys()):
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
            elif item.get("status") in _UNFINISHED and "tenant_id" in item and "created_at" in item:
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
        return Snapshot(jobs, slots)

    def _open_keys(self) -> list[str]:
        """The keys in the unfinished-jobs index, every shard (the index is eventually
        consistent: a job created a moment ago may be missing, one ended may still show)."""
        keys: list[str] = []
        for shard in range(OPEN_SHARDS):
            arguments: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": OPEN_INDEX,
                "KeyConditionExpression": "#o = :o",
                "ExpressionAttributeNames": {"#o": OPEN_SHARD},
                "ExpressionAttributeValues": {":o": serialize(open_shard_key(shard))},
            }
            while True:
                page = self._client.query(**arguments)
                keys.extend(str(item["job_id"]["S"]) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return keys

    def _consistent_items(self, keys: list[str]) -> list[dict[str, Any]]:
        """The items of `keys` read consistently, 100 a request; the keys DynamoDB leaves
        unprocessed are asked again after a pause (doubling, as the SDKs advise)."""
        found: list[dict[str, Any]] = []
        pending: list[Any] = [{"job_id": {"S": key}} for key in dict.fromkeys(keys)]
        pause = 0.05
        while pending:
            response = self._client.batch_get_item(
                RequestItems={
                    self._table: {
                        "Keys": pending[:100],
                        "ConsistentRead": True,
                        "ProjectionExpression": _PROJECTION,
                        "ExpressionAttributeNames": {"#s": "status"},
                    }
                }
            )
            found.extend(response.get("Responses", {}).get(self._table, []))
            unprocessed = response.get("UnprocessedKeys", {})
            left = list(unprocessed[self._table]["Keys"]) if self._table in unprocessed else []
            if left:
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
            pending = left + pending[100:]
        return found

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


@dataclass
class Backfill:
    """What `backfill_open_keys` did: items examined by the scan, keys given, and items that
    changed meanwhile (ended, or given the key by a write of their own)."""

    examined: int = 0
    given: int = 0
    skipped: int = 0


def backfill_open_keys(client: DynamoDBClient, table_name: str) -> Backfill:
    """Give the unfinished-jobs index's key to the unfinished jobs and usage counters written
    before the index existed (deployed over a table with jobs in flight): a scan of the items
    without the key, then for each a write conditional on it still being unfinished and
    without the key, so that a job ending meanwhile is left alone. Safe to run again, and
    while the service runs."""
    names = {"#s": "status", "#o": OPEN_SHARD, "#k": "job_id"}
    unfinished = {f":u{i}": {"S": status} for i, status in enumerate(sorted(_UNFINISHED))}
    values = {":usage": {"S": _USAGE_PREFIX}, **unfinished}
    wanted = (
        f"attribute_not_exists(#o) AND (#s IN ({', '.join(unfinished)}) OR begins_with(#k, :usage))"
    )
    done = Backfill()
    scan: dict[str, Any] = {
        "TableName": table_name,
        "ProjectionExpression": "#k",
        "FilterExpression": wanted,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
    }
    while True:
        page = client.scan(**scan)
        done.examined += int(page.get("ScannedCount", 0))
        for item in page.get("Items", []):
            key = item["job_id"]["S"]
            try:
                client.update_item(
                    TableName=table_name,
                    Key={"job_id": {"S": key}},
                    UpdateExpression="SET #o = :shard",
                    ConditionExpression=f"attribute_exists(#k) AND {wanted}",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**values, ":shard": serialize(open_shard(key))},
                )
                done.given += 1
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
                done.skipped += 1
        if "LastEvaluatedKey" not in page:
            return done
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
