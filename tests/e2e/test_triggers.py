"""Triggers and webhooks end to end: `claude-jobs trigger` and a webhook receiver against the
running local stack, the way a user follows the banner's recipe.

An S3 upload and an EventBridge event go to the stack's emulator with the `claude-jobs` command;
the stack's relay hands them to the trigger function, the worker runs the real CLI, the
notifier posts signed webhooks. Everything is observed over HTTP (the API) or through the
emulator the banner names (the trigger dead-letter queue).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from claude_jobs.notify.webhooks import verify_signature
from claude_jobs_client import Client
from tests.support.servers import http_server

from .conftest import CLAUDE_JOBS, TENANTS, DevProcess, base_env

pytestmark = pytest.mark.e2e

JOB_WAIT = 120  # seconds: 2 shared cores, one CLI run per job


def cli(stack: DevProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`claude-jobs …` in a shell that pasted the banner's export lines."""
    done = subprocess.run(
        [CLAUDE_JOBS, *args],
        env=base_env(**stack.exports()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def eventually(check: Callable[[], Any], what: str, timeout: float = JOB_WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def emulator(stack: DevProcess, service: str) -> Any:
    exports = stack.exports()
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        # The banner's key: the emulator serves no other.
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )


def queue_url(stack: DevProcess, suffix: str) -> str:
    prefix = stack.exports()["INBOX_BUCKET"].removesuffix("-inbox")
    url: str = emulator(stack, "sqs").get_queue_url(QueueName=f"{prefix}-{suffix}")["QueueUrl"]
    return url


def queue_is_drained(stack: DevProcess, suffix: str) -> bool:
    attributes = emulator(stack, "sqs").get_queue_attributes(
        QueueUrl=queue_url(stack, suffix),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())


def jobs_where(client: Client, key: str, value: str) -> list[dict[str, Any]]:
    return [j for j in client.list(limit=100)["items"] if j["metadata"].get(key) == value]


@pytest.fixture
def pipelines(stack: DevProcess) -> Iterator[Client]:
    """The tenant the shipped triggers.json runs its jobs as."""
    with Client(stack.url, TENANTS["default"], timeout=60) as client:
        yield client


def test_an_uploaded_file_becomes_one_job_that_finds_it_in_its_workspace(
    stack: DevProcess, pipelines: Client, tmp_path: Path
) -> None:
    # Given a document whose text asks the (fake) model to grep the workspace for a token
    token = f"needle{uuid.uuid4().hex[:10]}"
    document = tmp_path / f"{token}.md"
    document.write_text(f"Minutes of the weekly sync. [[grep:{token}]]\n")
    key = f"inbox/{token}.md"
    # When it is uploaded to the inbox twice (S3 may notify twice; the same object and ETag)
    for _ in range(2):
        uploaded = json.loads(cli(stack, "trigger", "s3", str(document), "--key", key).stdout)
        assert uploaded["key"] == key
    # Then one job is made for the trigger's tenant, with the trigger's options
    job = eventually(lambda: jobs_where(pipelines, "s3_key", key), "the trigger's job")[0]
    finished = pipelines.wait(job["job_id"], timeout=JOB_WAIT)
    eventually(lambda: queue_is_drained(stack, "trigger-relay"), "the relay to drain")
    assert [j["job_id"] for j in jobs_where(pipelines, "s3_key", key)] == [job["job_id"]]
    assert finished["metadata"]["trigger"] == "inbox-review"
    assert finished["request"]["max_turns"] == 10
    # And the agent's Grep found the object in its own workspace
    assert finished["status"] == "succeeded", finished
    assert f"{token}.md" in finished["result"]["text"]


def test_an_event_becomes_a_job_with_its_options_and_a_bad_one_is_dead_lettered(
    stack: DevProcess, pipelines: Client
) -> None:
    name = f"evt{uuid.uuid4().hex[:10]}"
    # Given an event asking for a task with its own (permitted) max_turns
    good = {"task": f"Repeat [[echo:{name}]]", "job": {"max_turns": 2}}
    # And one asking for more turns than the API allows
    bad = {"task": f"Repeat {name}", "job": {"max_turns": 1000}}
    # When both are put on the stack's bus
    sent = json.loads(
        cli(
            stack, "trigger", "event", "--detail-type", "Run Task", "--detail", json.dumps(good)
        ).stdout
    )
    rejected = json.loads(
        cli(
            stack, "trigger", "event", "--detail-type", "Run Task", "--detail", json.dumps(bad)
        ).stdout
    )
    # Then the good one runs as a job with the event's options
    job = eventually(
        lambda: jobs_where(pipelines, "event_id", sent["event_id"]), "the event's job"
    )[0]
    finished = pipelines.wait(job["job_id"], timeout=JOB_WAIT)
    assert finished["status"] == "succeeded", finished
    assert finished["result"]["text"] == f"echo {name}"
    assert finished["request"]["max_turns"] == 2
    # And the bad one makes no job but lands in the trigger DLQ with its reason
    sqs = emulator(stack, "sqs")
    dlq = queue_url(stack, "trigger-dlq")

    def dead_letter() -> dict[str, Any] | None:
        for message in sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", []):
            if rejected["event_id"] in message["Body"]:
                return dict(message)
        return None

    letter = eventually(dead_letter, "the dead letter")
    assert "max_turns" in letter["MessageAttributes"]["reason"]["StringValue"]
    assert jobs_where(pipelines, "event_id", rejected["event_id"]) == []


#: Where the receivers below take deliveries.
HOOK_PATH = "/hooks/claude-jobs"


class FlakyReceiver:
    """A webhook receiver on loopback that fails its first `failures` deliveries with 500."""

    def __init__(self, failures: int) -> None:
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != HOOK_PATH:  # another e2e test's agent probing loopback ports
                    self.send_response(404)
                    self.end_headers()
                    return
                status = 500 if len(receiver.received) < failures else 204
                receiver.received.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = http_server(Handler).start()
        self.url = f"{self.server.url}{HOOK_PATH}"

    def close(self) -> None:
        self.server.close()


def test_a_webhook_is_signed_for_its_tenant_and_retried_until_the_receiver_takes_it(
    stack: DevProcess, alpha: Client
) -> None:
    # Given tenant alpha's signing secret, read as an operator would
    secret = cli(stack, "webhooks", "secret", "--tenant", "alpha").stdout.strip()
    beta_secret = cli(stack, "webhooks", "secret", "--tenant", "beta").stdout.strip()
    assert secret
    assert secret != beta_secret
    # And a receiver that fails twice before it accepts
    receiver = FlakyReceiver(failures=2)
    try:
        # When a job with that webhook finishes
        name = f"hook{uuid.uuid4().hex[:10]}"
        response = httpx.post(
            f"{stack.url}/v1/jobs",
            json={"prompt": f"[[echo:{name}]]", "allowed_tools": [], "webhook_url": receiver.url},
            headers={"Authorization": f"Bearer {TENANTS['alpha']}"},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert alpha.wait(job_id, timeout=JOB_WAIT)["status"] == "succeeded"
        delivered = eventually(
            lambda: (alpha.get(job_id).get("webhook") or {}).get("delivered"), "the delivery"
        )
    finally:
        receiver.close()
    # Then it was retried after each failure and the job records the delivery
    assert delivered is True
    record = alpha.get(job_id)["webhook"]
    assert record["attempts"] == 3 and record["status"] == "delivered"
    assert [status for _, _, status in receiver.received] == [500, 500, 204]
    # And every delivery verifies with alpha's secret, and not with beta's
    for headers, body, _ in receiver.received:
        timestamp = headers["X-Claude-Jobs-Timestamp"]
        signature = headers["X-Claude-Jobs-Signature"]
        assert verify_signature(secret, timestamp, body, signature)
        assert not verify_signature(beta_secret, timestamp, body, signature)
    summary = json.loads(receiver.received[-1][1])
    assert summary["job_id"] == job_id
    assert summary["status"] == "succeeded"
    # And a replay of the accepted delivery an hour later is refused
    headers, body, _ = receiver.received[-1]
    assert not verify_signature(
        secret,
        headers["X-Claude-Jobs-Timestamp"],
        body,
        headers["X-Claude-Jobs-Signature"],
        now=int(headers["X-Claude-Jobs-Timestamp"]) + 3600,
    )


def test_a_webhook_whose_receiver_always_fails_is_dead_lettered_and_shown_failed(
    stack: DevProcess, alpha: Client
) -> None:
    # Given a receiver that answers 500 to everything
    receiver = FlakyReceiver(failures=10**6)
    try:
        # When a job with that webhook finishes
        name = f"dead{uuid.uuid4().hex[:10]}"
        response = httpx.post(
            f"{stack.url}/v1/jobs",
            json={"prompt": f"[[echo:{name}]]", "allowed_tools": [], "webhook_url": receiver.url},
            headers={"Authorization": f"Bearer {TENANTS['alpha']}"},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert alpha.wait(job_id, timeout=JOB_WAIT)["status"] == "succeeded"
        # Then after its attempts (the local stack backs off 1 s, 2 s, 4 s, 8 s) the job
        # shows the delivery failed
        record = eventually(
            lambda: (w := alpha.get(job_id).get("webhook")) and w["status"] == "failed" and w,
            "the failed delivery",
        )
    finally:
        receiver.close()
    assert record["attempts"] == 5 and record["last_error"] == "HTTP 500"
    assert not record["delivered"]
    assert [status for _, _, status in receiver.received] == [500] * 5
    # And the delivery's message reached the webhook dead-letter queue
    sqs = emulator(stack, "sqs")

    def dead_letter() -> dict[str, Any] | None:
        messages = sqs.receive_message(
            QueueUrl=queue_url(stack, "webhooks-dlq"), MaxNumberOfMessages=10
        ).get("Messages", [])
        bodies = [json.loads(m["Body"]) for m in messages]
        return next((b for b in bodies if b["job_id"] == job_id), None)

    letter = eventually(dead_letter, "the dead-lettered delivery", timeout=30)
    assert letter["url"] == receiver.url
