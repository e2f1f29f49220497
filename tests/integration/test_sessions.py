"""Sessions in the job service, against moto's DynamoDB and the in-memory repository alike:
a conversation is taken by one job at a time, race-free (a conditional write on its item)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from claude_jobs.adapters.jobs_table import DynamoJobRepository
from claude_jobs.errors import (
    SessionBusyError,
    SessionConflictError,
    SessionNotFoundError,
    TenantLimitError,
)
from claude_jobs.job_service import JobService
from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.ports import JobRepository, SessionClaim, Transition
from claude_jobs.settings import Settings
from tests.fakes.queue import InMemoryQueue
from tests.fakes.repository import InMemoryJobRepository


class RecordingTranscripts:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []

    def delete(self, tenant_id: str, session_id: str) -> None:
        self.deleted.append((tenant_id, session_id))


@pytest.fixture(params=["dynamodb", "memory"])
def repo(request: pytest.FixtureRequest) -> Iterator[JobRepository]:
    if request.param == "memory":
        yield InMemoryJobRepository()
        return
    from moto import mock_aws

    from claude_jobs_tools.provision import provision

    with mock_aws():
        settings = provision("test", secret_value="sk-ant-test-not-a-real-key").settings
        import boto3

        yield DynamoJobRepository(boto3.client("dynamodb"), settings.jobs_table)


@pytest.fixture
def transcripts() -> RecordingTranscripts:
    return RecordingTranscripts()


@pytest.fixture
def service(repo: JobRepository, transcripts: RecordingTranscripts) -> JobService:
    ticks = count()
    start = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    clock: Callable[[], datetime] = lambda: start + timedelta(seconds=next(ticks))  # noqa: E731
    settings = Settings(TENANT_MAX_PENDING=5)
    return JobService(repo, InMemoryQueue(), settings, transcripts=transcripts, clock=clock)


def submit(service: JobService, tenant: str = "t1", **fields: object) -> str:
    request = JobRequest.model_validate({"prompt": "hello", **fields})
    return service.submit(tenant, request).job.job_id


def end(service: JobService, tenant: str, job_id: str) -> None:
    service.cancel(tenant, job_id)  # a queued job ends at once
    assert service.get(tenant, job_id).status is JobStatus.CANCELLED


def test_every_job_has_a_session_that_lists_its_jobs(service: JobService) -> None:
    """Given a job submitted without a session, then it has a new session of its own whose
    view lists it; when it has ended, a job continuing the session joins it."""
    first = service.get("t1", submit(service))
    assert first.session_id
    assert service.view(first).session_id == first.session_id
    view = service.get_session("t1", first.session_id)
    assert view.job_ids == [first.job_id]
    end(service, "t1", first.job_id)
    second = service.get("t1", submit(service, session_id=first.session_id))
    assert second.session_id == first.session_id
    later = service.get_session("t1", first.session_id)
    assert later.job_ids == [first.job_id, second.job_id]
    assert later.updated_at > later.created_at
    assert service.get("t1", submit(service)).session_id != first.session_id


def test_a_session_with_a_job_queued_or_running_is_busy(
    service: JobService, repo: JobRepository
) -> None:
    """Given a session whose job is queued, then running, when it is continued, then 409
    session_busy both times, and its job list is unchanged."""
    job = service.get("t1", submit(service))
    sid = job.session_id
    assert sid
    with pytest.raises(SessionBusyError):
        submit(service, session_id=sid)
    repo.transition(Transition(job_id=job.job_id, to=JobStatus.RUNNING, add_attempts=1))
    with pytest.raises(SessionBusyError):
        submit(service, session_id=sid)
    assert service.get_session("t1", sid).job_ids == [job.job_id]


def test_another_tenants_or_an_unknown_session_is_not_found(service: JobService) -> None:
    """Given tenant t1's session, when t2 reads, continues or deletes it, or anyone names an
    unknown session, then 404 session_not_found; nothing of t1's changes."""
    job = service.get("t1", submit(service))
    end(service, "t1", job.job_id)
    sid = job.session_id
    assert sid
    for attempt in (
        lambda: service.get_session("t2", sid),
        lambda: submit(service, "t2", session_id=sid),
        lambda: service.delete_session("t2", sid),
        lambda: submit(service, session_id="00000000-0000-4000-8000-000000000000"),
    ):
        with pytest.raises(SessionNotFoundError):
            attempt()
    assert service.get_session("t1", sid).job_ids == [job.job_id]


def test_two_continuations_racing_for_one_session_take_it_once(
    service: JobService, repo: JobRepository
) -> None:
    """Given an idle session both submissions read (its last job ended), when both write,
    then the conditional write lets exactly one through."""
    job = service.get("t1", submit(service))
    end(service, "t1", job.job_id)
    sid = job.session_id
    assert sid
    first = service.get("t1", submit(service))  # jobs to hang the claims on
    second = service.get("t1", submit(service))

    def claim(job_id: str) -> SessionClaim:
        return SessionClaim(
            session_id=sid,
            tenant_id="t1",
            job_id=job_id,
            at=datetime.now(UTC),
            expires_at=2_000_000_000,
            new=False,
            expected_active=job.job_id,
        )

    winner = first.model_copy(update={"job_id": "race-1", "session_id": sid})
    loser = second.model_copy(update={"job_id": "race-2", "session_id": sid})
    repo.create(winner, session=claim("race-1"))
    with pytest.raises(SessionConflictError):
        repo.create(loser, session=claim("race-2"))
    assert repo.get("race-2") is None  # nothing of the losing job was written
    assert service.get_session("t1", sid).job_ids == [job.job_id, "race-1"]


def test_a_replayed_submission_answers_its_job_not_session_busy(service: JobService) -> None:
    """Given a continuation submitted with an Idempotency-Key (its job still queued), when it
    is sent again, then the same job answers (a replay), not 409 session_busy."""
    job = service.get("t1", submit(service))
    end(service, "t1", job.job_id)
    request = JobRequest(prompt="again", session_id=job.session_id)
    once = service.submit("t1", request, idempotency_key="k1")
    twice = service.submit("t1", request, idempotency_key="k1")
    assert once.created and not twice.created
    assert twice.job.job_id == once.job.job_id
    with pytest.raises(SessionBusyError):  # another request is refused as before
        service.submit("t1", request, idempotency_key="k2")


def test_a_refused_submission_takes_no_session(service: JobService) -> None:
    """Given a tenant at its pending cap, when it continues its (idle) session, then 429 and
    the session is neither taken nor changed."""
    job = service.get("t1", submit(service))
    end(service, "t1", job.job_id)
    for _ in range(5):
        submit(service)
    with pytest.raises(TenantLimitError):
        submit(service, session_id=job.session_id)
    assert job.session_id
    assert service.get_session("t1", job.session_id).job_ids == [job.job_id]


def test_deleting_a_session(service: JobService, transcripts: RecordingTranscripts) -> None:
    """Given a session, when it is deleted while its job is queued, then 409 session_busy;
    once the job has ended, the delete removes its transcripts and from then on the session is
    not found, for reading, continuing and deleting alike."""
    job = service.get("t1", submit(service))
    sid = job.session_id
    assert sid
    with pytest.raises(SessionBusyError):
        service.delete_session("t1", sid)
    end(service, "t1", job.job_id)
    service.delete_session("t1", sid)
    assert transcripts.deleted == [("t1", sid)]
    for attempt in (
        lambda: service.get_session("t1", sid),
        lambda: submit(service, session_id=sid),
        lambda: service.delete_session("t1", sid),
    ):
        with pytest.raises(SessionNotFoundError):
            attempt()
