"""One contract for every JobRepository: the DynamoDB adapter (on moto) and the in-memory fake
the unit tests use must behave alike, or a unit test on the fake would prove nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from claude_jobs.clock import epoch
from claude_jobs.errors import IdempotencyReplayError, JobNotFoundError, TransitionConflictError
from claude_jobs.models import Job, JobErrorInfo, JobOptions, JobResult, JobStatus
from claude_jobs.ports import IdempotencyClaim, JobControl, JobRepository
from tests.fakes import InMemoryJobRepository

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["dynamodb", "memory"])
def repo(request: pytest.FixtureRequest) -> Iterator[JobRepository]:
    if request.param == "memory":
        yield InMemoryJobRepository()
        return
    from moto import mock_aws

    from claude_jobs.adapters.jobs_table import DynamoJobRepository
    from claude_jobs_tools.provision import provision

    with mock_aws():
        settings = provision("contract", secret_value="sk-test").settings
        yield DynamoJobRepository(boto3.client("dynamodb"), settings.jobs_table)


def new_job(n: int = 0, tenant: str = "acme", **fields: object) -> Job:
    return Job.model_validate(
        {
            "job_id": f"job-{tenant}-{n:04d}",
            "tenant_id": tenant,
            "status": JobStatus.QUEUED,
            "created_at": T0 + timedelta(seconds=n),
            "prompt": "hello",
            "options": JobOptions(),
            "version": 1,
            **fields,
        }
    )


def claim(key: str, body: str = "h1", tenant: str = "acme") -> IdempotencyClaim:
    return IdempotencyClaim(tenant, key, body, epoch(T0 + timedelta(hours=24)))


def test_a_created_job_reads_back_equal(repo: JobRepository) -> None:
    job = new_job(metadata={"team": "data"})
    repo.create(job)
    assert repo.get(job.job_id) == job
    assert repo.get("job-none") is None


def test_a_transition_bumps_the_version_and_writes_domain_values(repo: JobRepository) -> None:
    # Given a queued job
    job = new_job()
    repo.create(job)
    # When it is claimed and finished with domain values
    running = repo.transition(
        job.job_id,
        JobStatus.RUNNING,
        add_attempts=1,
        set_fields={"started_at": T0, "lease_until": 123},
        expected_version=job.version,
    )
    done = repo.transition(
        job.job_id,
        JobStatus.SUCCEEDED,
        set_fields={"result": JobResult(text="ok"), "lease_until": None},
        remove_fields=["prompt"],
        expected_attempts=1,
    )
    # Then each write is what the next read sees
    assert (running.status, running.attempts, running.version) == (JobStatus.RUNNING, 1, 2)
    assert running.started_at == T0 and running.lease_until == 123
    assert done.result == JobResult(text="ok") and done.lease_until is None
    assert done.prompt is None and done.version == 3
    assert repo.get(job.job_id) == done


@pytest.mark.parametrize(
    "guard",
    [
        {"expected_version": 7},
        {"expected_attempts": 2},
        {"allowed_from": [JobStatus.RUNNING]},
    ],
)
def test_a_write_whose_expectation_fails_changes_nothing(
    repo: JobRepository, guard: dict[str, object]
) -> None:
    job = new_job()
    repo.create(job)
    with pytest.raises(TransitionConflictError) as conflict:
        repo.transition(job.job_id, JobStatus.RUNNING, add_attempts=1, **guard)  # type: ignore[arg-type]
    assert conflict.value.current == job
    assert repo.get(job.job_id) == job


def test_a_terminal_job_never_changes_again(repo: JobRepository) -> None:
    job = new_job()
    repo.create(job)
    cancelled = repo.transition(job.job_id, JobStatus.CANCELLED)
    for target in JobStatus:
        with pytest.raises(TransitionConflictError):
            repo.transition(job.job_id, target)
    assert repo.get(job.job_id) == cancelled


def test_an_unknown_job_is_not_found(repo: JobRepository) -> None:
    with pytest.raises(JobNotFoundError):
        repo.transition("job-none", JobStatus.RUNNING)
    with pytest.raises(JobNotFoundError):
        repo.update(
            "job-none", set_fields={"cancel_requested": True}, expected_status=[JobStatus.QUEUED]
        )


def test_update_keeps_the_status_and_checks_it(repo: JobRepository) -> None:
    job = new_job()
    repo.create(job)
    with pytest.raises(TransitionConflictError):
        repo.update(
            job.job_id, set_fields={"cancel_requested": True}, expected_status=[JobStatus.RUNNING]
        )
    updated = repo.update(
        job.job_id, set_fields={"cancel_requested": True}, expected_status=[JobStatus.QUEUED]
    )
    assert updated.cancel_requested and updated.status is JobStatus.QUEUED


def test_only_job_fields_other_than_the_keys_can_be_written(repo: JobRepository) -> None:
    job = new_job()
    repo.create(job)
    for bad in ({"tenant_id": "evil"}, {"no_such_field": 1}, {"version": 99}):
        with pytest.raises(ValueError, match="not a job field"):
            repo.update(job.job_id, set_fields=bad, expected_status=[JobStatus.QUEUED])
    assert repo.get(job.job_id) == job


def test_an_idempotency_claim_is_held_until_dispatch_fails(repo: JobRepository) -> None:
    # Given a job created with an idempotency claim
    first = new_job(1)
    repo.create(first, claim("k"))
    # When another job claims the same key
    with pytest.raises(IdempotencyReplayError) as replay:
        repo.create(new_job(2), claim("k", "h2"))
    # Then it is refused, naming the first job and its body
    assert (replay.value.job_id, replay.value.body_hash) == (first.job_id, "h1")
    assert repo.get(new_job(2).job_id) is None
    # And another tenant's same key is another key
    repo.create(new_job(3, tenant="other"), claim("k", tenant="other"))
    # When the first job's dispatch fails, it is failed and the key is free again
    repo.fail_dispatch(first.job_id, claim("k"), "queue down", T0)
    failed = repo.get(first.job_id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == JobErrorInfo(code="dispatch_failed", message="queue down")
    repo.create(new_job(4), claim("k"))


def test_the_listing_is_one_tenants_newest_first_in_pages(repo: JobRepository) -> None:
    ids = []
    for n in range(7):
        repo.create(new_job(n))
        ids.append(new_job(n).job_id)
        repo.create(new_job(n, tenant="other"))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = repo.list_for_tenant("acme", 3, cursor)
        seen += [j.job_id for j in page.jobs]
        assert all(j.tenant_id == "acme" for j in page.jobs)
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_control_reads_what_a_running_worker_watches(repo: JobRepository) -> None:
    job = new_job()
    repo.create(job)
    repo.transition(job.job_id, JobStatus.RUNNING, add_attempts=1)
    repo.update(
        job.job_id, set_fields={"cancel_requested": True}, expected_status=[JobStatus.RUNNING]
    )
    assert repo.control(job.job_id) == JobControl(JobStatus.RUNNING, True, 1)
    assert repo.control("job-none") is None
