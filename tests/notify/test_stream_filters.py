"""Only the records the notifier acts on invoke it: Lambda's event filtering on the jobs table's
stream (`resources.NOTIFIER_STREAM.filters`), which the CDK app sets on the event source
mapping and the local stack's stream source applies with the same patterns. A running job's
own writes (its claim, the spend journal's two writes a model call) never invoke it; every
record the notifier would act on still does."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import boto3
import pytest

from claude_jobs.adapters.job_items import job_to_item
from claude_jobs.approval_models import PendingApproval
from claude_jobs.models import Job, JobStatus
from claude_jobs.notify.processor import Notifier
from claude_jobs.ports import Transition
from claude_jobs.resources import NOTIFIER_DLQ, NOTIFIER_STREAM
from claude_jobs_tools.local.sources import StreamEventSource, record_filter, sqs_destination
from claude_jobs_tools.local.table_stream import StreamReader
from claude_jobs_tools.provision import Provisioned
from tests.lambda_context import lambda_context
from tests.support.jobs import T0, make_job

from .conftest import Subscriber, World


class _Acted(Exception):
    """The notifier reached one of its outputs."""


class _Outputs:
    """The notifier's every output (the bus, the webhook queue, approval notices, GitHub
    comments): reaching any of them ends `process` with `_Acted`."""

    def __getattr__(self, name: str) -> Any:
        def act(*args: Any, **kwargs: Any) -> Any:
            raise _Acted(name)

        return act


def acts_on(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Does the real notifier do anything for this record (publish, send, claim a notice,
    comment; or fail trying, which would retry it)?"""
    outputs = _Outputs()
    notifier = Notifier(
        outputs,
        outputs,
        notices=outputs,
        github_comments=lambda: outputs,
    )
    try:
        return notifier.process(old, new) is not None
    except Exception:
        return True


def image(status: JobStatus | None, source: str, approval: str | None) -> dict[str, Any] | None:
    """A job's item (DynamoDB JSON) in `status`, waiting on `approval` if given."""
    if status is None:
        return None
    pending = None
    if approval is not None:
        pending = PendingApproval(
            approval_id=approval,
            tool_use_id="toolu_01",
            tool="Bash",
            input="{}",
            requested_at=T0,
            expires_at=T0 + timedelta(hours=1),
        )
    return job_to_item(make_job(status=status, source=source, pending_approval=pending), 30)


def record(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    images = {"OldImage": old, "NewImage": new}
    return {
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "dynamodb": {k: v for k, v in images.items() if v is not None},
    }


STATES = [None, *JobStatus]


@pytest.mark.parametrize("source", ["api", "github", "s3"])
def test_every_record_the_notifier_acts_on_passes_the_filters(source: str) -> None:
    # Given every pair of old and new status of a job of this source, with and without a
    # pending approval (and a new one)
    passes = record_filter(NOTIFIER_STREAM.filters)
    acted, dropped = 0, 0
    for old_status, new_status in itertools.product(STATES, STATES):
        for old_approval, new_approval in [(None, None), (None, "ap-1"), ("ap-1", "ap-2")]:
            old = image(old_status, source, old_approval)
            new = image(new_status, source, new_approval)
            # Then a record the notifier acts on always passes the filters
            if acts_on(old, new):
                acted += 1
                assert passes(record(old, new)), (old_status, new_status, old_approval)
            elif not passes(record(old, new)):
                dropped += 1
    # And the filters drop much of what it ignores: every write of a running job, for one
    assert acted and dropped
    running = image(JobStatus.RUNNING, source, None)
    assert passes(record(running, running)) is (source == "github")


def test_a_running_jobs_own_writes_never_invoke_the_notifier(
    stack: Provisioned, world: World, subscriber: Subscriber
) -> None:
    # Given a job claimed, journaled twice (a model call's reservation, then its cost) and
    # finished, through the real repository, its records on the table's real stream
    job = world.submit()
    repo = world.container.job_repository
    repo.transition(Transition(job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1))
    assert repo.journal_spend(job.job_id, 1, 0.25)
    assert repo.journal_spend(job.job_id, 1, 0.01)
    repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.SUCCEEDED,
            set_fields={"finished_at": "2026-11-22T12:00:09+00:00"},
            remove_fields=["prompt"],
        )
    )
    # When the local stack's stream source hands the stream to the real notifier
    invoked: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Any:
        invoked.append(event)
        return world.notifier.handler(event, lambda_context("notifier"))

    dlq = sqs_destination(boto3.client("sqs"), stack.queue_urls[NOTIFIER_DLQ.logical_id])
    reader = StreamReader(boto3.client("dynamodb"), world.settings.jobs_table)
    source = StreamEventSource(reader, invoke, NOTIFIER_STREAM, dlq, retry_delay_seconds=0.0)
    for _ in range(3):
        source.poll_once()
    # Then the notifier was invoked once, with the job's end alone: the insert, the claim and
    # the two journal writes never reached it
    seen = [r["dynamodb"]["NewImage"]["status"]["S"] for e in invoked for r in e["Records"]]
    assert seen == ["succeeded"]
    assert source.filtered >= 4  # and the table's other items' records (tenant counters)
    # And the completion event went out, once
    (event,) = subscriber.received()
    assert event["detail"]["job_id"] == job.job_id
    assert event["detail-type"] == "Job Succeeded"


def test_a_github_jobs_claim_still_reaches_the_notifier() -> None:
    # Given a job a GitHub event started, claimed (its comment says it runs)
    passes = record_filter(NOTIFIER_STREAM.filters)
    job: Job = make_job(source="github")
    queued = job_to_item(job, 30)
    running = job_to_item(job.model_copy(update={"status": JobStatus.RUNNING}), 30)
    # Then its claim passes, and so does an API job's end, but not an API job's claim
    assert passes(record(queued, running))
    api = make_job()
    claimed = api.model_copy(update={"status": JobStatus.RUNNING})
    assert not passes(record(job_to_item(api, 30), job_to_item(claimed, 30)))
    done = api.model_copy(update={"status": JobStatus.FAILED})
    assert passes(record(job_to_item(api, 30), job_to_item(done, 30)))
    # And a TTL deletion (no new image) does not
    assert not passes(record(job_to_item(done, 30), None))
