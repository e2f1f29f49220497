"""The job repository and service against moto: conditional writes, idempotency, listing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

import boto3
import pytest

from claude_jobs.adapters.jobs_table import DynamoJobRepository
from claude_jobs.adapters.queue import SqsJobQueue
from claude_jobs.errors import (
    DispatchError,
    IdempotencyConflictError,
    JobNotFoundError,
    TransitionConflictError,
)
from claude_jobs.models import Job, JobRequest, JobStatus
from claude_jobs.provision import Provisioned
from claude_jobs.service import JobService


class BrokenQueue:
    def send(self, job: object) -> None:
        raise ConnectionError("queue unreachable")


@pytest.fixture
def clock():  # type: ignore[no-untyped-def]
    ticks = count()
    start = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(ticks))


@pytest.fixture
def repo(provisioned: Provisioned) -> DynamoJobRepository:
    return DynamoJobRepository(boto3.client("dynamodb"), provisioned.settings.jobs_table)


@pytest.fixture
def service(provisioned: Provisioned, repo: DynamoJobRepository, clock) -> JobService:  # type: ignore[no-untyped-def]
    queue = SqsJobQueue(boto3.client("sqs"), provisioned.settings.jobs_queue_url)
    return JobService(repo, queue, provisioned.settings, clock=clock)


def test_submit_stores_a_queued_job_and_sends_one_message(
    service: JobService, provisioned: Provisioned
) -> None:
    # Given a valid request
    request = JobRequest(prompt="hello")
    # When it is submitted
    job = service.submit("t1", request).job
    # Then it is stored queued with the deployment's model, and one message names it
    stored = service.get("t1", job.job_id)
    assert stored.status is JobStatus.QUEUED
    assert stored.options.model == provisioned.settings.default_model
    messages = boto3.client("sqs").receive_message(
        QueueUrl=provisioned.settings.jobs_queue_url, MaxNumberOfMessages=10
    )["Messages"]
    assert [m["Body"] for m in messages] == [f'{{"job_id":"{job.job_id}","tenant_id":"t1"}}']


def test_idempotency_key_returns_the_first_job_and_rejects_another_body(
    service: JobService,
) -> None:
    first = service.submit("t1", JobRequest(prompt="a"), idempotency_key="k1")
    again = service.submit("t1", JobRequest(prompt="a"), idempotency_key="k1")
    assert first.created and not again.created
    assert again.job.job_id == first.job.job_id
    with pytest.raises(IdempotencyConflictError):
        service.submit("t1", JobRequest(prompt="b"), idempotency_key="k1")
    # The same key from another tenant is another key
    other = service.submit("t2", JobRequest(prompt="a"), idempotency_key="k1")
    assert other.created and other.job.job_id != first.job.job_id


def test_dispatch_failure_fails_the_job_and_frees_the_key(
    provisioned: Provisioned, repo: DynamoJobRepository, clock: Callable[[], datetime]
) -> None:
    broken = JobService(repo, BrokenQueue(), provisioned.settings, clock=clock)
    with pytest.raises(DispatchError):
        broken.submit("t1", JobRequest(prompt="a"), idempotency_key="k")
    (failed,) = broken.list("t1").items
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == "dispatch_failed"
    working = JobService(
        repo,
        SqsJobQueue(boto3.client("sqs"), provisioned.settings.jobs_queue_url),
        provisioned.settings,
        clock=clock,
    )
    retry = working.submit("t1", JobRequest(prompt="a"), idempotency_key="k")
    assert retry.created and retry.job.job_id != failed.job_id


def test_transitions_are_conditional(service: JobService, repo: DynamoJobRepository) -> None:
    job = service.submit("t1", JobRequest(prompt="a")).job
    running = repo.transition(job.job_id, JobStatus.RUNNING, add_attempts=1)
    assert running.status is JobStatus.RUNNING and running.attempts == 1
    done = repo.transition(job.job_id, JobStatus.SUCCEEDED)
    assert done.version == running.version + 1
    with pytest.raises(TransitionConflictError) as conflict:
        repo.transition(job.job_id, JobStatus.FAILED)
    current = conflict.value.current
    assert isinstance(current, Job)
    assert current.status is JobStatus.SUCCEEDED
    with pytest.raises(JobNotFoundError):
        repo.transition("nope", JobStatus.RUNNING)


def test_cancel_and_tenant_isolation(service: JobService) -> None:
    job = service.submit("t1", JobRequest(prompt="a")).job
    with pytest.raises(JobNotFoundError):
        service.get("t2", job.job_id)
    with pytest.raises(JobNotFoundError):
        service.cancel("t2", job.job_id)
    cancelled = service.cancel("t1", job.job_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.prompt is None


def test_listing_is_newest_first_and_paginates(service: JobService) -> None:
    ids = [service.submit("t1", JobRequest(prompt=str(i))).job.job_id for i in range(5)]
    service.submit("t2", JobRequest(prompt="other"))
    page1 = service.list("t1", limit=2)
    page2 = service.list("t1", limit=2, next_token=page1.next_token)
    page3 = service.list("t1", limit=2, next_token=page2.next_token)
    seen = [j.job_id for p in (page1, page2, page3) for j in p.items]
    assert seen == ids[::-1]
    assert page3.next_token is None or service.list("t1", 2, page3.next_token).items == []
