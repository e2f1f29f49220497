"""`job.awaiting_approval`: a job whose call waits for a person publishes one event on the bus
and, with a webhook_url, one signed webhook — once per approval id, whatever the stream
redelivers; a later wait (a new approval id) is told again; the terminal webhook is unchanged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from claude_jobs.models import Job, JobStatus
from claude_jobs.notify.approval_notices import DynamoApprovalNotices
from claude_jobs.notify.completion_events import AWAITING_APPROVAL_TYPE, EventBridgePublisher
from claude_jobs.notify.delivery import SqsDeliveryQueue
from claude_jobs.notify.processor import Notifier
from claude_jobs.ports import Transition
from tests.lambda_context import lambda_context
from tests.support.approvals import make_wait

from .conftest import BUS, Receiver, Subscriber, World


def wait(world: World, job: Job, approval_id: str) -> Job:
    """running → awaiting_approval as the worker writes it (from queued: claim first)."""
    return make_wait(
        world.container.job_repository,
        job.job_id,
        approval_id=approval_id,
        tool_use_id="toolu_secret_id",
        waited=timedelta(0),
    )


def decide(world: World, job: Job) -> Job:
    """The API's decision: awaiting_approval → queued."""
    return world.container.job_repository.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.QUEUED,
            from_=[JobStatus.AWAITING_APPROVAL],
            set_fields={"pending_approval": None},
        )
    )


def submit(world: World, **fields: Any) -> Job:
    return world.submit(
        allowed_tools=["Bash"],
        approvals=["Bash(git push:*)"],
        metadata={"ticket": "OPS-7"},
        **fields,
    )


def handle(world: World, records: list[dict[str, Any]]) -> dict[str, Any]:
    return world.notifier.handler({"Records": records}, lambda_context("notifier"))


def of_type(events: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["detail-type"] == detail_type]


def test_a_waiting_job_is_told_once_per_approval_and_its_terminal_webhook_still_goes(
    world: World, receiver: Receiver, subscriber: Subscriber
) -> None:
    # Given an acme job with a webhook, whose call waits for a person (approval apr_1)
    receiver.secret = world.tenant_secret("acme")
    job = submit(world, webhook_url=receiver.url)
    wait(world, job, "apr_1")
    # When the stream reaches the notifier — and then again, as a redelivery would
    records = world.stream.poll()
    assert handle(world, records) == {"batchItemFailures": []}
    assert handle(world, records) == {"batchItemFailures": []}
    world.deliver_stream()  # the notice's own write (no new approval) tells nothing
    world.deliver_webhooks()
    # Then the bus got one job.awaiting_approval event with the pending approval's view
    (event,) = of_type(subscriber.received(), AWAITING_APPROVAL_TYPE)
    detail = event["detail"]
    assert detail["job_id"] == job.job_id and detail["tenant_id"] == "acme"
    assert detail["status"] == "awaiting_approval" and detail["metadata"] == {"ticket": "OPS-7"}
    pending = detail["pending_approval"]
    assert set(pending) == {"approval_id", "tool", "input", "rule", "requested_at", "expires_at"}
    assert pending["approval_id"] == "apr_1" and pending["rule"] == "Bash(git push:*)"
    assert "toolu_secret_id" not in json.dumps(event) and "Say hello" not in json.dumps(event)
    # And the receiver one signed POST of the same summary, typed job.awaiting_approval
    (post,) = receiver.posts
    assert post["verified"]
    assert post["headers"]["X-Claude-Jobs-Event"] == AWAITING_APPROVAL_TYPE
    body = json.loads(post["body"])
    assert body["type"] == AWAITING_APPROVAL_TYPE and body["pending_approval"] == pending
    # And the job's own webhook (the terminal one) is still to come
    assert world.job(job.job_id).webhook.status == "pending"  # type: ignore[union-attr]

    # When a person decides, the job runs on and waits again on another call (apr_2)
    decide(world, job)
    wait(world, job, "apr_2")
    world.deliver_stream()
    world.deliver_webhooks()
    # Then that wait is told too: one more event and one more POST
    (second,) = of_type(subscriber.received(), AWAITING_APPROVAL_TYPE)
    assert second["detail"]["pending_approval"]["approval_id"] == "apr_2"
    assert len(receiver.posts) == 2
    assert json.loads(receiver.posts[1]["body"])["pending_approval"]["approval_id"] == "apr_2"

    # When it is decided and the job succeeds
    decide(world, job)
    world.run(job, result={"text": "pushed", "is_error": False})
    world.deliver_stream()
    world.deliver_webhooks()
    # Then the terminal event and webhook go out as ever, once
    (done,) = subscriber.received()
    assert done["detail-type"] == "Job Succeeded"
    assert len(receiver.posts) == 3
    last = json.loads(receiver.posts[2]["body"])
    assert last["type"] == "Job Succeeded" and last["result"]["text"] == "pushed"
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "delivered" and webhook.attempts == 1


