"""Long jobs: a job longer than one worker invocation runs in segments.

Each invocation runs the job until its own end is near, then stops the agent at a turn
boundary, saves the session, records the usage so far and re-queues the job; the next
invocation resumes the conversation (sessions.py). What holds across segments:

- the deadline: absolute, `timeout_seconds` after the job first started (`deadline_at`);
- the budget: each segment's spending limit is what is left of the job's (cumulative metered
  cost in `usage.total_cost_usd`);
- `max_turns`: each segment gets the turns that are left;
- cancel: a cancel between two segments finds the job queued and cancels it at once; during
  one, the worker stops it as ever;
- `attempts` counts faults only: the claim of a re-queued job (`continuing`) adds none;
  `segments` counts the runs.

Margins (seconds before the invocation's end), scaled with the invocation's length L (the
worker's timeout, or the local stack's `--invocation-seconds`), at most L/5 in all:

- `record` = min(30, L/10): the agent is stopped this long before the end (hard stop), leaving
  time to save, record and re-queue;
- `boundary` = min(60, L/10): from this long before the hard stop, the agent is stopped at the
  next turn boundary (before its next tool call runs: every tool that ran has its result in
  the transcript). Earlier too, before a call that would still run at the hard stop judging by
  the longest call so far (x1.25): it would be cut off half-way. That is the segment's own
  longest call; before it has timed one, the previous segment's (or how long a call its hard
  stop cut off had run: `Job.segment_tool_ms`), unless that would not fit in the whole
  segment. A call that runs into the hard stop anyway is killed; the CLI records it as
  interrupted on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..models import Job, Usage

#: The prompt of a segment that resumes a job's own conversation (the next invocation).
CONTINUE_PROMPT = (
    "(The run was paused between two steps and has now resumed. Continue the task from where "
    "you stopped; do not repeat steps that are already done. A tool call whose result says it "
    "was interrupted or paused did not finish: do it again if it is still needed.)"
)


@dataclass(frozen=True)
class Margins:
    record: float
    boundary: float

    @property
    def total(self) -> float:
        return self.record + self.boundary


def margins(invocation_seconds: float) -> Margins:
    """End-of-invocation margins for an invocation of `invocation_seconds` (≤ 1/5 of it)."""
    tenth = invocation_seconds / 10
    return Margins(record=min(30.0, tenth), boundary=min(60.0, tenth))


@dataclass(frozen=True)
class Plan:
    """How long this invocation runs a job."""

    #: Seconds until the agent is stopped whatever it does.
    run_seconds: float
    #: Seconds after which the agent is stopped at its next turn boundary, when the invocation
    #: ends before the job's deadline (a segment); None when the job's deadline comes first.
    yield_after: float | None
    #: The job's own deadline has passed (it timed out while queued between segments).
    expired: bool
    #: The run stops at the invocation's end (a segment, or a job that cannot be one), not at
    #: the job's deadline: its stops are points in the invocation, so what comes before the
    #: run (a cold start, the claim) comes off them. A job's deadline counts from its start.
    invocation_bound: bool = False


def plan(
    job: Job, now: datetime, remaining_seconds: float, margin: Margins, segmentable: bool = True
) -> Plan:
    """This invocation's run of `job`. Not `segmentable` (no session to resume from): one run
    until the earlier of the job's deadline and the invocation's end."""
    job_left = (
        (job.deadline_at - now).total_seconds()
        if job.deadline_at is not None
        else float(job.options.timeout_seconds)
    )
    invocation_left = remaining_seconds - margin.record
    if job_left <= 0:
        return Plan(run_seconds=0.0, yield_after=None, expired=True)
    if job_left <= invocation_left or not segmentable:
        return Plan(
            run_seconds=min(job_left, invocation_left),
            yield_after=None,
            expired=False,
            invocation_bound=invocation_left < job_left,
        )
    return Plan(
        run_seconds=invocation_left,
        yield_after=max(invocation_left - margin.boundary, 0.0),
        expired=False,
        invocation_bound=True,
    )


def resumes_own_run(job: Job) -> bool:
    """The job already ran a segment (its usage so far is recorded at each segment's end)."""
    return job.usage is not None and job.segments > 1


def turns_left(job: Job) -> int:
    return job.options.max_turns - (job.usage.num_turns if job.usage else 0)


def spent(job: Job) -> float:
    return job.usage.total_cost_usd if job.usage else 0.0


def with_unrecorded(job: Job, unrecorded_usd: float | None = None) -> Usage | None:
    """The job's usage with what its spend journal holds added to its cost: the exposure an
    attempt journaled and never recorded (its worker died). `unrecorded_usd`: that figure
    when read afresh (default: the job's own)."""
    extra = job.unrecorded_usd if unrecorded_usd is None else unrecorded_usd
    if not extra:
        return job.usage
    before = job.usage or Usage()
    return before.model_copy(update={"total_cost_usd": before.total_cost_usd + extra})


def add_usage(before: Usage | None, run: Usage) -> Usage:
    """The job's usage after a run: the earlier segments' plus this one's."""
    if before is None:
        return run
    return Usage(
        input_tokens=before.input_tokens + run.input_tokens,
        output_tokens=before.output_tokens + run.output_tokens,
        cache_read_input_tokens=before.cache_read_input_tokens + run.cache_read_input_tokens,
        cache_creation_input_tokens=before.cache_creation_input_tokens
        + run.cache_creation_input_tokens,
        total_cost_usd=before.total_cost_usd + run.total_cost_usd,
        num_turns=before.num_turns + run.num_turns,
        duration_ms=before.duration_ms + run.duration_ms,
    )
