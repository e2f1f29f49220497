"""`JobRepository.list_awaiting_approval`: the DynamoDB adapter (its sparse index, on moto) and
the in-memory fake list the same jobs: only the tenant's, only while they wait."""

from __future__ import annotations

from datetime import timedelta

import pytest

from claude_jobs.errors import InvalidCursorError
from claude_jobs.models import JobStatus
from claude_jobs.ports import JobRepository, Transition
from tests.contract.test_job_repository import T0, new_job, repo
from tests.support.approvals import make_wait

__all__ = ["repo"]  # the fixture, parametrized over both repositories


def waits(repo: JobRepository, n: int, tenant: str = "acme", minutes: int = 10) -> str:
    job = new_job(n, tenant=tenant)
    repo.create(job)
    make_wait(repo, job.job_id, waited=timedelta(minutes=minutes), now=T0 + timedelta(hours=1))
    return job.job_id


def test_only_the_tenants_waiting_jobs_oldest_request_first(repo: JobRepository) -> None:
    # Given waiting jobs of two tenants and a queued one
    a, b, c = waits(repo, 1, minutes=5), waits(repo, 2, minutes=40), waits(repo, 3, minutes=20)
    waits(repo, 4, tenant="other")
    repo.create(new_job(5))
    # When the tenant's waiting jobs are listed two at a time
    first = repo.list_awaiting_approval("acme", 2)
    assert first.cursor is not None
    second = repo.list_awaiting_approval("acme", 2, first.cursor)
    # Then they are its three, oldest request first
    assert [j.job_id for j in first.jobs + second.jobs] == [b, c, a]
    assert second.cursor is None or repo.list_awaiting_approval("acme", 2, second.cursor).jobs == []


@pytest.mark.parametrize("to", [JobStatus.QUEUED, JobStatus.CANCELLED, JobStatus.FAILED])
def test_a_job_leaves_the_list_when_it_stops_waiting(repo: JobRepository, to: JobStatus) -> None:
    job_id = waits(repo, 1)
    assert [j.job_id for j in repo.list_awaiting_approval("acme", 10).jobs] == [job_id]
    repo.transition(Transition(job_id=job_id, to=to, from_=[JobStatus.AWAITING_APPROVAL]))
    assert repo.list_awaiting_approval("acme", 10).jobs == []


def test_a_forged_cursor_is_refused(repo: JobRepository) -> None:
    cursors: list[dict[str, object]] = [{"a": "nope"}, {"p": []}, {"a": 3}]
    for cursor in cursors:
        with pytest.raises(InvalidCursorError):
            repo.list_awaiting_approval("acme", 10, cursor)