def test_a_waiting_job_without_a_webhook_publishes_the_event_only(
    world: World, subscriber: Subscriber
) -> None:
    job = submit(world)
    wait(world, job, "apr_1")
    world.deliver_stream()
    (event,) = subscriber.received()
    assert event["detail-type"] == AWAITING_APPROVAL_TYPE
    assert world.deliver_webhooks() == 0  # nothing was queued


def test_a_record_read_after_the_decision_tells_nothing(
    world: World, receiver: Receiver, subscriber: Subscriber
) -> None:
    # Given a job that waited and was decided before the notifier saw its records
    job = submit(world, webhook_url=receiver.url)
    wait(world, job, "apr_1")
    decide(world, job)
    # When the records arrive
    world.deliver_stream()
    world.deliver_webhooks()
    # Then no one is asked to decide what is decided already
    assert subscriber.received() == [] and receiver.posts == []


class FlakyPublisher(EventBridgePublisher):
    def __init__(self, inner: EventBridgePublisher) -> None:
        self.__dict__.update(inner.__dict__)
        self.failures = 1

    def publish(self, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the bus is unreachable")
        super().publish(detail_type, detail, resources)


def test_a_fault_while_publishing_gives_the_notice_back_for_the_retry(
    world: World, subscriber: Subscriber
) -> None:
    import boto3

    settings = world.settings
    notifier = Notifier(
        FlakyPublisher(EventBridgePublisher(boto3.client("events"), BUS)),
        SqsDeliveryQueue(boto3.client("sqs"), settings.webhook_queue_url),
        notices=DynamoApprovalNotices(boto3.client("dynamodb"), settings.jobs_table),
    )
    job = submit(world)
    wait(world, job, "apr_1")
    records = [
        r
        for r in world.stream.poll()
        if r["dynamodb"].get("NewImage", {}).get("status") == {"S": "awaiting_approval"}
    ]
    (record,) = records
    image = record["dynamodb"]
    # When the first try fails at the bus, and the record is retried
    with pytest.raises(ConnectionError):
        notifier.process(image.get("OldImage"), image["NewImage"])
    told = notifier.process(image.get("OldImage"), image["NewImage"])
    # Then the retry publishes it, once; a third try publishes nothing
    assert told is not None and told.detail_type == AWAITING_APPROVAL_TYPE
    assert notifier.process(image.get("OldImage"), image["NewImage"]) is None
    assert len(subscriber.received()) == 1


def test_a_failing_receiver_gets_the_approval_webhook_again_and_it_is_recorded(
    world: World, receiver: Receiver
) -> None:
    from claude_jobs.notify.approval_notices import DynamoApprovalNotices

    # Given a receiver that fails the first POST
    receiver.secret = world.tenant_secret("acme")
    receiver.fail_first = 1
    job = submit(world, webhook_url=receiver.url)
    wait(world, job, "apr_1")
    # When the stream and the webhook queue are processed
    world.deliver_stream()
    world.deliver_webhooks()
    # Then the delivery was retried until the receiver took it, each POST signed afresh
    assert [p["verified"] for p in receiver.posts] == [True, True]
    notice = DynamoApprovalNotices(
        world.container.client("dynamodb"), world.settings.jobs_table
    ).get(job.job_id)
    assert notice is not None and notice.approval_id == "apr_1"
    assert notice.webhook == "delivered" and notice.attempts == 2 and notice.delivered_at
    # And the job's own (terminal) webhook is untouched
    webhook = world.job(job.job_id).webhook
    assert webhook is not None and webhook.status == "pending" and webhook.attempts == 0
