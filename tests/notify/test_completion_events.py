"""Completion events: every job's one terminal transition publishes one event on the bus."""

from __future__ import annotations

import json

import pytest

from claude_jobs.models import JobStatus
from claude_jobs.notify.completion_events import SMALL_RESULT_BYTES
from claude_jobs.notify.function import NotifierFunction
from claude_jobs.settings import Settings
from claude_jobs.wiring import Container
from tests.events import load_event
from tests.lambda_context import lambda_context

from .conftest import Subscriber, World


def test_a_finished_job_publishes_one_event(world: World, subscriber: Subscriber) -> None:
    # Given a job that was queued, ran, and succeeded with a small result
    job = world.submit(metadata={"ticket": "OPS-42"})
    world.run(
        job,
        result={"text": "Hello!", "is_error": False},
        usage={"input_tokens": 12, "output_tokens": 3, "total_cost_usd": 0.002, "num_turns": 1},
    )
    # When the stream's records (queued, running, succeeded) reach the notifier
    response = world.deliver_stream()
    # Then every record succeeded, and a subscriber of the bus got exactly one event
    assert response == {"batchItemFailures": []}
    (event,) = subscriber.received()
    assert event["source"] == "claude-jobs"
    assert event["detail-type"] == "Job Succeeded"
    detail = event["detail"]
    assert detail["job_id"] == job.job_id and detail["tenant_id"] == "acme"
    assert detail["status"] == "succeeded"
    assert detail["metadata"] == {"ticket": "OPS-42"}
    assert detail["usage"]["input_tokens"] == 12
    assert detail["result"] == {
        "is_error": False,
        "location": "inline",
        "text": "Hello!",
        "text_bytes": 6,
    }
    # And it carries no prompt and nothing secret
    text = json.dumps(event)
    assert "Say hello" not in text and "sk-ant" not in text


@pytest.mark.parametrize(
    ("status", "detail_type"),
    [
        (JobStatus.FAILED, "Job Failed"),
        (JobStatus.TIMED_OUT, "Job Timed Out"),
        (JobStatus.CANCELLED, "Job Cancelled"),
    ],
)
def test_each_terminal_status_has_its_detail_type(
    world: World, subscriber: Subscriber, status: JobStatus, detail_type: str
) -> None:
    job = world.submit()
    world.run(job, status, error={"code": status.value, "message": "it ended"})
    world.deliver_stream()
    (event,) = subscriber.received()
    assert event["detail-type"] == detail_type
    assert event["detail"]["error"] == {"code": status.value, "message": "it ended"}


def test_cancelling_a_queued_job_publishes_job_cancelled(
    world: World, subscriber: Subscriber
) -> None:
    # Given a queued job, cancelled before it ran
    job = world.submit()
    world.container.job_service.cancel("acme", job.job_id)
    # When the stream reaches the notifier
    world.deliver_stream()
    # Then one Job Cancelled event is published
    assert [e["detail-type"] for e in subscriber.received()] == ["Job Cancelled"]


def test_a_large_result_is_not_in_the_event(world: World, subscriber: Subscriber) -> None:
    # Given two jobs: one with a result too large for an event, one whose result is in S3
    big = world.submit()
    world.run(big, result={"text": "y" * (SMALL_RESULT_BYTES + 1), "is_error": False})
    in_s3 = world.submit()
    world.run(in_s3, result={"s3_key": f"results/{in_s3.job_id}.txt", "is_error": False})
    # When the stream reaches the notifier
    world.deliver_stream()
    # Then neither event carries the text; each says where the result is
    results = {e["detail"]["job_id"]: e["detail"]["result"] for e in subscriber.received()}
    assert results[big.job_id] == {
        "is_error": False,
        "location": "inline",
        "text_bytes": SMALL_RESULT_BYTES + 1,
    }
    assert results[in_s3.job_id] == {
        "is_error": False,
        "location": "s3",
        "s3_bucket": world.settings.results_bucket,
        "s3_key": f"results/{in_s3.job_id}.txt",
    }


def test_non_terminal_and_after_the_end_records_publish_nothing(
    world: World, subscriber: Subscriber
) -> None:
    # Given the sample records of a job starting (queued → running) and the same job's
    # succeeded → succeeded update (e.g. its webhook delivery being recorded)
    started = load_event("dynamodb_stream_job_started.json")
    after_end = load_event("dynamodb_stream_job_succeeded.json")
    record = after_end["Records"][0]["dynamodb"]
    record["OldImage"] = record["NewImage"]
    # When they reach the notifier
    world.notifier.handler(started, lambda_context("notifier"))
    world.notifier.handler(after_end, lambda_context("notifier"))
    # Then nothing is published
    assert subscriber.received() == []


