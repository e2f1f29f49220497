"""Webhooks: the notifier queues one delivery per finished job; the webhook function makes
signed POSTs of the job summary, verified by a real receiver, each within a total deadline,
retried with backoff through the queue, dead-lettered when they run out, and the delivery
recorded on the job."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import pytest

from claude_jobs.models import JobStatus
from claude_jobs.notify.delivery import WebhookDeliverer, WebhookMessage
from claude_jobs.notify.webhook_function import WebhookFunction
from claude_jobs.notify.webhooks import (
    Attempt,
    DeadlineExceededError,
    WebhookSender,
    deadline_post,
    sign,
    tenant_secret,
    verify_signature,
)
from claude_jobs.resources import WEBHOOK_MAX_ATTEMPTS
from claude_jobs.wiring import Container
from tests.lambda_context import lambda_context

from .conftest import Receiver, World


def test_a_finished_job_posts_a_signed_summary_once(world: World, receiver: Receiver) -> None:
    # Given a receiver that knows tenant acme's secret, and an acme job with its webhook_url
    receiver.secret = world.tenant_secret("acme")
    job = world.submit(webhook_url=receiver.url)
    assert world.job(job.job_id).webhook.status == "pending"  # type: ignore[union-attr]
    world.run(job, result={"text": "Hello!", "is_error": False})
    # When the stream reaches the notifier, and the webhook queue the webhook function
    assert world.deliver_stream() == {"batchItemFailures": []}
    assert receiver.posts == []  # the stream handler itself calls nobody
    world.deliver_webhooks()
    # Then the receiver got one POST whose signature it verified, carrying the summary
    (post,) = receiver.posts
    assert post["verified"]
    summary = json.loads(post["body"])
    assert summary["type"] == "Job Succeeded"
    assert summary["job_id"] == job.job_id and summary["status"] == "succeeded"
    assert summary["result"]["text"] == "Hello!"
    assert post["headers"]["X-Claude-Jobs-Event"] == "Job Succeeded"
    assert post["headers"]["X-Claude-Jobs-Job-Id"] == job.job_id
    # And the job records the delivery
    webhook = world.job(job.job_id).webhook
    assert webhook is not None
    assert webhook.status == "delivered" and webhook.delivered
    assert webhook.attempts == 1 and webhook.last_error is None
    assert webhook.delivered_at is not None
    # And recording it (another stream record, terminal → terminal) posts nothing more
    world.deliver_stream()
    world.deliver_webhooks()
    assert len(receiver.posts) == 1


def test_a_second_message_for_a_delivered_webhook_posts_nothing(
    world: World, receiver: Receiver
) -> None:
    # Given a delivered webhook
    receiver.secret = world.tenant_secret("acme")
    job = world.submit(webhook_url=receiver.url)
    world.run(job)
    events = world.stream.poll()
    world.notifier.handler({"Records": events}, lambda_context("notifier"))
    world.deliver_webhooks()
    # When the stream's record is processed again (stream processing is at least once)
    world.notifier.handler({"Records": events}, lambda_context("notifier"))
    world.deliver_webhooks()
    # Then the receiver was called once, and the queue is empty
    assert len(receiver.posts) == 1
    assert world.dead_webhooks() == []


def test_another_tenants_secret_does_not_verify(world: World, receiver: Receiver) -> None:
    # Given a receiver holding tenant other's secret, and an acme job posting to it
    receiver.secret = world.tenant_secret("other")
    job = world.submit(webhook_url=receiver.url)
    world.run(job)
    # When the delivery is made (and retried)
    world.deliver_stream()
    world.deliver_webhooks()
    # Then the receiver rejects every attempt, and the job records the failure
    assert receiver.posts and not any(p["verified"] for p in receiver.posts)
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "failed"
    assert not webhook.delivered and webhook.last_error == "HTTP 401"


def test_a_failing_receiver_is_retried_until_it_takes_the_delivery(
    world: World, receiver: Receiver
) -> None:
    # Given a receiver that fails the first two deliveries
    receiver.secret = world.tenant_secret("acme")
    receiver.fail_first = 2
    job = world.submit(webhook_url=receiver.url)
    world.run(job, JobStatus.FAILED, error={"code": "agent_error", "message": "no"})
    # When the webhook queue is consumed
    world.deliver_stream()
    world.deliver_webhooks()
    # Then the third attempt lands (each signed afresh), and the job records 3 attempts
    assert [p["verified"] for p in receiver.posts] == [True, True, True]
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "delivered"
    assert webhook.attempts == 3 and webhook.last_error is None
    assert world.dead_webhooks() == []


def test_a_receiver_that_always_fails_is_dead_lettered(world: World, receiver: Receiver) -> None:
    # Given a receiver that always fails
    receiver.secret = world.tenant_secret("acme")
    receiver.always_fail = True
    job = world.submit(webhook_url=receiver.url)
    world.run(job)
    # When the stream reaches the notifier, and the webhook queue is consumed
    response = world.deliver_stream()
    world.deliver_webhooks()
    # Then the stream's record succeeded (a dead receiver never blocks the stream)
    assert response == {"batchItemFailures": []}
    # And the delivery stopped after the maximum attempts, and the job records the failure
    assert len(receiver.posts) == WEBHOOK_MAX_ATTEMPTS
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "failed" and not webhook.delivered
    assert webhook.attempts == WEBHOOK_MAX_ATTEMPTS and webhook.last_error == "HTTP 500"
    # And the delivery's message is in the webhook dead-letter queue, for a redrive
    (dead,) = world.dead_webhooks()
    assert dead["job_id"] == job.job_id and dead["url"] == receiver.url


def test_a_failed_attempt_comes_back_after_the_backoff(world: World, receiver: Receiver) -> None:
    # Given a webhook function retrying after 1 s, then 2 s... and a receiver that fails once
    receiver.secret = world.tenant_secret("acme")
    receiver.fail_first = 1
    world.webhooks = WebhookFunction(
        Container(world.settings.model_copy(update={"webhook_retry_base_seconds": 1}))
    )
    job = world.submit(webhook_url=receiver.url)
    world.run(job)
    world.deliver_stream()
    # When the first attempt fails
    world.deliver_webhooks(rounds=1)
    assert len(receiver.posts) == 1
    # Then the job shows the delivery still pending, with the attempt's error
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "pending"
    assert webhook.attempts == 1 and webhook.last_error == "HTTP 500"
    # And the message is not back at once (the queue's own visibility timeout is minutes)
    sqs = boto3.client("sqs")
    assert sqs.receive_message(QueueUrl=world.webhook_queue).get("Messages") is None
    # But it is after the backoff, and the next attempt delivers it
    time.sleep(1.5)
    world.deliver_webhooks(rounds=3)
    assert len(receiver.posts) == 2
    assert world.job(job.job_id).webhook.status == "delivered"  # type: ignore[union-attr]


def test_an_unreachable_receiver_records_the_network_error(world: World) -> None:
    # Given a webhook URL where nothing listens
    job = world.submit(webhook_url="http://127.0.0.1:9/nothing-here")
    world.run(job)
    # When the delivery is made
    world.deliver_stream()
    world.deliver_webhooks()
    # Then the failure is recorded with the error
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "failed"
    assert webhook.last_error is not None and "refused" in webhook.last_error.lower()


# ---------------------------------------------------------------- the deliverer's rules


class FixedSender(WebhookSender):
    """Answers every attempt with the same outcome, calling nobody."""

    def __init__(self, outcome: Attempt) -> None:
        super().__init__()
        self.outcome = outcome
        self.calls = 0

    def attempt(
        self, url: str, body: bytes, secret: str, *, event_type: str, job_id: str
    ) -> Attempt:
        self.calls += 1
        return self.outcome


def test_attempts_back_off_exponentially_then_fail(world: World) -> None:
    # Given a job whose receiver always fails, and a deliverer with a 30 s base
    job = world.run(world.submit(webhook_url="https://hooks.example.com/x"))
    sender = FixedSender(Attempt(False, "HTTP 503"))
    deliverer = WebhookDeliverer(
        world.container.job_repository, sender, lambda: "master", retry_base_seconds=30
    )
    message = WebhookMessage(job_id=job.job_id, url="https://hooks.example.com/x",
                             event_type="Job Succeeded", body="{}")  # fmt: skip
    # When each receive of its message makes an attempt
    outcomes = [deliverer.deliver(message, receives) for receives in range(1, 6)]
    # Then the pauses double, and the last attempt fails for good (to the dead-letter queue)
    assert [o.action for o in outcomes] == ["retry"] * 4 + ["failed"]
    assert [o.retry_in for o in outcomes[:4]] == [30, 60, 120, 240]
    assert outcomes[-1].dead_letter
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "failed" and webhook.attempts == 5


def test_a_refused_url_fails_at_once_without_a_dead_letter(world: World) -> None:
    # Given a job whose webhook host now resolves to a private address (DNS rebinding)
    job = world.run(world.submit(webhook_url="https://hooks.example.com/x"))
    posted: list[str] = []
    sender = WebhookSender(
        post=lambda url, body, headers, deadline: posted.append(url) or 200,  # type: ignore[func-returns-value]
        resolve=lambda host: ["10.0.0.7"],
    )
    deliverer = WebhookDeliverer(world.container.job_repository, sender, lambda: "master")
    message = WebhookMessage(job_id=job.job_id, url="https://hooks.example.com/x",
                             event_type="Job Succeeded", body="{}")  # fmt: skip
    # When its delivery is due
    outcome = deliverer.deliver(message, receives=1)
    # Then nothing is posted, and the delivery failed for good, saying why
    assert posted == []
    assert outcome.action == "failed" and not outcome.dead_letter
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "failed" and webhook.attempts == 0
    assert webhook.last_error == "refused: the host resolves to a private or reserved address"


def test_older_webhook_records_read_with_their_status() -> None:
    from claude_jobs.models import WebhookDelivery

    assert WebhookDelivery(url="u", delivered=True, attempts=1).status == "delivered"
    assert WebhookDelivery.model_validate({"url": "u", "attempts": 4}).status == "failed"
    assert WebhookDelivery.model_validate({"url": "u"}).status == "pending"


# ---------------------------------------------------------------- the deadline


@pytest.fixture
def slow_drip() -> Iterator[str]:
    """A receiver that reads the request, then answers one byte every 0.2 s (its status line
    and headers would take about 20 s): every read gets data well within any per-read
    timeout."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 204 No Content\r\n" + b"X-Drip: " + b"." * 70 + b"\r\n\r\n":
                    if stop.wait(0.2):
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_a_slow_drip_receiver_is_cut_at_the_total_deadline(slow_drip: str) -> None:
    # Given a receiver that keeps every read alive but never finishes its answer
    started = time.monotonic()
    # When a delivery with a 1 s deadline is made to it
    with pytest.raises(DeadlineExceededError):
        deadline_post(slow_drip, b"{}", {"Content-Type": "application/json"}, 1.0)
    # Then it ends at the deadline, not when the receiver is done
    assert time.monotonic() - started < 2.5


