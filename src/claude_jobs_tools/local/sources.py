"""The local stack's other event sources: the jobs table's stream (→ the notifier function) and
the trigger relay queue (S3 notifications and bus events → the trigger function).

The emulator has no event source mappings and notifies no Lambda, so each source is a thread
that polls and invokes the function's pool, the way the AWS wiring would.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class PollingSource:
    """A thread calling `poll_once()` until stopped; `poll_once` returns how much it handled
    (nothing → a short pause before the next call)."""

    def __init__(self, name: str, poll_once: Callable[[], int], idle_seconds: float = 0.5):
        self.name = name
        self._poll_once = poll_once
        self._idle = idle_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self._poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s failed; retrying", self.name)
                handled = 0
            if not handled:
                self._stop.wait(self._idle)


class StreamPoller:
    """The jobs table's stream in Lambda's record shape, read with a fresh shard iterator on
    every poll (after the last sequence number delivered).

    A long-lived iterator does not work against moto: when a transaction fails (an idempotent
    replay does), moto puts back a copy of the table, stream included, and an iterator on the
    old stream never sees another record. Records are de-duplicated by `eventID`, since moto's
    sequence numbers can repeat under concurrent writes."""

    def __init__(self, dynamodb: Any, table_name: str, streams: Any | None = None) -> None:
        from .table_stream import streams_client

        self._dynamodb = dynamodb
        self._table = table_name
        self._streams = streams or streams_client()
        self._after: dict[str, str] = {}  # shard id → last sequence number delivered
        self._seen: OrderedDict[str, None] = OrderedDict()

    def poll(self, limit: int = 100) -> list[dict[str, Any]]:
        from .table_stream import lambda_record

        table = self._dynamodb.describe_table(TableName=self._table)["Table"]
        stream_arn = table["LatestStreamArn"]
        shards = self._streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
        records: list[dict[str, Any]] = []
        for shard in shards["Shards"]:
            shard_id = shard["ShardId"]
            position: dict[str, str] = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
                if (after := self._after.get(shard_id))
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self._streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard_id, **position
            )["ShardIterator"]
            got = self._streams.get_records(ShardIterator=iterator, Limit=limit)["Records"]
            if not got:
                continue
            self._after[shard_id] = max((r["dynamodb"]["SequenceNumber"] for r in got), key=int)
            for record in got:
                if record["eventID"] in self._seen:
                    continue
                self._seen[record["eventID"]] = None
                records.append(lambda_record(record, stream_arn))
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        return records


def stream_to_function(reader: Any, invoke: Callable[[dict[str, Any]], Any]) -> Callable[[], int]:
    """Deliver new stream records to the function in batches, as the DynamoDB event source
    does (a record it reports failed is logged: the local stack does not retry it)."""

    def poll_once() -> int:
        records = reader.poll()
        if records:
            log.debug("notifier: %d stream record(s)", len(records))
            answer = invoke({"Records": records})
            failures = (answer or {}).get("batchItemFailures") if isinstance(answer, dict) else None
            if failures:
                log.warning("the notifier reported %d stream record(s) failed", len(failures))
        return len(records)

    return poll_once


def relay_to_function(
    sqs: Any, queue_url: str, invoke: Callable[[dict[str, Any]], Any]
) -> Callable[[], int]:
    """Hand the relay queue's messages (S3 notifications, bus events) to the function."""
    from .trigger_relay import relay_once

    def poll_once() -> int:
        return relay_once(sqs, queue_url, lambda event, _context: invoke(event), wait_seconds=1)

    return poll_once
