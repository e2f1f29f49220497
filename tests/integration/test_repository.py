"""The job repository and service against moto: conditional writes, idempotency, listing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

import boto3
import pytest

from claude_jobs.adapters.jobs_table import DynamoJobRepository, tenant_shard
from claude_jobs.adapters.queue import SqsJobQueue
from claude_jobs.errors import (
    DispatchError,
    IdempotencyConflictError,
    JobNotFoundError,
    RequestValidationError,
    TransitionConflictError,
)
from claude_jobs.job_service import JobService
from claude_jobs.models import Job, JobRequest, JobStatus
from claude_jobs.ports import Transition
from claude_jobs.resources import TENANT_SHARDS
from claude_jobs.service.cursors import encode_token
from claude_jobs_tools.provision import Provisioned


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
    running = repo.transition(Transition(job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1))
    assert running.status is JobStatus.RUNNING and running.attempts == 1
    done = repo.transition(Transition(job_id=job.job_id, to=JobStatus.SUCCEEDED))
    assert done.version == running.version + 1
    with pytest.raises(TransitionConflictError) as conflict:
        repo.transition(Transition(job_id=job.job_id, to=JobStatus.FAILED))
    current = conflict.value.current
    assert isinstance(current, Job)
    assert current.status is JobStatus.SUCCEEDED
    with pytest.raises(JobNotFoundError):
        repo.transition(Transition(job_id="nope", to=JobStatus.RUNNING))


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


def test_listing_across_shards_is_newest_first_with_no_duplicates_or_gaps(
    service: JobService, repo: DynamoJobRepository
) -> None:
    # Given many jobs of one tenant, spread over every shard of the index, and another tenant's
    ids = [service.submit("t1", JobRequest(prompt=str(i))).job.job_id for i in range(45)]
    service.submit("t2", JobRequest(prompt="other"))
    shards = {tenant_shard("t1", i) for i in ids}
    assert len(shards) == TENANT_SHARDS
    for limit in (1, 7, 45, 100):
        # When they are listed page by page
        seen: list[str] = []
        token = None
        for _ in range(60):
            page = service.list("t1", limit=limit, next_token=token)
            assert len(page.items) <= limit
            seen += [j.job_id for j in page.items]
            token = page.next_token
            if token is None:
                break
        # Then every job shows once, newest first
        assert seen == ids[::-1], limit


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),  # altered MAC
        lambda token: "x" + token,  # altered payload
        lambda token: token.replace(".", ""),  # no MAC
        lambda token: "e30." + token.split(".")[1],  # {} with another MAC
        lambda token: "%%%.%%%",
    ],
)
def test_a_forged_page_token_is_a_422(service: JobService, forge: Callable[[str], str]) -> None:
    for i in range(3):
        service.submit("t1", JobRequest(prompt=str(i)))
    token = service.list("t1", limit=1).next_token
    assert token is not None
    with pytest.raises(RequestValidationError):
        service.list("t1", limit=1, next_token=forge(token))


@pytest.mark.parametrize(
    "cursor",
    [
        {"p": ["", "", ""]},  # shards missing
        {"p": ["2026-11-22T12:00:00.000000Z#x", "", "", {"S": "x"}]},  # not a key
        {"p": ["../../etc", None, None, None]},
        {"p": [None, None, None, None]},  # nothing left, yet a token
        {"p": ["", "", "", ""], "extra": 1},
        {"tenant_id": "t1", "created_key": "2026", "job_id": "x"},  # the old layout
    ],
)
def test_a_token_for_a_position_the_listing_never_returned_is_a_422(
    service: JobService, cursor: dict[str, object]
) -> None:
    # Given a well-signed token for the right tenant whose positions were never returned
    token = encode_token(cursor, "t1", "")
    # Then listing with it is a validation error, never a DynamoDB error
    with pytest.raises(RequestValidationError):
        service.list("t1", limit=5, next_token=token)
    # And another tenant's token is refused too
    mine = encode_token({"p": ["", "", "", ""]}, "t2", "")
    with pytest.raises(RequestValidationError):
        service.list("t1", limit=5, next_token=mine)
