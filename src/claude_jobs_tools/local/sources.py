"""The local stack's other event sources: the jobs table's stream (→ the notifier function) and
the trigger relay queue (S3 notifications and bus events → the trigger function).

The emulator has no event source mappings and notifies no Lambda, so each source is a thread
that polls and invokes the function's pool, the way the AWS wiring would: the stream with the
event source mapping's partial batch responses, bisection, bounded retries and on-failure
destination (:class:`StreamEventSource`), so that no record can hold up the ones after it, and
its filters (a record that matches none of them never reaches the function).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from claude_jobs.resources import StreamSource

from .runtime import ACCOUNT_ID, REGION

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


FailureDestination = Callable[[dict[str, Any]], None]


def sqs_destination(sqs: Any, queue_url: str) -> FailureDestination:
    """An on-failure destination: each record is one message on the queue."""

    def send(record: dict[str, Any]) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(record))

    return send


def _arrival(record: dict[str, Any]) -> float:
    created = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    return float(created) if isinstance(created, int | float) else 0.0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_filter(
    patterns: tuple[Mapping[str, Any], ...],
) -> Callable[[dict[str, Any]], bool]:
    """Lambda's event filtering: does a record match one of `patterns` (EventBridge pattern
    syntax, matched by the emulator's own implementation of it)? No patterns: every record."""
    if not patterns:
        return lambda record: True
    from moto.events.models import EventPattern

    compiled = [EventPattern.load(json.dumps(pattern)) for pattern in patterns]
    return lambda record: any(p.matches_event(cast(Any, record)) for p in compiled)


class StreamEventSource:
    """The jobs table's stream → a function, as Lambda's DynamoDB event source mapping does it
    with `config` (:data:`claude_jobs.resources.NOTIFIER_STREAM`, which the CDK app uses too):

    - records that match none of `config.filters` (event filtering) are dropped as they are
      read, before any batch: the function never sees them;
    - batches of up to `batch_size` records, in stream order; the answer's `batchItemFailures`
      (ReportBatchItemFailures) checkpoint the batch before its first failed record;
    - a batch whose invocation fails is split in two (bisection) until the failing record is
      alone; one with item failures is retried from its first failed record, alone;
    - that record is retried `retry_attempts` times, after a growing pause during which the
      records behind it wait (as on a shard);
    - then it is described on the on-failure destination (the shape Lambda sends: the batch's
      shard, sequence numbers and arrival times, not the record itself) and skipped, so it
      never holds up the records after it. Records older than `max_record_age_seconds` go
      there without an invocation.
    """

    def __init__(
        self,
        reader: Any,
        invoke: Callable[[dict[str, Any]], Any],
        config: StreamSource,
        on_failure: FailureDestination,
        *,
        function_name: str = "notifier",
        retry_delay_seconds: float = 0.2,
        max_retry_delay_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._invoke = invoke
        self._config = config
        self._on_failure = on_failure
        self._function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self._delay = retry_delay_seconds
        self._max_delay = max_retry_delay_seconds
        self._clock = clock
        self._pending: list[dict[str, Any]] = []
        self._window = config.batch_size
        self._retries = 0
        self._invocations = 0  # of the batch now at the head, for the on-failure record
        self._not_before = 0.0
        self._filters = record_filter(config.filters)
        self.discarded = 0
        self.filtered = 0  # records no filter passed

    def poll_once(self) -> int:
        """Read what is new; make at most one invocation. Returns how many records it settled
        (processed, or sent to the on-failure destination)."""
        read = self._reader.poll()
        passed = [r for r in read if self._filters(r)]
        self.filtered += len(read) - len(passed)
        self._pending.extend(passed)
        settled = self._expire()
        if not self._pending or self._clock() < self._not_before:
            return settled
        batch = self._pending[: self._window]
        self._invocations += 1
        failed_at, partial = self._first_failure(batch)
        if failed_at is None:
            del self._pending[: len(batch)]
            self._reset()
            return settled + len(batch)
        if failed_at:  # the records before the first failure are done: a checkpoint
            del self._pending[:failed_at]
            self._reset()
            self._invocations = 1
        failing = len(batch) - failed_at
        if self._config.bisect_batch_on_error and failing > 1:
            # Split at the reported record (partial), or in two (the function failed).
            self._window = 1 if partial else (failing + 1) // 2
            log.info("stream batch of %d failed; bisected to %d", failing, self._window)
            return settled + failed_at
        self._retries += 1
        if self._retries > self._config.retry_attempts:
            self._discard(failing, "RetryAttemptsExhausted")
            return settled + failed_at + failing
        pause = min(self._delay * 2 ** (self._retries - 1), self._max_delay)
        self._not_before = self._clock() + pause
        log.info("stream batch of %d failed; retry %d in %.1f s", failing, self._retries, pause)
        return settled + failed_at

    def _reset(self) -> None:
        self._window = self._config.batch_size
        self._retries = 0
        self._invocations = 0
        self._not_before = 0.0

    def _first_failure(self, batch: list[dict[str, Any]]) -> tuple[int | None, bool]:
        """Index of the first record to retry (None when the whole batch succeeded), and
        whether the function reported it (a partial failure) rather than failing."""
        try:
            answer = self._invoke({"Records": batch})
        except Exception:
            log.warning("the %s function failed on a stream batch", self._function_arn)
            return 0, False  # a function error: the whole batch failed
        if answer is None:
            return None, False
        failures = answer.get("batchItemFailures") if isinstance(answer, dict) else []
        if failures is None:
            return None, False
        positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
        indexes: list[int] = []
        for failure in failures if isinstance(failures, list) else [None]:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in positions:
                return 0, False  # malformed: Lambda fails the whole batch
            indexes.append(positions[identifier])
        return (min(indexes), True) if indexes else (None, False)

    def _expire(self) -> int:
        limit = self._clock() - self._config.max_record_age_seconds
        old = 0
        while old < len(self._pending) and 0 < _arrival(self._pending[old]) < limit:
            old += 1
        if old:
            self._discard(old, "RecordAgeExceeded")
        return old

    def _discard(self, count: int, condition: str) -> None:
        records = self._pending[:count]
        del self._pending[:count]
        first, last = records[0], records[-1]
        record: dict[str, Any] = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function_arn,
                "condition": condition,
                "approximateInvokeCount": self._invocations,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "DDBStreamBatchInfo": {
                "shardId": getattr(self._reader, "shard_of", lambda _: "")(first),
                "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(_arrival(first)),
                "approximateArrivalOfLastRecord": _iso(_arrival(last)),
                "batchSize": count,
                "streamArn": first.get("eventSourceARN", ""),
            },
        }
        log.error(
            "%d stream record(s) from %s sent to the on-failure destination (%s)",
            count,
            record["DDBStreamBatchInfo"]["startSequenceNumber"],
            condition,
        )
        self._on_failure(record)
        self.discarded += count
        self._reset()