def test_the_sender_reports_the_deadline_as_the_attempts_error(slow_drip: str) -> None:
    # Given a sender with a 1 s deadline (loopback allowed, as in the local stack)
    sender = WebhookSender(allow_loopback=True, deadline_s=1.0)
    started = time.monotonic()
    # When it attempts a delivery to the slow receiver
    attempt = sender.attempt(slow_drip, b"{}", "secret", event_type="Job Failed", job_id="j")
    # Then the attempt failed at the deadline, saying so
    assert time.monotonic() - started < 2.5
    assert not attempt.delivered and not attempt.refused
    assert attempt.error == "DeadlineExceededError: no answer within 1 s"


# ---------------------------------------------------------------- verification


SECRET = tenant_secret("test-master-key-not-real", "acme")
BODY = b'{"job_id":"j1","status":"succeeded"}'
NOW = 1_795_348_809


def test_a_fresh_signature_verifies() -> None:
    assert verify_signature(SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY), now=NOW + 10)


@pytest.mark.parametrize(
    ("timestamp", "body", "secret", "now"),
    [
        pytest.param(NOW, BODY, SECRET, NOW + 301, id="replayed-too-late"),
        pytest.param(NOW, BODY, SECRET, NOW - 301, id="from-the-future"),
        pytest.param(NOW, BODY.replace(b"succeeded", b"failed"), SECRET, NOW, id="tampered"),
        pytest.param(NOW, BODY, tenant_secret("test-master-key-not-real", "b"), NOW, id="tenant"),
    ],
)
def test_a_bad_or_replayed_signature_is_rejected(
    timestamp: int, body: bytes, secret: str, now: int
) -> None:
    # Given a delivery signed at NOW over BODY with tenant acme's secret
    signature = sign(SECRET, NOW, BODY)
    # When it is verified too late, with another body, or with another tenant's secret
    # Then it is rejected
    assert not verify_signature(secret, str(timestamp), body, signature, now=now)


def test_a_replay_with_a_fresh_timestamp_but_the_old_signature_is_rejected() -> None:
    old_signature = sign(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, str(NOW + 600), BODY, old_signature, now=NOW + 600)


def test_missing_or_garbled_headers_are_rejected() -> None:
    good = sign(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, None, BODY, good, now=NOW)
    assert not verify_signature(SECRET, "soon", BODY, good, now=NOW)
    assert not verify_signature(SECRET, str(NOW), BODY, None, now=NOW)
    assert not verify_signature(SECRET, str(NOW), BODY, good.replace("v1=", "v0="), now=NOW)
    # A header listing several signatures (a rotation) verifies when one matches
    assert verify_signature(SECRET, str(NOW), BODY, f"v1=deadbeef, {good}", now=NOW)
