"""One contract for every SessionRepository: the DynamoDB adapter (on moto) and the in-memory
fake behave alike. Sessions are taken by jobs' creates, so each case pairs the session
repository with the job repository whose creates it sees."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from claude_jobs.errors import SessionConflictError
from claude_jobs.models import Job, JobOptions, JobStatus, SessionRecord
from claude_jobs.ports import JobRepository, SessionClaim, SessionRepository
from tests.fakes import InMemoryJobRepository

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
Pair = tuple[JobRepository, SessionRepository]


@pytest.fixture(params=["dynamodb", "memory"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    if request.param == "memory":
        jobs = InMemoryJobRepository()
        yield jobs, jobs.sessions
        return
    from moto import mock_aws

    from claude_jobs.adapters.jobs_table import DynamoJobRepository
    from claude_jobs.adapters.sessions_table import DynamoSessionRepository
    from claude_jobs_tools.provision import provision

    with mock_aws():
        table = provision("contract", secret_value="sk-test").settings.jobs_table
        client = boto3.client("dynamodb")
        # Built on its own, as the container may: the same table is the shared state.
        yield DynamoJobRepository(client, table), DynamoSessionRepository(client, table)


def take(
    jobs: JobRepository,
    n: int,
    *,
    new: bool,
    tenant: str = "acme",
    session_id: str = "s-1",
    expected_active: str | None = None,
) -> Job:
    """Create job `n`, taking session `session_id` (a new one, or continuing it)."""
    job = Job(
        job_id=f"job-{n}",
        tenant_id=tenant,
        status=JobStatus.QUEUED,
        created_at=T0 + timedelta(seconds=n),
        prompt="hello",
        options=JobOptions(),
        session_id=session_id,
        version=1,
    )
    claim = SessionClaim(
        session_id=session_id,
        tenant_id=tenant,
        job_id=job.job_id,
        at=job.created_at,
        expires_at=2_000_000_000,
        new=new,
        expected_active=expected_active,
    )
    jobs.create(job, session=claim)
    return job


def test_an_unknown_session_reads_as_none(pair: Pair) -> None:
    _, sessions = pair
    assert sessions.get("s-none") is None


def test_a_session_taken_by_jobs_reads_back_with_its_jobs(pair: Pair) -> None:
    # Given a session created by one job's create and continued by the next one's
    jobs, sessions = pair
    take(jobs, 1, new=True)
    take(jobs, 2, new=False, expected_active="job-1")
    # When it is read
    record = sessions.get("s-1")
    # Then it lists both jobs, is held by the later one, and was updated when that one came
    assert record == SessionRecord(
        session_id="s-1",
        tenant_id="acme",
        created_at=T0 + timedelta(seconds=1),
        updated_at=T0 + timedelta(seconds=2),
        job_ids=["job-1", "job-2"],
        active_job="job-2",
    )


@pytest.mark.parametrize(
    ("tenant", "expected_active"),
    [("other", "job-1"), ("acme", "job-9"), ("acme", None)],
)
def test_marking_deleted_under_a_condition_that_fails_changes_nothing(
    pair: Pair, tenant: str, expected_active: str | None
) -> None:
    # Given a session held by job-1
    jobs, sessions = pair
    take(jobs, 1, new=True)
    before = sessions.get("s-1")
    # When another tenant, or a caller that read another holder, marks it deleted
    with pytest.raises(SessionConflictError):
        sessions.mark_deleted("s-1", tenant, expected_active)
    # Then it is as it was
    assert sessions.get("s-1") == before


def test_an_unknown_session_cannot_be_marked_deleted(pair: Pair) -> None:
    _, sessions = pair
    with pytest.raises(SessionConflictError):
        sessions.mark_deleted("s-none", "acme", None)
    assert sessions.get("s-none") is None


def test_a_session_marked_deleted_can_be_neither_continued_nor_marked_again(pair: Pair) -> None:
    # Given a session marked deleted by its tenant, with the holder it was read with
    jobs, sessions = pair
    take(jobs, 1, new=True)
    sessions.mark_deleted("s-1", "acme", "job-1")
    record = sessions.get("s-1")
    assert record is not None and record.deleted and record.job_ids == ["job-1"]
    # When a job continues it, or it is marked again
    with pytest.raises(SessionConflictError):
        take(jobs, 2, new=False, expected_active="job-1")
    with pytest.raises(SessionConflictError):
        sessions.mark_deleted("s-1", "acme", "job-1")
    # Then the refused job was not created either
    assert jobs.get("job-2") is None


def test_a_removed_session_is_gone_and_its_id_free(pair: Pair) -> None:
    # Given a session marked deleted
    jobs, sessions = pair
    take(jobs, 1, new=True)
    sessions.mark_deleted("s-1", "acme", "job-1")
    # When it is removed (twice: a retried removal)
    sessions.remove("s-1")
    sessions.remove("s-1")
    # Then it reads as unknown, and a new job may create a session of that id
    assert sessions.get("s-1") is None
    take(jobs, 2, new=True)
    record = sessions.get("s-1")
    assert record is not None and record.job_ids == ["job-2"] and not record.deleted
