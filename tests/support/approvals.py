"""A job put into `awaiting_approval` through the repository, as the worker does it."""

from __future__ import annotations

from datetime import datetime, timedelta

from claude_jobs.approval_models import PendingApproval
from claude_jobs.clock import utcnow
from claude_jobs.models import Job, JobStatus
from claude_jobs.ports import JobRepository, Transition


def make_wait(
    repo: JobRepository,
    job_id: str,
    *,
    tool: str = "Bash",
    approval_id: str | None = None,
    tool_use_id: str = "toolu_01ABC",
    waited: timedelta = timedelta(minutes=30),
    expires_in: timedelta = timedelta(hours=1),
    deadline_left: timedelta = timedelta(minutes=4),
    now: datetime | None = None,
) -> Job:
    """Claim the queued job `job_id` and stop it at a call that waits: requested `waited`
    ago, expiring `expires_in` from now, its deadline `deadline_left` after the request."""
    now = now or utcnow()
    requested = now - waited
    job = repo.get(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    running = repo.transition(
        Transition(
            job_id=job_id,
            to=JobStatus.RUNNING,
            from_=[JobStatus.QUEUED],
            add_attempts=1,
            set_fields={
                "started_at": requested - timedelta(seconds=20),
                "deadline_at": requested + deadline_left,
                "lease_until": int(now.timestamp()) + 900,
            },
            expected_version=job.version,
        )
    )
    pending = PendingApproval(
        approval_id=approval_id or f"apr-{job_id[:8]}",
        tool_use_id=tool_use_id,
        tool=tool,
        input='{"command": "git push origin main"}' if tool != "AskUserQuestion" else "{}",
        rule="Bash(git push:*)" if tool == "Bash" else None,
        requested_at=requested,
        expires_at=now + expires_in,
    )
    return repo.transition(
        Transition(
            job_id=job_id,
            to=JobStatus.AWAITING_APPROVAL,
            from_=[JobStatus.RUNNING],
            set_fields={
                "pending_approval": pending,
                "lease_until": None,
                "continuing": True,
                "approval_waits": running.approval_waits + 1,
            },
            expected_attempts=running.attempts,
        )
    )
