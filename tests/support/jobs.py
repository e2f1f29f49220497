"""One factory of `Job` records for tests that need a job without submitting one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from claude_jobs.models import Job, JobOptions, JobStatus

#: A fixed creation time, so jobs made apart sort and compare the same on every run.
T0 = datetime(2026, 11, 30, tzinfo=UTC)


def make_job(
    job_id: str = "job-1",
    *,
    tenant: str = "acme",
    status: JobStatus = JobStatus.QUEUED,
    created_at: datetime = T0,
    options: JobOptions | None = None,
    **fields: Any,
) -> Job:
    """A validated `Job` (queued, tenant acme, default options) with `fields` on top."""
    return Job.model_validate(
        {
            "job_id": job_id,
            "tenant_id": tenant,
            "status": status,
            "created_at": created_at,
            "options": options if options is not None else JobOptions(),
            **fields,
        }
    )
