"""Webhooks: signed POSTs of the job summary, verified by a real receiver, retried with backoff,
and the delivery recorded on the job."""

from __future__ import annotations

import json

import pytest

from claude_jobs.models import JobStatus
from claude_jobs.notify.webhooks import (
    RetryPolicy,
    WebhookSender,
    sign,
    tenant_secret,
    verify_signature,
)

from .conftest import Receiver, World


def test_a_finished_job_posts_a_signed_summary(world: World, receiver: Receiver) -> None:
    # Given a receiver that knows tenant acme's secret, and an acme job with its webhook_url
    receiver.secret = world.tenant_secret("acme")
    job = world.submit(webhook_url=receiver.url)
    world.run(job, result={"text": "Hello!", "is_error": False})
    # When the stream reaches the notifier
    assert world.deliver_stream() == {"batchItemFailures": []}
    # Then the receiver got one POST whose signature it verified, carrying the summary
    (post,) = receiver.posts
    assert post["verified"]
    summary = json.loads(post["body"])
    assert summary["type"] == "Job Succeeded"
    assert summary["job_id"] == job.job_id and summary["status"] == "succeeded"
    assert summary["result"]["text"] == "Hello!"
    assert post["headers"]["X-Claude-Jobs-Event"] == "Job Succeeded"
    # And the job records the delivery
    webhook = world.job(job.job_id).webhook
    assert webhook is not None
    assert webhook.delivered and webhook.attempts == 1 and webhook.last_error is None
    assert webhook.delivered_at is not None
    # And recording it (another stream record, terminal → terminal) posts nothing more
    world.deliver_stream()
    assert len(receiver.posts) == 1


def test_another_tenants_secret_does_not_verify(world: World, receiver: Receiver) -> None:
    # Given a receiver holding tenant other's secret, and an acme job posting to it
    receiver.secret = world.tenant_secret("other")
    job = world.submit(webhook_url=receiver.url)
    world.run(job)
    # When the notifier delivers it
    world.deliver_stream()
    # Then the receiver rejects every attempt, and the job records the failure
    assert receiver.posts and not any(p["verified"] for p in receiver.posts)
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and not webhook.delivered and webhook.last_error == "HTTP 401"


def test_a_failing_receiver_is_retried_with_backoff(world: World, receiver: Receiver) -> None:
    # Given a receiver that fails the first two deliveries
    receiver.secret = world.tenant_secret("acme")
    receiver.fail_first = 2
    job = world.submit(webhook_url=receiver.url)
    world.run(job, JobStatus.FAILED, error={"code": "agent_error", "message": "no"})
    # When the notifier delivers the webhook
    world.deliver_stream()
    # Then the third attempt lands, after exponential pauses, and the job records 3 attempts
    assert [p["verified"] for p in receiver.posts] == [True, True, True]
    assert world.sleeps == [0.5, 1.0]
    webhook = world.job(job.job_id).webhook
    assert webhook is not None
    assert webhook.delivered and webhook.attempts == 3 and webhook.last_error is None


def test_a_receiver_that_always_fails_is_given_up_on(world: World, receiver: Receiver) -> None:
    # Given a receiver that always fails
    receiver.secret = world.tenant_secret("acme")
    receiver.always_fail = True
    job = world.submit(webhook_url=receiver.url)
    world.run(job)
    # When the notifier delivers the webhook
    response = world.deliver_stream()
    # Then it stops after the maximum attempts and records the failure; the record itself
    # succeeded (the event was published; a dead receiver must not block the stream)
    assert response == {"batchItemFailures": []}
    max_attempts = RetryPolicy().max_attempts
    assert len(receiver.posts) == max_attempts
    assert world.sleeps == [0.5, 1.0, 2.0]
    webhook = world.job(job.job_id).webhook
    assert webhook is not None
    assert not webhook.delivered
    assert webhook.attempts == max_attempts and webhook.last_error == "HTTP 500"


def test_an_unreachable_receiver_records_the_network_error(world: World) -> None:
    # Given a webhook URL where nothing listens
    job = world.submit(webhook_url="http://127.0.0.1:9/nothing-here")
    world.run(job)
    # When the notifier delivers it
    world.deliver_stream()
    # Then the failure is recorded with the error
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and not webhook.delivered
    assert webhook.last_error is not None and "refused" in webhook.last_error.lower()


def test_delivery_refuses_a_host_that_resolves_to_a_private_address() -> None:
    # Given an https URL whose host name resolves to a private address (DNS rebinding)
    posted: list[str] = []
    sender = WebhookSender(
        post=lambda url, body, headers, timeout: posted.append(url) or 200,  # type: ignore[func-returns-value]
        resolve=lambda host: ["10.0.0.7"],
    )
    # When it is delivered
    delivery = sender.deliver(
        "https://hooks.example.com/x", b"{}", "s", event_type="Job Failed", job_id="j"
    )
    # Then nothing is posted and the delivery says why
    assert posted == [] and not delivery.delivered and delivery.attempts == 0
    assert delivery.last_error == "refused: the host resolves to a private or reserved address"


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
