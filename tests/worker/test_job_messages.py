"""The worker's own jobs-queue messages are JobMessages: a deferred job's message comes back
with its deferral count, a long job's next segment gets a fresh one, and what they carry is
read back by the worker's parser."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from claude_jobs.job_message import JobMessage
from claude_jobs.worker.processor import WorkerFault

from .conftest import WorkerStack, sqs_event


def _record(stack: WorkerStack, body: str) -> SQSRecord:
    sqs = boto3.client("sqs")
    url = stack.container.settings.jobs_queue_url
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    job = stack.submit()
    record: dict[str, Any] = sqs_event(job)["Records"][0]
    # The submit's own message is taken off the queue: only the worker's new one stays.
    sqs.purge_queue(QueueUrl=url)
    return SQSRecord({**record, "body": body, "eventSourceARN": arn["QueueArn"]})


def _sent(stack: WorkerStack) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = stack.container.settings.jobs_queue_url
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


def test_a_deferred_job_comes_back_counting_its_deferrals(stack: WorkerStack) -> None:
    # Given a job message already deferred twice
    record = _record(stack, JobMessage(job_id="j-1", tenant_id="acme", deferrals=2).body())
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
    record = _record(stack, JobMessage(job_id="j-1", tenant_id="acme", deferrals=4).body())
    stack.function._next_segment(record)
    assert _sent(stack) == [{"job_id": "j-1", "tenant_id": "acme"}]


def test_a_message_that_is_not_a_job_message_is_not_deferred(stack: WorkerStack) -> None:
    record = _record(stack, '{"tenant_id":"acme"}')
    with pytest.raises(WorkerFault):
        stack.function._defer(record)
    assert _sent(stack) == []
