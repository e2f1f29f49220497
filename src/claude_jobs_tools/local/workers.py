"""Threads that consume a queue the way Lambda's SQS event source does: the jobs queue (the
worker, batch size 1) and the webhook queue (the webhook function, a few messages a batch).

Each thread long-polls the queue for up to `batch_size` messages, hands the function a
real-shaped SQS event and deletes each message unless the answer lists it in
`batchItemFailures` (ReportBatchItemFailures) or the function raised. A message left on the
queue comes back after its visibility timeout; the queue's redrive policy moves it to the DLQ
after `maxReceiveCount` receives (the emulator applies both, as SQS does).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import boto3

from .runtime import REGION, EnvironmentRetired, FunctionPool, InvocationKilled

log = logging.getLogger(__name__)

#: How long one receive waits for a message, as Lambda's poller does: an idle worker makes one
#: request in 20 s, not one a second (each costs the emulator's CPU, which jobs need). A message
#: sent meanwhile is answered at once. Stopping does not wait for a receive (see `stop`).
POLL_SECONDS = 20
#: When the function raises, its messages come back this soon (not after the queue's
#: visibility timeout: a worker that failed to start must not stall its job for minutes). Each
#: return still counts as a receive towards the queue's redrive to the DLQ.
RAISED_RETRY_SECONDS = 1


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """A Lambda SQS event record for a message from `ReceiveMessage`."""
    attributes = dict(message.get("Attributes") or {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value.get("DataType", "String"),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody")
        or hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_ids(answer: Any, record_ids: set[str]) -> set[str] | None:
    """The message ids to leave on the queue per a ReportBatchItemFailures answer; None when
    the answer is malformed (Lambda then treats the whole batch as failed)."""
    if answer is None:
        return set()
    if not isinstance(answer, dict):
        return None
    failures = answer.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    ids: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in record_ids:
            return None
        ids.add(identifier)
    return ids


class QueueConsumer:
    """`count` threads consuming `queue_url` with a function's pool (the worker's by default),
    `batch_size` messages an invocation at most."""

    def __init__(
        self,
        pool: FunctionPool,
        queue_url: str,
        queue_arn: str,
        *,
        count: int = 2,
        poll_seconds: int = POLL_SECONDS,
        batch_size: int = 1,
        name: str = "worker",
    ) -> None:
        self._pool = pool
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._count = count
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._name = name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: set[str] = set()
        self._working: set[str] = set()  # threads handling a message (not receiving)
        self._lock = threading.Lock()
        self.processed = 0

    def start(self) -> None:
        for index in range(self._count):
            thread = threading.Thread(
                target=self._run, name=f"{self._name}-{index + 1}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    @property
    def queue_url(self) -> str:
        return self._queue_url

    @property
    def queue_arn(self) -> str:
        return self._queue_arn

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._busy)

    def stop(self, grace_seconds: float = 10.0) -> int:
        """Stop polling; let running invocations finish for up to `grace_seconds`. Returns how
        many were still running (abandoned: their messages come back after the visibility
        timeout, as after a Lambda crash). A thread waiting in a receive is not waited for: it
        handles nothing it receives from now on and ends when its receive returns."""
        with self._lock:
            self._stop.set()
            working = set(self._working)
        deadline = time.monotonic() + grace_seconds
        threads = [thread for thread in self._threads if thread.name in working]
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0))
        return sum(thread.is_alive() for thread in threads)

    def _run(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        name = threading.current_thread().name
        while not self._stop.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=self._batch_size,
                    WaitTimeSeconds=self._poll_seconds,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s: receiving from the queue failed", name)
                self._stop.wait(1)
                continue
            with self._lock:
                if self._stop.is_set():
                    return  # what it got comes back after the visibility timeout
                self._working.add(name)
            try:
                if messages:
                    self._process(sqs, [dict(m) for m in messages], name)
            finally:
                with self._lock:
                    self._working.discard(name)

    def _give_back(self, sqs: Any, records: list[dict[str, Any]]) -> None:
        """Make messages visible again in RAISED_RETRY_SECONDS (best effort: otherwise they come
        back after the visibility timeout)."""
        for record in records:
            try:
                sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=RAISED_RETRY_SECONDS,
                )
            except Exception as exc:
                log.warning("giving message %s back failed: %s", record["messageId"], exc)

    def _process(self, sqs: Any, messages: list[dict[str, Any]], name: str) -> None:
        records = [sqs_record(message, self._queue_arn) for message in messages]
        message_ids = {record["messageId"] for record in records}
        batch = ", ".join(sorted(message_ids))
        with self._lock:
            self._busy.update(message_ids)
        try:
            try:
                answer = self._pool.invoke({"Records": records})
            except EnvironmentRetired:
                log.warning("%s: the %s retired its environment after %s", name, self._name, batch)
                return
            except InvocationKilled:
                log.warning("%s: the invocation for %s was killed; it comes back", name, batch)
                return
            except Exception:
                log.exception("%s: the %s raised; messages %s go back", name, self._name, batch)
                self._give_back(sqs, records)
                return
            failed = failed_ids(answer, message_ids)
            if failed is None:
                log.error("%s: malformed batchItemFailures %r; batch left", name, answer)
                return
            for record in records:
                if record["messageId"] in failed:
                    log.info(
                        "%s: message %s reported failed (receive #%s); it comes back after the "
                        "visibility timeout",
                        name,
                        record["messageId"],
                        record["attributes"].get("ApproximateReceiveCount"),
                    )
                    continue
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=record["receiptHandle"])
        finally:
            with self._lock:
                self._busy.difference_update(message_ids)
                self.processed += len(message_ids)
