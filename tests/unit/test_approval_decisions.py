"""Approvals, the service side: decisions and the list, on the in-memory fakes with a fixed
clock (the API-level tests run the same through the real handlers on moto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from claude_jobs.approval_models import DecisionRequest
from claude_jobs.errors import JobNotFoundError, RequestValidationError
from claude_jobs.job_service import JobService
from claude_jobs.models import Job, JobRequest, JobStatus
from claude_jobs.service.approvals import ApprovalConflictError
from claude_jobs.settings import Settings
from tests.fakes import InMemoryJobRepository, InMemoryQueue
from tests.support.approvals import make_wait

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ALLOW = DecisionRequest(decision="allow")


class FailingQueue(InMemoryQueue):
    def send(self, job: Job) -> None:
        raise ConnectionError("the queue is unreachable")


@pytest.fixture
def repo() -> InMemoryJobRepository:
    return InMemoryJobRepository()


@pytest.fixture
def queue() -> InMemoryQueue:
    return InMemoryQueue()


@pytest.fixture
def service(repo: InMemoryJobRepository, queue: InMemoryQueue) -> JobService:
    return JobService(repo, queue, Settings(), clock=lambda: NOW)


def waiting(service: JobService, tenant: str = "acme", **wait: object) -> Job:
    job = service.submit(tenant, JobRequest(prompt="push it")).job
    return make_wait(service.context.repo, job.job_id, now=NOW, **wait)  # type: ignore[arg-type]


def test_a_decision_moves_the_deadline_by_exactly_the_wait(
    service: JobService, repo: InMemoryJobRepository, queue: InMemoryQueue
) -> None:
    # Given a job that has waited 2 hours, with 4 minutes of its timeout left at the request
    job = waiting(service, waited=timedelta(hours=2), deadline_left=timedelta(minutes=4))
    assert job.pending_approval is not None and job.deadline_at is not None
    queue.sent.clear()
    # When it is allowed
    queued = service.decide("acme", job.job_id, job.pending_approval.approval_id, ALLOW)
    # Then its deadline is 4 minutes from now again: the wait did not count
    assert queued.deadline_at == NOW + timedelta(minutes=4)
    assert queued.status is JobStatus.QUEUED and queued.continuing
    assert queued.approval_decision is not None and queued.approval_decision.decided_at == NOW
    # And its message was sent, and noted as due now for the reconciler
    assert queue.sent == [job.job_id]
    assert repo.message_due[job.job_id] == NOW


def test_a_lost_send_leaves_the_job_queued_and_due(repo: InMemoryJobRepository) -> None:
    # Given a queue that cannot be reached
    healthy = JobService(repo, InMemoryQueue(), Settings(), clock=lambda: NOW)
    waited = waiting(healthy)
    service = JobService(repo, FailingQueue(), Settings(), clock=lambda: NOW)
    assert waited.pending_approval is not None
    # When the decision is made
    queued = service.decide("acme", waited.job_id, waited.pending_approval.approval_id, ALLOW)
    # Then the decision stands (the job is queued and due: the reconciler re-drives it)
    assert queued.status is JobStatus.QUEUED
    assert repo.message_due[waited.job_id] == NOW


def test_conflicts_and_bad_bodies(service: JobService) -> None:
    job = waiting(service)
    assert job.pending_approval is not None
    approval_id = job.pending_approval.approval_id
    with pytest.raises(JobNotFoundError):
        service.decide("other", job.job_id, approval_id, ALLOW)
    with pytest.raises(ApprovalConflictError, match="waits for apr-"):
        service.decide("acme", job.job_id, "apr-stale", ALLOW)
    with pytest.raises(RequestValidationError, match="AskUserQuestion only"):
        service.decide(
            "acme", job.job_id, approval_id, DecisionRequest(decision="allow", answers={"q": "a"})
        )
    service.decide("acme", job.job_id, approval_id, DecisionRequest(decision="deny"))
    with pytest.raises(ApprovalConflictError, match="is queued"):
        service.decide("acme", job.job_id, approval_id, ALLOW)


def test_a_question_is_allowed_with_answers_and_denied_without(service: JobService) -> None:
    asked = waiting(service, tool="AskUserQuestion")
    assert asked.pending_approval is not None
    with pytest.raises(RequestValidationError, match="needs answers"):
        service.decide("acme", asked.job_id, asked.pending_approval.approval_id, ALLOW)
    with pytest.raises(RequestValidationError, match="no answers"):
        service.decide(
            "acme",
            asked.job_id,
            asked.pending_approval.approval_id,
            DecisionRequest(decision="deny", answers={"q": "a"}),
        )
    denied = service.decide(
        "acme",
        asked.job_id,
        asked.pending_approval.approval_id,
        DecisionRequest(decision="deny", message="not now"),
    )
    assert denied.approval_decision is not None
    assert denied.approval_decision.tool == "AskUserQuestion"


def test_cancel_while_waiting_is_immediate_and_frees_the_pending_slot(
    service: JobService, repo: InMemoryJobRepository
) -> None:
    job = waiting(service)
    assert repo.tenant_usage("acme").pending == 1
    cancelled = service.cancel("acme", job.job_id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at == NOW
    assert cancelled.pending_approval is None and cancelled.prompt is None
    assert repo.tenant_usage("acme").pending == 0
    assert service.approvals("acme").items == []


def test_the_list_pages_oldest_first_with_tokens(service: JobService) -> None:
    waits = [waiting(service, waited=timedelta(minutes=m)) for m in (5, 50, 25)]
    waiting(service, tenant="other")
    first = service.approvals("acme", limit=2)
    assert first.next_token is not None
    second = service.approvals("acme", limit=2, next_token=first.next_token)
    shown = [i.job_id for i in first.items + second.items]
    assert shown == [waits[1].job_id, waits[2].job_id, waits[0].job_id]
    assert second.next_token is None
    with pytest.raises(RequestValidationError):
        service.approvals("other", next_token=first.next_token)


def test_a_cancel_losing_a_race_with_a_decision_still_cancels(
    service: JobService, repo: InMemoryJobRepository
) -> None:
    # Given a waiting job that is decided between the cancel's read and its write
    job = waiting(service)
    assert job.pending_approval is not None
    approval_id = job.pending_approval.approval_id
    original = repo.get
    raced = {"done": False}

    def read_then_decide(job_id: str) -> Job | None:
        read = original(job_id)
        if not raced["done"]:
            raced["done"] = True
            service.decide("acme", job.job_id, approval_id, ALLOW)
        return read

    repo.get = read_then_decide  # type: ignore[method-assign]
    cancelled = service.cancel("acme", job.job_id)
    # Then the cancel acts on where the job is now (queued) and ends it
    assert cancelled.status is JobStatus.CANCELLED
    assert repo.tenant_usage("acme").pending == 0


def test_both_routes_are_documented_with_their_problems() -> None:
    from claude_jobs_tools.openapi import document

    paths = document()["paths"]
    decide = paths["/v1/jobs/{job_id}/approvals/{approval_id}"]["post"]
    assert decide["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DecisionRequest"
    )
    assert {"200", "401", "404", "409", "422", "429"} <= set(decide["responses"])
    listing = paths["/v1/approvals"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ApprovalList"
    )
    assert {p["name"] for p in listing["parameters"]} == {"limit", "next_token"}
