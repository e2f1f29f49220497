"""Reading jobs: one job (and its long-poll), and a tenant's listing."""

from __future__ import annotations

import time
from collections.abc import Iterator

from .. import long_poll
from ..documents import RESULT_TEXT, VIEWED
from ..errors import FieldError, InvalidCursorError, JobNotFoundError, RequestValidationError
from ..models import Job, JobList, JobStatus
from .context import ServiceContext
from .cursors import decode_token, encode_token, token_error
from .views import render

MAX_WAIT_SECONDS = long_poll.MAX_WAIT_SECONDS
MAX_PAGE_SIZE = 100


def long_poll_pauses(quiet_seconds: float = 0.0) -> Iterator[float]:
    """The pauses of one long-poll of a job quiet for `quiet_seconds`, in order, without end
    (the caller stops at its deadline); the schedule is `long_poll.py`'s."""
    return long_poll.pauses(quiet_seconds)


def long_poll_reads(seconds: float) -> int:
    """How many control reads a long-poll of a job that changed as it began and stays
    unfinished makes in `seconds` (the two full reads at its ends not counted)."""
    return long_poll.reads_in(seconds)


def get(ctx: ServiceContext, tenant_id: str, job_id: str) -> Job:
    job = ctx.repo.get(job_id)
    if job is None or job.tenant_id != tenant_id:
        # Another tenant's job is indistinguishable from a missing one.
        raise JobNotFoundError(f"No job {job_id}.")
    return job


def wait(ctx: ServiceContext, tenant_id: str, job_id: str, seconds: float) -> Job:
    """The job as soon as it is terminal or becomes `awaiting_approval`, or as it is after
    `seconds` (the `?wait=` long-poll).

    One strongly consistent read of the whole job (it checks the tenant), then cheap polls
    of its control attributes — an eventually consistent read of three attributes, as the
    worker's cancel poll — whose pauses grow with how long the job has been quiet
    (`long_poll.py`): a job that started a moment ago is read every 100 ms, one quiet for
    8 s and more every 2.5 s, and a status change the poll sees starts the ramp again.
    The answer is read again in full, strongly consistent, once a poll sees the job
    terminal or the wait is up. A stale poll only delays the answer by one step (a
    terminal job never changes again). Cost per waiting minute:
    `long_poll.reads_per_waiting_minute()` reads (≤ 60)."""
    deadline = time.monotonic() + min(max(seconds, 0), MAX_WAIT_SECONDS)
    job = get(ctx, tenant_id, job_id)
    if job.status.is_terminal:
        return job
    status, quiet = job.status, quiet_seconds(ctx, job)
    while (left := deadline - time.monotonic()) > 0:
        pause = long_poll.pause_for(quiet)
        ctx.sleep(min(pause, left))
        quiet += pause
        control = ctx.repo.control(job_id)
        if control is None or control.status.is_terminal:
            break
        if control.status is JobStatus.AWAITING_APPROVAL and status is not control.status:
            break  # it now waits for a person: the caller has something to do
        if control.status is not status:
            status, quiet = control.status, 0.0  # a change: the next one may come soon
    return get(ctx, tenant_id, job_id)


def quiet_seconds(ctx: ServiceContext, job: Job) -> float:
    """How long the job has not changed, as its timestamps tell (its creation or start)."""
    changed = max(t for t in (job.created_at, job.started_at) if t is not None)
    return max((ctx.clock() - changed).total_seconds(), 0.0)


def list_jobs(
    ctx: ServiceContext, tenant_id: str, limit: int = 20, next_token: str | None = None
) -> JobList:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise RequestValidationError(
            "limit is out of range.",
            [FieldError(("query", "limit"), f"must be between 1 and {MAX_PAGE_SIZE}")],
        )
    secret = ctx.settings.page_token_secret
    cursor = decode_token(next_token, tenant_id, secret) if next_token else None
    try:
        page = ctx.repo.list_for_tenant(tenant_id, limit, cursor)
    except InvalidCursorError:
        raise token_error() from None
    jobs = ctx.documents.load_many(page.jobs, (*VIEWED, RESULT_TEXT))
    return JobList(
        items=[render(ctx.documents, j) for j in jobs],
        next_token=encode_token(page.cursor, tenant_id, secret) if page.cursor else None,
    )
