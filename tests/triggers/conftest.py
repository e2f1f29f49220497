"""Fixtures for the trigger function: the stack in moto, an inbox bucket, the shipped config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from claude_jobs.settings import Settings
from claude_jobs.triggers.function import TriggerFunction
from claude_jobs.wiring import Container
from claude_jobs_tools.provision import Provisioned, provision

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "functions" / "trigger" / "triggers.json"
INBOX = "test-inbox"  # the bucket named in events/s3_object_created.json


@pytest.fixture
def stack(aws: None) -> Provisioned:
    provisioned = provision(
        "test",
        secret_value="sk-ant-test-not-a-real-key",
        inbox_bucket=INBOX,
        event_bus_name="test-bus",
    )
    return provisioned


@pytest.fixture
def settings(stack: Provisioned) -> Settings:
    return stack.settings


@pytest.fixture
def trigger(settings: Settings) -> Iterator[TriggerFunction]:
    """The trigger function as deployed (shipped config and templates), on this stack."""
    from functions.trigger.handler import function

    function.container = Container(settings)
    yield function
    function.container = Container(settings)  # drop the cached service with this test's stack


class Inspector:
    """What a test looks at: jobs in the table, the trigger DLQ, the jobs queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.container = Container(settings)

    def jobs(self, tenant: str = "default") -> list[Any]:
        return self.container.job_repository.list_for_tenant(tenant, 100).jobs

    def dead_letters(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.settings.trigger_dlq_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                body = json.loads(message["Body"])
                body["attributes"] = {
                    k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()
                }
                found.append(body)
                sqs.delete_message(
                    QueueUrl=self.settings.trigger_dlq_url,
                    ReceiptHandle=message["ReceiptHandle"],
                )

    def queued_messages(self) -> int:
        attrs = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.settings.jobs_queue_url,
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])


@pytest.fixture
def inspect(settings: Settings) -> Inspector:
    return Inspector(settings)
