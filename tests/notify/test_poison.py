"""No poison record blocks the jobs table's stream: the local stack's stand-in for Lambda's
DynamoDB event source retries a failing record a bounded number of times (after bisecting its
batch), then describes it on the notifier's on-failure queue and goes on with the next ones."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from claude_jobs.resources import NOTIFIER_DLQ, NOTIFIER_STREAM, StreamSource
from claude_jobs_tools.local.sources import StreamEventSource, sqs_destination
from claude_jobs_tools.local.table_stream import StreamReader
from claude_jobs_tools.provision import Provisioned
from tests.lambda_context import lambda_context

from .conftest import Subscriber, World


def dead_letters(stack: Provisioned) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = stack.queue_urls[NOTIFIER_DLQ.logical_id]
    found = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def notifier_source(stack: Provisioned, world: World, **kwargs: Any) -> StreamEventSource:
    """The stream → the real notifier function, as the local stack wires it (no pauses)."""
    reader = StreamReader(boto3.client("dynamodb"), world.settings.jobs_table)
    dlq = sqs_destination(boto3.client("sqs"), stack.queue_urls[NOTIFIER_DLQ.logical_id])
    invoke = kwargs.pop(
        "invoke", lambda event: world.notifier.handler(event, lambda_context("notifier"))
    )
    return StreamEventSource(
        reader, invoke, NOTIFIER_STREAM, dlq, retry_delay_seconds=0.0, **kwargs
    )


def finish_poison(table: str, options: dict[str, Any]) -> None:
    """A job item written behind the service's back, then moved to a terminal status."""
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(
        TableName=table,
        Item={"job_id": {"S": "poison"}, "status": {"S": "queued"}, "options": options},
    )
    dynamodb.update_item(
        TableName=table,
        Key={"job_id": {"S": "poison"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "succeeded"}},
    )


@pytest.mark.parametrize(
    "options",
    [
        # A map with an empty key: moto's serializer serves its stream record malformed
        # (botocore cannot parse it; the reader then reads it raw), the emulator's plain
        # answers intact (`emulator.plain_answers`, once an emulator ran in this process);
        # either way not options the notifier can read.
        pytest.param({"M": {"": {"S": "x"}}}, id="a-map-the-emulator-mangles"),
        # A terminal job the notifier cannot read: it raises on it every time.
        pytest.param({"S": "not a map"}, id="a-job-the-notifier-cannot-read"),
    ],
)
def test_a_poison_record_is_dead_lettered_and_later_completions_are_delivered(
    stack: Provisioned, world: World, subscriber: Subscriber, options: dict[str, Any]
) -> None:
    # Given a poison completion record on the stream, and a good job finishing after it
    finish_poison(world.settings.jobs_table, options)
    good = world.run(world.submit())
    source = notifier_source(stack, world)
    # When the event source polls, a bounded number of times
    for _ in range(40):
        source.poll_once()
    # Then the good job's completion event is published (at least once: it shared a batch
    # with the poison record, and stream processing is at-least-once; consumers de-duplicate
    # on the job id)
    assert {e["detail"]["job_id"] for e in subscriber.received()} == {good.job_id}
    # And the poison record is described, alone, on the notifier's on-failure queue
    (letter,) = dead_letters(stack)
    info = letter["DDBStreamBatchInfo"]
    assert letter["requestContext"]["condition"] == "RetryAttemptsExhausted"
    # (invoked in its first batch, then alone, then retried `retry_attempts` times)
    assert letter["requestContext"]["approximateInvokeCount"] == 2 + NOTIFIER_STREAM.retry_attempts
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["streamArn"].startswith("arn:aws:dynamodb:") and info["shardId"]
    assert source.discarded == 1


def test_a_batch_that_fails_once_is_retried_and_delivered(
    stack: Provisioned, world: World, subscriber: Subscriber
) -> None:
    # Given a notifier whose first invocation fails (it timed out, say)
    invocations: list[int] = []

    def flaky(event: dict[str, Any]) -> Any:
        invocations.append(len(event["Records"]))
        if len(invocations) == 1:
            raise TimeoutError("Task timed out after 60.00 seconds")
        return world.notifier.handler(event, lambda_context("notifier"))

    job = world.run(world.submit())
    source = notifier_source(stack, world, invoke=flaky)
    # When the event source polls a few times
    for _ in range(10):
        source.poll_once()
    # Then the job's completion event is published once, and nothing was dead-lettered
    assert [e["detail"]["job_id"] for e in subscriber.received()] == [job.job_id]
    assert dead_letters(stack) == []


# ---------------------------------------------------------------- the mapping's rules