def notifier_source(
    settings: Any, invoke: Callable[[dict[str, Any]], Any], prefix: str
) -> Callable[[], int]:
    """The jobs table's stream → the notifier, with the CDK app's event source settings (its
    filters included) and the notifier dead-letter queue as the on-failure destination."""
    from claude_jobs.resources import NOTIFIER_STREAM

    return _jobs_stream_source(settings, invoke, prefix, NOTIFIER_STREAM, "notifier")


def expired_jobs_source(
    settings: Any, invoke: Callable[[dict[str, Any]], Any], prefix: str
) -> Callable[[], int]:
    """The jobs table's stream → the expired-jobs function (issue 20), REMOVE records only (its
    filter), with its settings and the notifier dead-letter queue as the on-failure
    destination. Its own reader: its own position."""
    from claude_jobs.resources import SLOTS_STREAM

    return _jobs_stream_source(settings, invoke, prefix, SLOTS_STREAM, "expiry")


def _jobs_stream_source(
    settings: Any,
    invoke: Callable[[dict[str, Any]], Any],
    prefix: str,
    config: StreamSource,
    function_name: str,
) -> Callable[[], int]:
    """A reader of its own on the jobs table's stream → `invoke`, as `config` says, failures
    to the notifier dead-letter queue."""
    import boto3

    from claude_jobs.resources import NOTIFIER_DLQ

    from .table_stream import StreamReader

    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.get_queue_url(QueueName=NOTIFIER_DLQ.name(prefix))["QueueUrl"]
    # The emulator's transactions keep the stream in place: its iterators can be kept.
    reader = StreamReader(
        boto3.client("dynamodb", region_name=REGION), settings.jobs_table, keep_iterators=True
    )
    source = StreamEventSource(
        reader, invoke, config, sqs_destination(sqs, dlq_url), function_name=function_name
    )
    return source.poll_once


def relay_to_function(
    sqs: Any,
    queue_url: str,
    invoke: Callable[[dict[str, Any]], Any],
    failure_queue_url: str | None = None,
) -> Callable[[], int]:
    """Hand the relay queue's messages (S3 notifications, bus events) to the function, with
    Lambda's asynchronous retries and on-failure destination (`failure_queue_url`)."""
    from .trigger_relay import relay_once

    def poll_once() -> int:
        return relay_once(
            sqs,
            queue_url,
            lambda event, _context: invoke(event),
            wait_seconds=1,
            failure_queue_url=failure_queue_url,
        )

    return poll_once
