"""The local-stack path against a real emulator (moto server over HTTP): `claude-jobs trigger`
uploads and events reach the trigger function through the relay, and become jobs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from claude_jobs.notify.webhooks import tenant_secret
from claude_jobs.settings import Settings
from claude_jobs.triggers.config import load_config
from claude_jobs.triggers.function import TriggerFunction
from claude_jobs.wiring import Container
from claude_jobs_tools.cli.main import app
from claude_jobs_tools.local.trigger_relay import relay_once, wire_local_triggers
from claude_jobs_tools.provision import Provisioned, provision
from tests.lambda_context import lambda_context

from .conftest import SHIPPED_CONFIG


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    yield url
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))  # noqa: S310
    server.stop()


@pytest.fixture
def local(emulator: str, monkeypatch: pytest.MonkeyPatch) -> Provisioned:
    provisioned = provision("local", inbox_bucket="local-inbox", event_bus_name="local-bus")
    for name, value in {
        "INBOX_BUCKET": "local-inbox",
        "EVENT_BUS_NAME": "local-bus",
        "WEBHOOK_SECRET_ID": provisioned.settings.webhook_secret_id,
    }.items():
        monkeypatch.setenv(name, value)
    return provisioned


def relay(settings: Settings) -> tuple[TriggerFunction, str]:
    function = TriggerFunction(Container(settings), default_config=SHIPPED_CONFIG)
    queue_url = wire_local_triggers(settings, load_config(SHIPPED_CONFIG), prefix="local")
    # S3 announces a new notification configuration with a test event, as AWS does: ignored.
    seen: list[dict[str, object]] = []
    relay_once(
        boto3.client("sqs"),
        queue_url,
        lambda e, _: seen.append(function.handler(e, lambda_context("trigger"))),
    )
    assert [o["status"] for r in seen for o in r["outcomes"]] == ["ignored"]  # type: ignore[attr-defined]
    return function, queue_url


def test_an_upload_with_the_command_becomes_a_job(local: Provisioned, tmp_path: Path) -> None:
    # Given the local stack's emulator with the triggers wired to the relay
    function, queue_url = relay(local.settings)
    notes = tmp_path / "standup.md"
    notes.write_text("- shipped triggers\n")
    # When `claude-jobs trigger s3 FILE` uploads it, and the relay runs
    result = CliRunner().invoke(app, ["trigger", "s3", str(notes)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["key"] == "inbox/standup.md"
    handled = relay_once(
        boto3.client("sqs"), queue_url, lambda e, _: function.handler(e, lambda_context("trigger"))
    )
    # Then the emulator's S3 notification reached the trigger function and made the job
    assert handled == 1
    (job,) = Container(local.settings).job_repository.list_for_tenant("default", 10).jobs
    assert job.source == "s3" and "- shipped triggers" in (job.prompt or "")
    assert job.inputs[0].key == "inbox/standup.md"


def test_an_event_with_the_command_becomes_a_job(local: Provisioned) -> None:
    # Given the relay, and an event for the run-task trigger
    function, queue_url = relay(local.settings)
    detail = {"task": "Count to three.", "job": {"max_turns": 2}}
    # When `claude-jobs trigger event` puts it on the bus, and the relay runs
    result = CliRunner().invoke(
        app, ["trigger", "event", "--detail-type", "Run Task", "--detail", json.dumps(detail)]
    )
    assert result.exit_code == 0, result.output
    event_id = json.loads(result.output)["event_id"]
    assert (
        relay_once(
            boto3.client("sqs"),
            queue_url,
            lambda e, _: function.handler(e, lambda_context("trigger")),
        )
        == 1
    )
    # Then the bus's rule delivered it to the trigger function, which made the job
    (job,) = Container(local.settings).job_repository.list_for_tenant("default", 10).jobs
    assert job.source == "events" and job.options.max_turns == 2
    assert job.metadata["event_id"] == event_id
    assert (job.prompt or "").startswith("Count to three.")


def test_a_schedule_is_simulated_with_its_event(local: Provisioned) -> None:
    # Given the schedule event printed by the command for the nightly rule
    function, _ = relay(local.settings)
    result = CliRunner().invoke(
        app, ["trigger", "event", "--schedule", "claude-jobs-nightly-digest"]
    )
    assert result.exit_code == 0, result.output
    # When it is handed to the trigger function
    outcome = function.handler(json.loads(result.output), lambda_context("trigger"))["outcomes"][0]
    # Then the schedule's job is made
    assert outcome["status"] == "created" and outcome["trigger"] == "nightly-digest"


def test_the_webhook_secret_command_prints_the_tenants_secret(local: Provisioned) -> None:
    result = CliRunner().invoke(app, ["webhooks", "secret", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    master = boto3.client("secretsmanager").get_secret_value(
        SecretId=local.settings.webhook_secret_id
    )["SecretString"]
    assert result.output.strip() == tenant_secret(master, "acme")
    assert result.output.strip() != tenant_secret(master, "other")


def put_event(detail_type: str, detail: dict[str, object]) -> None:
    boto3.client("events").put_events(
        Entries=[
            {
                "Source": "claude-jobs.trigger",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "EventBusName": "local-bus",
            }
        ]
    )


def test_an_event_the_function_always_fails_on_is_dead_lettered_and_later_ones_go_on(
    local: Provisioned,
) -> None:
    # Given the relay, and a trigger function that raises (an infrastructure fault, say) on
    # one event every time it gets it
    function, queue_url = relay(local.settings)
    invocations: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        invocations.append(event.get("detail", {}).get("task", ""))
        if event.get("detail", {}).get("task") == "poison":
            raise RuntimeError("DynamoDB is down for this one")
        return function.handler(event, lambda_context("trigger"))

    # When the poison event and then a good one reach the relay, and it runs a bounded time
    put_event("Run Task", {"task": "poison"})
    put_event("Run Task", {"task": "Count to three."})
    sqs = boto3.client("sqs")
    for _ in range(10):
        relay_once(
            sqs,
            queue_url,
            handler,
            failure_queue_url=local.settings.trigger_dlq_url,
            retry_delay_seconds=0,
        )
    # Then the good event became a job
    (job,) = Container(local.settings).job_repository.list_for_tenant("default", 10).jobs
    assert (job.prompt or "").startswith("Count to three.")
    # And the poison one was tried 1 + 2 times (Lambda's asynchronous retries), then Lambda's
    # on-failure record of it landed in the trigger dead-letter queue
    assert invocations.count("poison") == 3
    messages = sqs.receive_message(
        QueueUrl=local.settings.trigger_dlq_url, MaxNumberOfMessages=10
    ).get("Messages", [])
    (record,) = [json.loads(m["Body"]) for m in messages]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["detail"] == {"task": "poison"}
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    # And the relay queue is empty
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert all(int(v) == 0 for v in attributes.values())