class ListStream:
    """A stream reader over records appended by the test."""

    def __init__(self) -> None:
        self.new: list[dict[str, Any]] = []

    def add(self, *keys: str, created: float = 1_795_000_000.0) -> None:
        for key in keys:
            self.new.append(
                {
                    "eventID": key,
                    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
                    "dynamodb": {
                        "SequenceNumber": str(100 + len(self.new)),
                        "Keys": {"k": {"S": key}},
                        "ApproximateCreationDateTime": created,
                    },
                }
            )

    def poll(self) -> list[dict[str, Any]]:
        new, self.new = self.new, []
        return new


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_000_100.0

    def __call__(self) -> float:
        return self.now


def keys(event: dict[str, Any]) -> list[str]:
    return [r["dynamodb"]["Keys"]["k"]["S"] for r in event["Records"]]


RULES = StreamSource(
    batch_size=10, bisect_batch_on_error=True, retry_attempts=3, max_record_age_seconds=3600
)


def test_bisection_isolates_the_record_that_makes_the_function_fail() -> None:
    # Given ten records, the fourth of which makes the whole invocation raise
    stream, clock = ListStream(), Clock()
    letters: list[dict[str, Any]] = []
    stream.add(*(f"r{i}" for i in range(10)))
    batches: list[list[str]] = []
    delivered: list[str] = []

    def function(event: dict[str, Any]) -> None:
        batches.append(keys(event))
        if "r3" in keys(event):
            raise ValueError("poison")
        delivered.extend(keys(event))

    source = StreamEventSource(stream, function, RULES, letters.append, clock=clock)
    # When the source polls until everything is settled, time moving on a second per poll
    for _ in range(30):
        source.poll_once()
        clock.now += 1
    # Then every other record was delivered once, in order, and r3 alone was dead-lettered
    assert delivered == [f"r{i}" for i in range(10) if i != 3]
    (letter,) = letters
    assert letter["DDBStreamBatchInfo"]["batchSize"] == 1
    assert letter["DDBStreamBatchInfo"]["startSequenceNumber"] == "103"
    # And the batches were split in two until r3 was alone, then it was retried 3 times
    assert batches[:3] == [[f"r{i}" for i in range(10)], ["r0", "r1", "r2", "r3", "r4"],
                           ["r0", "r1", "r2"]]  # fmt: skip
    assert batches.count(["r3"]) == 1 + RULES.retry_attempts


def test_a_partial_failure_checkpoints_and_retries_back_off() -> None:
    # Given a function that reports r1 failed every time (ReportBatchItemFailures)
    stream, clock = ListStream(), Clock()
    letters: list[dict[str, Any]] = []
    stream.add("r0", "r1", "r2")
    times: dict[str, list[float]] = {}

    def function(event: dict[str, Any]) -> dict[str, Any]:
        for record in event["Records"]:
            times.setdefault(record["eventID"], []).append(clock.now)
        failed = [r for r in event["Records"] if r["eventID"] == "r1"]
        return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
                                      for r in failed]}  # fmt: skip

    source = StreamEventSource(
        stream, function, RULES, letters.append, clock=clock, retry_delay_seconds=1.0
    )
    # When the source polls every 0.25 s for a while
    for _ in range(200):
        source.poll_once()
        clock.now += 0.25
    # Then r0 (before the failure) was processed once: the batch was checkpointed there
    assert len(times["r0"]) == 1
    # And r1's retries came after pauses of 1, 2, 4 s, then it was dead-lettered
    start = times["r1"][0]
    gaps = [later - earlier for earlier, later in zip(times["r1"], times["r1"][1:], strict=False)]
    assert [round(g) for g in gaps if g >= 0.5] == [1, 2, 4], (start, times["r1"])
    (letter,) = letters
    assert letter["requestContext"]["condition"] == "RetryAttemptsExhausted"
    # And r2, behind it, was processed after it was skipped
    assert times["r2"][-1] > times["r1"][-1]


def test_records_past_the_maximum_age_are_dead_lettered_without_an_invocation() -> None:
    # Given a record older than the maximum record age, and a fresh one
    stream, clock = ListStream(), Clock()
    letters: list[dict[str, Any]] = []
    stream.add("old", created=clock.now - RULES.max_record_age_seconds - 1)
    stream.add("fresh", created=clock.now)
    seen: list[str] = []
    source = StreamEventSource(stream, lambda e: seen.extend(keys(e)), RULES, letters.append,
                               clock=clock)  # fmt: skip
    # When the source polls
    source.poll_once()
    # Then only the fresh one reached the function; the old one is described as too old
    assert seen == ["fresh"]
    (letter,) = letters
    assert letter["requestContext"]["condition"] == "RecordAgeExceeded"
    assert letter["requestContext"]["approximateInvokeCount"] == 0