def test_the_sample_terminal_record_publishes_its_event(
    world: World, subscriber: Subscriber
) -> None:
    # Given the sample record of a job going running → succeeded
    event = load_event("dynamodb_stream_job_succeeded.json")
    # When it reaches the notifier
    assert world.notifier.handler(event, lambda_context("notifier")) == {"batchItemFailures": []}
    # Then its event is published
    (published,) = subscriber.received()
    assert published["detail-type"] == "Job Succeeded"
    assert published["detail"]["job_id"] == "0b8e4a52-4c1e-4bd5-9a55-0f2a3c1d9e77"


def test_a_record_whose_event_cannot_be_published_is_reported_for_retry(
    settings: Settings,
) -> None:
    # Given a notifier whose bus does not exist, and a batch of a job starting and another
    # job finishing
    broken = NotifierFunction(Container(settings.model_copy(update={"event_bus_name": "nope"})))
    finished = load_event("dynamodb_stream_job_succeeded.json")["Records"][0]
    started = load_event("dynamodb_stream_job_started.json")["Records"][0]
    # When the batch reaches it
    response = broken.handler({"Records": [started, finished]}, lambda_context("notifier"))
    # Then only the terminal record is reported as failed (the stream retries it), none dropped
    sequence = finished["dynamodb"]["SequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence}]}


def test_a_job_with_poison_documents_is_announced_and_does_not_block_the_stream(
    world: World, subscriber: Subscriber
) -> None:
    # Given a job whose schema and structured output DynamoDB's own types could not hold,
    # then an ordinary job
    poison = world.submit(output_schema={"type": "object", "properties": {"": {"maximum": 1e300}}})
    world.run(poison, result={"structured": {"": 1, "n": 10**49, "x": 1e300}, "is_error": False})
    later = world.submit()
    world.run(later, result={"text": "after", "is_error": False})
    # When the stream's records reach the notifier
    response = world.deliver_stream()
    # Then every record succeeded and each job was announced, the structured value exactly
    assert response == {"batchItemFailures": []}
    events = {e["detail"]["job_id"]: e["detail"] for e in subscriber.received()}
    assert set(events) == {poison.job_id, later.job_id}
    assert events[poison.job_id]["result"]["structured"] == {"": 1, "n": 10**49, "x": 1e300}


def test_the_event_names_the_jobs_artifacts_inline_or_from_their_document(
    world: World, subscriber: Subscriber
) -> None:
    # Given a job that left two artifacts (listed in its item), and one whose long list of
    # artifacts was kept as a document in the bucket (over the item's inline budget)
    from claude_jobs.documents import ARTIFACTS
    from claude_jobs.models import Artifact

    small = world.submit()
    world.run(
        small,
        result={"text": "ok", "is_error": False},
        artifacts=[
            {"path": "out/a.txt", "size_bytes": 3},
            {"path": "out/b/c.csv", "size_bytes": 9},
        ],
    )
    many = [Artifact(path=f"out/file-{i:03d}.txt", size_bytes=i) for i in range(60)]
    large = world.submit()
    fields, documents = world.container.job_documents.place_artifacts(large, many, [])
    assert fields == {} and ARTIFACTS in documents
    world.run(large, result={"text": "ok", "is_error": False}, documents=documents)
    # When the stream reaches the notifier
    world.deliver_stream()
    # Then each event names its job's artifacts with their sizes
    details = {e["detail"]["job_id"]: e["detail"] for e in subscriber.received()}
    assert details[small.job_id]["artifacts"] == [
        {"path": "out/a.txt", "size_bytes": 3},
        {"path": "out/b/c.csv", "size_bytes": 9},
    ]
    assert details[large.job_id]["artifacts"] == [
        {"path": a.path, "size_bytes": a.size_bytes} for a in many
    ]


def test_the_event_carries_the_pull_request_the_worker_opened_or_why_none(
    world: World, subscriber: Subscriber
) -> None:
    # Given a repository job whose pull request was opened, and one that changed nothing
    pull_request = {
        "url": "https://github.com/acme/app/pull/3",
        "number": 3,
        "branch": "claude-jobs/x",
        "head_sha": "0" * 40,
    }
    opened, unchanged, plain = world.submit(), world.submit(), world.submit()
    world.run(opened, result={"text": "ok", "is_error": False}, pull_request=pull_request)
    world.run(
        unchanged, result={"text": "ok", "is_error": False}, pull_request_skipped="no_changes"
    )
    world.run(plain, result={"text": "ok", "is_error": False})
    # When the stream reaches the notifier
    world.deliver_stream()
    # Then the events say so; a job without a repository says nothing of pull requests
    details = {e["detail"]["job_id"]: e["detail"] for e in subscriber.received()}
    assert details[opened.job_id]["pull_request"] == pull_request
    assert details[unchanged.job_id]["pull_request_skipped"] == "no_changes"
    assert "pull_request" not in details[plain.job_id]
    assert "pull_request_skipped" not in details[plain.job_id]
