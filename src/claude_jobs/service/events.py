"""A job's progress events: a page after a cursor, and the events route's long poll."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .. import long_poll
from ..errors import FieldError, RequestValidationError
from ..models import EventPage, Job, JobStatus
from .context import ServiceContext
from .queries import MAX_WAIT_SECONDS, get, quiet_seconds

#: Progress events per answer of `GET /v1/jobs/{id}/events` at most.
EVENTS_PAGE_SIZE = 200
#: The highest `after` cursor accepted (well above a job's event bound).
MAX_EVENT_CURSOR = 999_999


def events(
    ctx: ServiceContext, tenant_id: str, job_id: str, after: int = 0, wait: float = 0
) -> EventPage:
    """The job's progress events after the cursor `after`; with `wait`, the first answer
    that has one (or says the job is done), or an empty one after `wait` seconds."""
    if not 0 <= after <= MAX_EVENT_CURSOR:
        raise RequestValidationError(
            "after is not a cursor this API returned.",
            [FieldError(("query", "after"), f"must be an integer from 0 to {MAX_EVENT_CURSOR}")],
        )
    if wait:
        return wait_for_events(ctx, tenant_id, job_id, after, wait)
    return events_page(ctx, tenant_id, job_id, after)


def wait_for_events(
    ctx: ServiceContext, tenant_id: str, job_id: str, after: int, seconds: float
) -> EventPage:
    """The long poll of the events route: its schedule lives here alone.

    The first look reads the job and its events (`events_page`). While it finds nothing
    newer and the job is not done, the poll probes the events table for events after `after`
    (one query, as a one-event probe costs) and, every `long_poll.STATUS_EVERY`-th step, the
    job's control attributes (a job can end with no newer event: cancelled while queued, a
    run no worker ended), with the pauses of `long_poll.py` (they grow with how long the job
    has been quiet). A probe that finds events answers (`_found_page`); a wait that ends with
    nothing found answers the first look (nothing newer, not done)."""
    deadline = time.monotonic() + min(max(seconds, 0), MAX_WAIT_SECONDS)
    job = get(ctx, tenant_id, job_id)
    page = events_page(ctx, tenant_id, job_id, after, job)
    if page.items or page.done:
        return page
    status, quiet, step = job.status, quiet_seconds(ctx, job), 0
    while (left := deadline - time.monotonic()) > 0:
        pause = long_poll.pause_for(quiet)
        ctx.sleep(min(pause, left))
        quiet += pause
        step += 1
        found = ctx.events.read(job_id, after, EVENTS_PAGE_SIZE + 1) if ctx.events else []
        if found:
            return _found_page(ctx, tenant_id, job_id, after, found)
        if ctx.events is None or step % long_poll.STATUS_EVERY == 0:
            control = ctx.repo.control(job_id)
            if control is None or control.status.is_terminal:
                return events_page(ctx, tenant_id, job_id, after)
            if control.status is not status:
                status, quiet = control.status, 0.0
    return page


def events_page(
    ctx: ServiceContext, tenant_id: str, job_id: str, after: int, job: Job | None = None
) -> EventPage:
    """One look: the job first (tenant check; terminal?), then its stored events.

    The worker stores a run's events before the job's terminal write, so events read after
    the job was seen terminal are all there are. Transitions no worker recorded (a job
    cancelled while queued, one failed without a run, a worker that died) are shown as
    the status events the worker would have written: `queued` at seq 1 while nothing is
    stored, the terminal status after the last stored event when that is not it."""
    job = job or get(ctx, tenant_id, job_id)
    stored = ctx.events.read(job_id, after, EVENTS_PAGE_SIZE + 1) if ctx.events else []
    if len(stored) > EVENTS_PAGE_SIZE:
        items = stored[:EVENTS_PAGE_SIZE]
        return _event_page(items, after, done=False)
    terminal = job.status.is_terminal
    if stored:
        tail: dict[str, Any] | None = stored[-1]
    elif after == 0 or not terminal:
        tail = None  # (nothing newer is stored; `queued` is shown only at seq 1)
    else:
        tail = _last_stored_event(ctx, job_id, after)
    items = list(stored)
    for ending in _shown_endings(job, tail):
        if ending["seq"] > after:
            items.append(ending)
    return _event_page(items, after, done=terminal)


def _found_page(
    ctx: ServiceContext, tenant_id: str, job_id: str, after: int, found: list[dict[str, Any]]
) -> EventPage:
    """The answer of a long-poll whose probe found `found` (a page and one more, at most).

    Events that do not end the run are answered as they are, `done` false, without reading
    the job and the events again: the job runs on (or ended after the probe, which the
    caller's next look shows). A page that holds a final status is a full look
    (`events_page`): `done` is said only from events read after the job was seen terminal."""
    page = found[:EVENTS_PAGE_SIZE]
    if len(found) > EVENTS_PAGE_SIZE or not any(_is_ending(event) for event in page):
        return _event_page(page, after, done=False)
    return events_page(ctx, tenant_id, job_id, after)


def _is_ending(event: Mapping[str, Any]) -> bool:
    if event.get("type") != "status":
        return False
    try:
        return JobStatus(str(event.get("status"))).is_terminal
    except ValueError:
        return True  # (a status this code does not know: the full look decides)


def _last_stored_event(ctx: ServiceContext, job_id: str, after: int) -> dict[str, Any] | None:
    """The job's last stored event, known to be at seq `after` or before."""
    if ctx.events is None:
        return None
    seen = ctx.events.read(job_id, after - 1, 1)
    if seen and seen[0].get("seq") == after:
        return seen[0]
    last = ctx.events.last_seq(job_id)
    if last == 0:
        return None
    found = ctx.events.read(job_id, last - 1, 1)
    return found[0] if found else None


def _shown_endings(job: Job, tail: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The status events no worker stored that a reader is shown after `tail`, the job's last
    stored event: `queued` at seq 1 when nothing is stored, and the job's terminal status
    when it is terminal and `tail` is not that status (numbered as the worker would)."""
    shown: list[dict[str, Any]] = []
    seq = int(tail["seq"]) if tail is not None else 0
    if tail is None:
        seq = 1
        shown.append(_status_event(1, job.created_at, JobStatus.QUEUED))
    ended = tail is not None and tail.get("type") == "status" and tail.get("status") == job.status
    if job.status.is_terminal and not ended:
        at = job.finished_at or job.started_at or job.created_at
        shown.append(_status_event(seq + 1, at, job.status))
    return shown


def _status_event(seq: int, at: datetime, status: JobStatus) -> dict[str, Any]:
    # Milliseconds, as the worker records times: the same event reads the same either way.
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    return {"seq": seq, "at": at, "type": "status", "status": status.value}


def _event_page(items: Sequence[Mapping[str, Any]], after: int, *, done: bool) -> EventPage:
    cursor = str(items[-1]["seq"]) if items else str(after)
    return EventPage.model_validate({"items": list(items), "next_cursor": cursor, "done": done})
