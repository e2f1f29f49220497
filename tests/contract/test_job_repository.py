"""One contract for every JobRepository: the DynamoDB adapter (on moto) and the in-memory fake
the unit tests use must behave alike, or a unit test on the fake would prove nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from claude_jobs.clock import epoch
from claude_jobs.errors import (
    IdempotencyReplayError,
    JobNotFoundError,
    TenantAtShareError,
    TenantLimitError,
    TransitionConflictError,
)
from claude_jobs.models import Job, JobErrorInfo, JobResult, JobStatus, Usage
from claude_jobs.ports import IdempotencyClaim, JobControl, JobRepository, TenantUsage, Transition
from tests.fakes import InMemoryJobRepository
from tests.support.jobs import make_job

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


def new_job(n: int = 0, tenant: str = "acme", **fields: Any) -> Job:
    fields = {"prompt": "hello", "version": 1, **fields}
    return make_job(
        f"job-{tenant}-{n:04d}", tenant=tenant, created_at=T0 + timedelta(seconds=n), **fields
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
        Transition(
            job_id=job.job_id,
            to=JobStatus.RUNNING,
            add_attempts=1,
            set_fields={"started_at": T0, "lease_until": 123},
            expected_version=job.version,
        )
    )
    done = repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.SUCCEEDED,
            set_fields={"result": JobResult(text="ok"), "lease_until": None},
            remove_fields=["prompt"],
            expected_attempts=1,
        )
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
        {"from_": [JobStatus.RUNNING]},
    ],
)
def test_a_write_whose_expectation_fails_changes_nothing(
    repo: JobRepository, guard: dict[str, object]
) -> None:
    job = new_job()
    repo.create(job)
    change = Transition(job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1, **guard)  # type: ignore[arg-type]
    with pytest.raises(TransitionConflictError) as conflict:
        repo.transition(change)
    assert conflict.value.current == job
    assert repo.get(job.job_id) == job


def test_a_terminal_job_never_changes_again(repo: JobRepository) -> None:
    job = new_job()
    repo.create(job)
    cancelled = repo.transition(Transition(job_id=job.job_id, to=JobStatus.CANCELLED))
    for target in JobStatus:
        with pytest.raises(TransitionConflictError):
            repo.transition(Transition(job_id=job.job_id, to=target))
    assert repo.get(job.job_id) == cancelled


def test_an_unknown_job_is_not_found(repo: JobRepository) -> None:
    with pytest.raises(JobNotFoundError):
        repo.transition(Transition(job_id="job-none", to=JobStatus.RUNNING))
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
    repo.transition(Transition(job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1))
    repo.update(
        job.job_id, set_fields={"cancel_requested": True}, expected_status=[JobStatus.RUNNING]
    )
    assert repo.control(job.job_id) == JobControl(JobStatus.RUNNING, True, 1)
    assert repo.control("job-none") is None


# ---------------------------------------------------------------- fair sharing: tenant usage


def test_a_tenants_pending_count_follows_its_jobs_to_every_end(repo: JobRepository) -> None:
    # Given a tenant with five jobs
    jobs = [new_job(n) for n in range(5)]
    for job in jobs:
        repo.create(job, max_pending=10)
    assert repo.tenant_usage("acme") == TenantUsage(pending=5, running=0)
    assert repo.tenant_usage("other") == TenantUsage()
    # When they are claimed, released, re-claimed and ended every way a job ends
    for job in jobs[:3]:
        repo.transition(
            Transition(job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1, running_share=3)
        )
    assert repo.tenant_usage("acme") == TenantUsage(pending=5, running=3)
    repo.transition(
        Transition(job_id=jobs[0].job_id, to=JobStatus.QUEUED)
    )  # released after a fault
    repo.transition(Transition(job_id=jobs[0].job_id, to=JobStatus.RUNNING, add_attempts=1))
    repo.transition(
        Transition(job_id=jobs[1].job_id, to=JobStatus.RUNNING)
    )  # re-claimed: still one running
    assert repo.tenant_usage("acme") == TenantUsage(pending=5, running=3)
    repo.transition(
        Transition(job_id=jobs[0].job_id, to=JobStatus.SUCCEEDED)
    )  # the worker's finish
    repo.transition(
        Transition(job_id=jobs[1].job_id, to=JobStatus.FAILED)
    )  # attempts exhausted while running
    repo.transition(Transition(job_id=jobs[2].job_id, to=JobStatus.TIMED_OUT))
    repo.transition(
        Transition(job_id=jobs[3].job_id, from_=[JobStatus.QUEUED], to=JobStatus.CANCELLED)
    )
    repo.fail_dispatch(jobs[4].job_id, None, "queue down", T0)
    # Then nothing is counted any more, and a terminal job's refused write changes nothing
    assert repo.tenant_usage("acme") == TenantUsage(pending=0, running=0)
    with pytest.raises(TransitionConflictError):
        repo.transition(Transition(job_id=jobs[0].job_id, to=JobStatus.FAILED))
    assert repo.tenant_usage("acme") == TenantUsage(pending=0, running=0)


def test_a_tenant_at_its_pending_cap_cannot_create_another_job(repo: JobRepository) -> None:
    # Given a tenant with two pending jobs, one of them under an idempotency key
    repo.create(new_job(0), max_pending=2)
    repo.create(new_job(1), claim("k1"), max_pending=2)
    # When it creates a third with a cap of two
    with pytest.raises(TenantLimitError):
        repo.create(new_job(2), max_pending=2)
    # Then nothing was stored or counted, a replay of the key is still a replay (not a
    # limit, not counted twice), and another tenant is not limited
    assert repo.get(new_job(2).job_id) is None
    with pytest.raises(IdempotencyReplayError):
        repo.create(new_job(3), claim("k1"), max_pending=2)
    assert repo.tenant_usage("acme") == TenantUsage(pending=2, running=0)
    repo.create(new_job(0, tenant="other"), max_pending=2)
    # And once a job ends there is room again
    repo.transition(Transition(job_id=new_job(0).job_id, to=JobStatus.CANCELLED))
    repo.create(new_job(2), max_pending=2)
    assert repo.tenant_usage("acme") == TenantUsage(pending=2, running=0)


def test_a_claim_beyond_the_running_share_writes_nothing(repo: JobRepository) -> None:
    # Given a tenant that runs one job, with another queued
    first, second = new_job(0), new_job(1)
    repo.create(first)
    repo.create(second)
    repo.transition(
        Transition(job_id=first.job_id, to=JobStatus.RUNNING, add_attempts=1, running_share=1)
    )
    # When the second is claimed with a share of one
    with pytest.raises(TenantAtShareError):
        repo.transition(
            Transition(job_id=second.job_id, to=JobStatus.RUNNING, add_attempts=1, running_share=1)
        )
    # Then it is unchanged (no attempt, same version) and another tenant's claim goes through
    assert repo.get(second.job_id) == second
    other = new_job(0, tenant="other")
    repo.create(other)
    repo.transition(
        Transition(job_id=other.job_id, to=JobStatus.RUNNING, add_attempts=1, running_share=1)
    )
    # And once the first ends, the second may run
    repo.transition(Transition(job_id=first.job_id, to=JobStatus.SUCCEEDED))
    claimed = repo.transition(
        Transition(job_id=second.job_id, to=JobStatus.RUNNING, add_attempts=1, running_share=1)
    )
    assert claimed.status is JobStatus.RUNNING and claimed.attempts == 1
    assert claimed.version == second.version + 1
    assert repo.tenant_usage("acme") == TenantUsage(pending=1, running=1)


def test_usage_items_are_not_jobs(repo: JobRepository) -> None:
    # Given a tenant with a counted job
    repo.create(new_job(0))
    # Then its counter is never read as a job
    assert repo.get("usage#acme") is None
    assert repo.control("usage#acme") is None
    assert [j.job_id for j in repo.list_for_tenant("acme", 10).jobs] == [new_job(0).job_id]


def test_the_spend_journal_is_written_only_for_the_running_attempt(repo: JobRepository) -> None:
    # Given a job claimed in attempt 1
    job = new_job()
    repo.create(job)
    assert not repo.journal_spend(job.job_id, 1, 0.5)  # not running yet: nothing written
    running = repo.transition(
        Transition(
            job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1, expected_version=job.version
        )
    )
    # When its worker journals its exposure, then a lower one, and a stale attempt writes too
    assert repo.journal_spend(job.job_id, 1, 0.25)
    assert repo.journal_spend(job.job_id, 1, 0.125)
    assert not repo.journal_spend(job.job_id, 2, 9.0)
    assert not repo.journal_spend("job-none", 1, 9.0)
    # Then the job holds the last figure of its attempt, and nothing the API shows changed
    journaled = repo.get(job.job_id)
    assert journaled is not None and journaled.unrecorded_usd == 0.125
    assert journaled.version == running.version
    # And the write that records its usage removes it
    done = repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.SUCCEEDED,
            set_fields={"usage": Usage(total_cost_usd=0.1)},
            expected_attempts=1,
        )
    )
    assert done.unrecorded_usd is None and done.usage == Usage(total_cost_usd=0.1)
    assert repo.get(job.job_id) == done
    assert not repo.journal_spend(job.job_id, 1, 0.5)  # terminal: nothing written
