"""Fixtures for completion events and webhooks: the stack in moto with a bus whose rule copies
every `claude-jobs` event to an SQS queue (so a test reads what a subscriber would get), a real
HTTP receiver on 127.0.0.1, and the notifier function fed from the table's real stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest

from claude_jobs.models import Job, JobRequest, JobStatus
from claude_jobs.notify.function import NotifierFunction
from claude_jobs.notify.webhook_function import WebhookFunction
from claude_jobs.notify.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    tenant_secret,
    verify_signature,
)
from claude_jobs.ports import Transition
from claude_jobs.resources import WEBHOOK_DLQ, WEBHOOK_QUEUE
from claude_jobs.settings import Settings
from claude_jobs.wiring import Container
from claude_jobs_tools.local.table_stream import StreamReader
from claude_jobs_tools.local.workers import failed_ids, sqs_record
from claude_jobs_tools.provision import Provisioned, provision
from tests.lambda_context import lambda_context
from tests.support.servers import http_server

BUS = "test-bus"


@pytest.fixture
def stack(aws: None) -> Provisioned:
    provisioned = provision(
        "test",
        secret_value="sk-ant-test-not-a-real-key",
        event_bus_name=BUS,
        allow_loopback_webhooks=True,
    )
    return provisioned


@pytest.fixture
def settings(stack: Provisioned) -> Settings:
    return stack.settings


class Subscriber:
    """An SQS queue behind a rule on the bus matching every completion event."""

    def __init__(self) -> None:
        sqs = boto3.client("sqs")
        self.url = sqs.create_queue(QueueName="completion-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events = boto3.client("events")
        events.put_rule(
            Name="all-completions",
            EventBusName=BUS,
            EventPattern=json.dumps({"source": ["claude-jobs"]}),
        )
        events.put_targets(
            Rule="all-completions", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}]
        )

    def received(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        found: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture
def subscriber(stack: Provisioned) -> Subscriber:
    return Subscriber()


@dataclass
class Receiver:
    """A webhook receiver: answers 500 to the first `fail_first` POSTs, then 204 (or always
    500 with `always_fail`); verifies every signature with the tenant's secret."""

    secret: str = ""
    fail_first: int = 0
    always_fail: bool = False
    posts: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        verified = verify_signature(
            self.secret, headers.get(TIMESTAMP_HEADER), body, headers.get(SIGNATURE_HEADER)
        )
        self.posts.append({"headers": headers, "body": body, "verified": verified})
        if not verified:
            return 401
        if self.always_fail or len(self.posts) <= self.fail_first:
            return 500
        return 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.handle(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as server:
        state.url = f"{server.url}/hooks/claude-jobs"
        yield state


def master_key(settings: Settings) -> str:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=settings.webhook_secret_id)
    return value["SecretString"]


class World:
    """Jobs made and finished through the real service and repository; the stream read back;
    the webhook queue consumed as its event source does (failed messages come back after the
    delay the function sets: none here, unless a test sets `webhook_retry_base_seconds`)."""

    def __init__(self, settings: Settings, stack: Provisioned) -> None:
        self.settings = settings
        self.container = Container(settings)
        self.stream = StreamReader(boto3.client("dynamodb"), settings.jobs_table)
        self.notifier = NotifierFunction(Container(settings))
        self.webhooks = WebhookFunction(
            Container(settings.model_copy(update={"webhook_retry_base_seconds": 0}))
        )
        self.webhook_queue = stack.queue_urls[WEBHOOK_QUEUE.logical_id]
        self.webhook_queue_arn = stack.queue_arns[WEBHOOK_QUEUE.logical_id]
        self.webhook_dlq = stack.queue_urls[WEBHOOK_DLQ.logical_id]

    def submit(self, tenant: str = "acme", **fields: Any) -> Job:
        request = JobRequest.model_validate({"prompt": "Say hello", **fields})
        return self.container.job_service.submit(tenant, request).job

    def run(self, job: Job, status: JobStatus = JobStatus.SUCCEEDED, **fields: Any) -> Job:
        repo = self.container.job_repository
        repo.transition(Transition(job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1))
        return repo.transition(
            Transition(
                job_id=job.job_id,
                to=status,
                set_fields={"finished_at": "2026-11-22T12:00:09+00:00", **fields},
                remove_fields=["prompt"],
            )
        )

    def deliver_stream(self) -> dict[str, Any]:
        """Hand everything written since the last call to the notifier, as Lambda would."""
        return self.notifier.handler({"Records": self.stream.poll()}, lambda_context("notifier"))

    def deliver_webhooks(self, rounds: int = 20) -> int:
        """Receive from the webhook queue and invoke the webhook function (batches of up to
        3), deleting what it did not report failed, until the queue is empty or `rounds`
        receives were made; return how many invocations there were."""
        sqs = boto3.client("sqs")
        invocations = 0
        for _ in range(rounds):
            messages = sqs.receive_message(
                QueueUrl=self.webhook_queue, MaxNumberOfMessages=3, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                attributes = sqs.get_queue_attributes(
                    QueueUrl=self.webhook_queue,
                    AttributeNames=["ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                if attributes["ApproximateNumberOfMessagesNotVisible"] == "0":
                    break
                continue
            records = [sqs_record(dict(m), self.webhook_queue_arn) for m in messages]
            answer = self.webhooks.handler({"Records": records}, lambda_context("webhook"))
            invocations += 1
            failed = failed_ids(answer, {r["messageId"] for r in records})
            assert failed is not None, answer
            for record in records:
                if record["messageId"] not in failed:
                    sqs.delete_message(
                        QueueUrl=self.webhook_queue, ReceiptHandle=record["receiptHandle"]
                    )
        return invocations

    def dead_webhooks(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        messages = sqs.receive_message(QueueUrl=self.webhook_dlq, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

    def job(self, job_id: str) -> Job:
        found = self.container.job_repository.get(job_id)
        assert found is not None
        return found

    def tenant_secret(self, tenant: str) -> str:
        return tenant_secret(master_key(self.settings), tenant)


@pytest.fixture
def world(settings: Settings, stack: Provisioned) -> World:
    return World(settings, stack)
