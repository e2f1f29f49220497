"""Progress events on DynamoDB: one item per batch the worker writes.

Item: `job_id` (partition), `seq` (sort: the batch's first event's seq), `last` (its last
event's seq), `events` (the batch as JSON text) and `expires_at` (TTL, the jobs' retention).
A batch holds at most `MAX_BATCH_EVENTS` consecutive seqs, so the events after a cursor `c`
are in the batches whose first seq is above `c - MAX_BATCH_EVENTS`: one Query, no index.

Writing a batch is one PutItem on the condition that its key is free: a retried write of the
same batch is recognised (same events) and succeeds; another batch at that key — another
attempt of the job wrote meanwhile — raises `EventSeqConflictError`, and the writer renumbers
after `last_seq`. Readers skip any seq not above the last one returned, so a reader never
sees a seq twice or out of order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..errors import EventSeqConflictError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Events in one stored batch at most (the reader's look-back depends on it).
MAX_BATCH_EVENTS = 25
#: Items a read Query asks for per page.
_PAGE_ITEMS = 40


def _dumps(events: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(events), ensure_ascii=False, separators=(",", ":"))


class DynamoEventStore:
    def __init__(self, client: DynamoDBClient, table: str, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention_seconds = retention_days * 24 * 3600

    def last_seq(self, job_id: str) -> int:
        answer = self._client.query(
            TableName=self._table,
            KeyConditionExpression="job_id = :j",
            ExpressionAttributeValues={":j": {"S": job_id}},
            ProjectionExpression="#l",
            ExpressionAttributeNames={"#l": "last"},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = answer.get("Items") or []
        return int(items[0]["last"]["N"]) if items else 0

    def append(self, job_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        if len(events) > MAX_BATCH_EVENTS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_EVENTS} events")
        seqs = [int(e["seq"]) for e in events]
        if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            raise ValueError("a batch's seqs must be consecutive")
        body = _dumps(events)
        key = {"job_id": {"S": job_id}, "seq": {"N": str(seqs[0])}}
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **key,
                    "last": {"N": str(seqs[-1])},
                    "events": {"S": body},
                    "expires_at": {"N": str(int(time.time()) + self._retention_seconds)},
                },
                ConditionExpression="attribute_not_exists(seq)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            held = self._client.get_item(
                TableName=self._table,
                Key=key,
                ConsistentRead=True,
                ProjectionExpression="events",
            ).get("Item")
            if held is not None and held.get("events", {}).get("S") == body:
                return  # this very batch, written before (a retried write)
            raise EventSeqConflictError(f"seq {seqs[0]} of job {job_id} is taken") from None

    def read(self, job_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        low = max(after - MAX_BATCH_EVENTS, 0)
        found: list[dict[str, Any]] = []
        last = after
        start: dict[str, Any] | None = None
        while len(found) < limit:
            kwargs: dict[str, Any] = {}
            if start is not None:
                kwargs["ExclusiveStartKey"] = start
            answer = self._client.query(
                TableName=self._table,
                KeyConditionExpression="job_id = :j AND seq > :low",
                ExpressionAttributeValues={":j": {"S": job_id}, ":low": {"N": str(low)}},
                Limit=_PAGE_ITEMS,
                # Consistent: a reader that saw the job terminal must see its last batch
                # (written before the terminal transition) to say `done` truthfully.
                ConsistentRead=True,
                **kwargs,
            )
            for item in answer.get("Items") or []:
                if int(item["last"]["N"]) <= last:
                    continue
                for event in json.loads(item["events"]["S"]):
                    seq = event.get("seq")
                    if isinstance(seq, int) and seq > last and len(found) < limit:
                        found.append(event)
                        last = seq
            start = answer.get("LastEvaluatedKey")
            if not start:
                break
        return found
