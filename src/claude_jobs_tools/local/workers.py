"""Worker threads that consume the jobs queue the way Lambda's SQS event source does.

Each thread long-polls the queue for one message (batch size 1), hands the worker function a
real-shaped SQS event and deletes the message unless the answer lists it in
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

#: How long one receive waits for a message. Lambda's poller uses 20 s; shorter here so that
#: Ctrl-C stops an idle stack at once.
POLL_SECONDS = 1


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
    """`count` threads consuming `queue_url` with the worker function's pool."""

    def __init__(
        self,
        pool: FunctionPool,
        queue_url: str,
        queue_arn: str,
        *,
        count: int = 2,
        poll_seconds: int = POLL_SECONDS,
    ) -> None:
        self._pool = pool
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._count = count
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self.processed = 0

    def start(self) -> None:
        for index in range(self._count):
            thread = threading.Thread(target=self._run, name=f"worker-{index + 1}", daemon=True)
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
        timeout, as after a Lambda crash)."""
        self._stop.set()
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0))
        return sum(thread.is_alive() for thread in self._threads)

    def _run(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        name = threading.current_thread().name
        while not self._stop.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=1,
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
            for message in messages:
                self._process(sqs, dict(message), name)

    def _process(self, sqs: Any, message: dict[str, Any], name: str) -> None:
        record = sqs_record(message, self._queue_arn)
        message_id = record["messageId"]
        with self._lock:
            self._busy.add(message_id)
        try:
            try:
                answer = self._pool.invoke({"Records": [record]})
            except EnvironmentRetired:
                log.warning("%s: the worker retired its environment after %s", name, message_id)
                return
            except InvocationKilled:
                log.warning("%s: the invocation for %s was killed; it comes back", name, message_id)
                return
            except Exception:
                log.exception("%s: the worker raised; message %s goes back", name, message_id)
                return
            failed = failed_ids(answer, {message_id})
            if failed is None:
                log.error("%s: malformed batchItemFailures %r; batch left", name, answer)
                return
            if message_id in failed:
                log.info(
                    "%s: message %s reported failed (receive #%s); it comes back after the "
                    "visibility timeout",
                    name,
                    message_id,
                    record["attributes"].get("ApproximateReceiveCount"),
                )
                return
            sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=record["receiptHandle"])
        finally:
            with self._lock:
                self._busy.discard(message_id)
                self.processed += 1
