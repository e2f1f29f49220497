"""The worker reads each jobs-queue record with Powertools' SQS parser model (its body a
JobMessage) and drops what is not one; its own messages are JobMessages: a deferred job's
message comes back with its deferral count, a long job's next segment gets a fresh one."""

from __future__ import annotations

import copy
import json
import logging
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from claude_jobs.job_message import JobMessage, job_record_model
from claude_jobs.models import JobStatus
from claude_jobs_tools.local.workers import sqs_record

from .conftest import LambdaContext, WorkerStack, sqs_event

if TYPE_CHECKING:
    from claude_jobs.job_message import JobMessageRecord


def _record(stack: WorkerStack, message: JobMessage) -> JobMessageRecord:
    sqs = boto3.client("sqs")
    url = stack.container.settings.jobs_queue_url
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    job = stack.submit()
    record: dict[str, Any] = sqs_event(job)["Records"][0]
    # The submit's own message is taken off the queue: only the worker's new one stays.
    sqs.purge_queue(QueueUrl=url)
    raw = {**record, "body": message.body(), "eventSourceARN": arn["QueueArn"]}
    return job_record_model().model_validate(raw)


def _sent(stack: WorkerStack) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = stack.container.settings.jobs_queue_url
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


def _dropped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("dropping a malformed jobs-queue message")
    ]


def test_a_deferred_job_comes_back_counting_its_deferrals(stack: WorkerStack) -> None:
    # Given a job message already deferred twice
    record = _record(stack, JobMessage(job_id="j-1", tenant_id="acme", deferrals=2))
    sent: list[dict[str, Any]] = []
    stack.container.client("sqs").meta.events.register(
        "provide-client-params.sqs.SendMessage", lambda params, **_: sent.append(dict(params))
    )
    # When the worker offers it again later
    stack.function._defer(record)
    # Then the new message is the same job's, deferred three times, and delayed
    assert [json.loads(params["MessageBody"]) for params in sent] == [
        {"job_id": "j-1", "tenant_id": "acme", "deferrals": 3}
    ]
    assert sent[0]["DelaySeconds"] >= 1
    assert _sent(stack) == []  # not visible before its delay


def test_a_long_jobs_next_segment_gets_a_fresh_message(stack: WorkerStack) -> None:
    record = _record(stack, JobMessage(job_id="j-1", tenant_id="acme", deferrals=4))
    stack.function._next_segment(record)
    assert _sent(stack) == [{"job_id": "j-1", "tenant_id": "acme"}]


def test_malformed_records_among_good_ones_are_dropped_and_the_good_ones_run(
    stack: WorkerStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a batch: two jobs' records, and between them a record whose body is not JSON,
    # one whose body names no job, and an entry that is not a record at all
    first, second = stack.submit(), stack.submit()
    good = [sqs_event(job, f"good-{n}")["Records"][0] for n, job in enumerate((first, second))]
    not_json = {**good[0], "messageId": "not-json", "body": "not json"}
    no_job = {**good[0], "messageId": "no-job", "body": '{"tenant_id":"acme"}'}
    event = {"Records": [good[0], not_json, no_job, "not a record", good[1]]}
    caplog.set_level(logging.INFO)
    # When the worker gets it
    answer = stack.function.handler(event, LambdaContext())
    # Then nothing is retried: the malformed ones are dropped, each logged, and both jobs ran
    assert answer == {"batchItemFailures": []}
    assert [stack.get(job).status for job in (first, second)] == [JobStatus.SUCCEEDED] * 2
    dropped = _dropped(caplog)
    assert len(dropped) == 3
    assert "body: json_invalid" in dropped[0]
    assert "body.job_id: missing" in dropped[1]
    assert "record: model_type" in dropped[2]
    malformed = [r for r in caplog.records if getattr(r, "action", None) == "malformed"]
    assert len(malformed) == 3


@pytest.mark.parametrize(
    "hostile",
    [
        {"drop": ["attributes", "receiptHandle"]},
        {"drop": ["body"]},
        {"set": {"eventSource": "aws:sns"}},
        {"set": {"attributes": {"ApproximateReceiveCount": "1"}}},
    ],
    ids=["no-attributes-no-handle", "no-body", "not-from-sqs", "attributes-incomplete"],
)
def test_a_record_missing_sqs_fields_is_dropped_with_a_clear_log(
    stack: WorkerStack, caplog: pytest.LogCaptureFixture, hostile: dict[str, Any]
) -> None:
    # Given a record naming a queued job, but not shaped like an SQS record
    job = stack.submit()
    record = copy.deepcopy(sqs_event(job, "hostile")["Records"][0])
    for name in hostile.get("drop", []):
        del record[name]
    record.update(hostile.get("set", {}))
    # When the worker gets it
    answer = stack.function.handler({"Records": [record]}, LambdaContext())
    # Then it is dropped, not retried and not run, and the log says which fields are wrong
    assert answer == {"batchItemFailures": []}
    assert stack.get(job).status is JobStatus.QUEUED
    assert stack.fake.requests == []
    (dropped,) = _dropped(caplog)
    for name in hostile.get("drop", []):
        assert f"{name}: missing" in dropped
    for name in hostile.get("set", {}):
        assert f"{name}" in dropped
    assert job.job_id not in dropped  # no input values in the log


def test_the_local_stacks_records_carry_every_field_the_parser_model_needs(
    stack: WorkerStack,
) -> None:
    # Given a job's message received from the queue as the local stack's runtimes receive it
    sqs = boto3.client("sqs")
    url = stack.container.settings.jobs_queue_url
    job = stack.submit()
    (message,) = sqs.receive_message(
        QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    # When the local stack shapes it as Lambda's event source would
    record = sqs_record(dict(message), stack.provisioned.queue_arns["JobsQueue"])
    # Then Powertools' parser model reads it, body and all
    parsed = job_record_model().model_validate(record)
    assert parsed.body == JobMessage(job_id=job.job_id, tenant_id=job.tenant_id)
    assert parsed.attributes.ApproximateReceiveCount == "1"
