"""AWS cost per 1,000 jobs of one model call, awaited with one `?wait=` status request.

Pure arithmetic over measured durations (`bench_e2e.py` measures them on the local stack) and
the one price table (`aws_prices.py`). What one job does, per the code and the capacity ledger
(`make bench-capacity`, its "small" job):

- API Gateway: 2 requests (the submit, one long-poll that returns the finished job).
- Lambda: submit, status and authorizer once per request (the authorizer's result cache
  lowers that for a caller polling again within `authorizer_cache_seconds`; counted per
  request here, the upper bound), the worker once, the notifier once (the terminal write on
  the table's stream). Each billed for its measured duration at its memory from the definition
  table; the status function is billed for the whole wait, i.e. about as long as the job runs.
- DynamoDB: write units as the ledger's small job (3 to the table, 1 to the tenant index);
  reads: the submit-side and worker-side full reads (strongly consistent, 1 unit each), the
  long-poll's two full reads and its control reads (`long_poll_reads`, 0.5 unit each), and
  the worker's cancel polls (one per `cancel_poll_seconds` of the run, 0.5 unit each).
- SQS: send, receive, delete. EventBridge: one completion event. S3: nothing (the result is
  inline). Secrets Manager: the key is cached for `SECRET_MAX_AGE_SECONDS`, ~0 per job.
- CloudWatch Logs: LOG_BYTES_PER_INVOCATION per invocation (structured logs + EMF metrics).

Model tokens are not included (they are the job's own cost, metered per job).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks import aws_prices as price
from claude_jobs.definitions import FUNCTIONS
from claude_jobs.job_service import long_poll_reads
from claude_jobs.long_poll import reads_per_waiting_minute

GB = 1024**3
#: As the capacity ledger states it (benchmarks/bench_capacity.py).
LOG_BYTES_PER_INVOCATION = 2048
#: The ledger's small job: table and index write units over the job's life.
WRITE_UNITS_PER_JOB = 3.0 + 1.0
#: Strongly consistent full reads outside the long-poll: the submit's idempotency-free path
#: reads nothing; the worker reads the job once before it claims it.
WORKER_FULL_READS = 1
CANCEL_POLL_SECONDS = 2.0
#: Notifier: one short invocation per terminal job (stream record → event).
NOTIFIER_SECONDS = 0.05


@dataclass(frozen=True)
class Measured:
    """Seconds each function is billed for one job (Lambda rounds up to 1 ms)."""

    worker_seconds: float
    submit_seconds: float
    status_seconds: float  # one plain status request
    authorizer_seconds: float
    #: How long the long-poll waits for the job: by default the worker's run.
    wait_seconds: float | None = None


def _gb_s(function: str, seconds: float, memory_mb: int | None = None) -> float:
    memory = memory_mb if memory_mb is not None else FUNCTIONS[function].memory_mb
    billed = math.ceil(max(seconds, 0.001) * 1000) / 1000
    return billed * memory / 1024


def cost_per_thousand(measured: Measured, worker_memory_mb: int | None = None) -> dict[str, float]:
    """USD per 1,000 jobs, by line."""
    wait = measured.wait_seconds if measured.wait_seconds is not None else measured.worker_seconds
    gb_s = {
        "worker": _gb_s("worker", measured.worker_seconds, worker_memory_mb),
        "status": _gb_s("status", measured.status_seconds + wait),
        "submit": _gb_s("submit", measured.submit_seconds),
        "authorizer": 2 * _gb_s("authorizer", measured.authorizer_seconds),
        "notifier": _gb_s("notifier", NOTIFIER_SECONDS),
    }
    invocations = 1 + 1 + 1 + 2 + 1
    read_units = (
        WORKER_FULL_READS
        + 2  # the long-poll's full reads, first and last
        + 0.5 * long_poll_reads(wait)
        + 0.5 * int(measured.worker_seconds // CANCEL_POLL_SECONDS)
    )
    lines = {
        "API Gateway": 2 * price.API_GATEWAY_REST_PER_MILLION / 1e6,
        **{
            f"Lambda {name} (GB-s)": value * price.LAMBDA_ARM_PER_GB_SECOND
            for name, value in gb_s.items()
        },
        "Lambda requests": invocations * price.LAMBDA_PER_MILLION_REQUESTS / 1e6,
        "DynamoDB writes": WRITE_UNITS_PER_JOB * price.DYNAMODB_PER_MILLION_WRU / 1e6,
        "DynamoDB reads": read_units * price.DYNAMODB_PER_MILLION_RRU / 1e6,
        "SQS": 3 * price.SQS_PER_MILLION_REQUESTS / 1e6,
        "EventBridge": price.EVENTBRIDGE_PER_MILLION_EVENTS / 1e6,
        "S3": 0.0,
        "CloudWatch Logs": invocations
        * LOG_BYTES_PER_INVOCATION
        / GB
        * price.CLOUDWATCH_LOGS_PER_GB_INGESTED,
    }
    return {name: value * 1000 for name, value in lines.items()}


def long_poll_read_cost_per_minute() -> float:
    """USD of the control reads one caller's long-poll makes in a minute of waiting."""
    return 0.5 * long_poll_reads(60) * price.DYNAMODB_PER_MILLION_RRU / 1e6


#: Before issue 26 the long-poll read the job's control attributes every 50 ms for its first
#: 3 s and every 100 ms after (630 a minute, restarted by every request: 3 x 60 + 3 x 170), plus
#: two full reads a request.
BEFORE_READS_PER_WAITING_MINUTE = 3 * (60 + 170) + 3 * 2


@dataclass(frozen=True)
class WaitingMinuteCost:
    """What one caller waiting a minute makes the service do."""

    reads: float  # DynamoDB read requests (each priced at 1 read unit: an upper bound)
    function_seconds: float  # the status function held by its long-polls
    requests: int  # API Gateway requests (= status function and authorizer invocations)


def waiting_cost_per_thousand(minute: WaitingMinuteCost) -> dict[str, float]:
    """USD of 1,000 callers each waiting one minute, by line."""
    gb_s = _gb_s("status", minute.function_seconds)
    lines = {
        "Lambda status (GB-s)": gb_s * price.LAMBDA_ARM_PER_GB_SECOND,
        "API Gateway": minute.requests * price.API_GATEWAY_REST_PER_MILLION / 1e6,
        "Lambda requests": 2 * minute.requests * price.LAMBDA_PER_MILLION_REQUESTS / 1e6,
        "DynamoDB reads": minute.reads * price.DYNAMODB_PER_MILLION_RRU / 1e6,
        "CloudWatch Logs": 2
        * minute.requests
        * LOG_BYTES_PER_INVOCATION
        / GB
        * price.CLOUDWATCH_LOGS_PER_GB_INGESTED,
    }
    return {name: value * 1000 for name, value in lines.items()}


def render_waiting(before: WaitingMinuteCost, after: WaitingMinuteCost) -> str:
    old, new = waiting_cost_per_thousand(before), waiting_cost_per_thousand(after)
    rows = [
        f"AWS cost of 1,000 callers each waiting one minute ({price.SOURCE})",
        f"  {'':<22} {'before':>10} {'after':>10}",
        f"  {'reads / caller-minute':<22} {before.reads:10.0f} {after.reads:10.0f}",
        f"  {'function-s / minute':<22} {before.function_seconds:10.1f}"
        f" {after.function_seconds:10.1f}",
        f"  {'requests / minute':<22} {before.requests:10d} {after.requests:10d}",
    ]
    for name in sorted(old, key=lambda n: -old[n]):
        rows.append(f"  {name:<22} ${old[name]:9.5f} ${new[name]:9.5f}")
    rows.append(f"  {'total':<22} ${sum(old.values()):9.5f} ${sum(new.values()):9.5f}")
    return "\n".join(rows)


def render(lines: dict[str, float], measured: Measured | None = None) -> str:
    rows = [f"AWS cost per 1,000 one-call jobs ({price.SOURCE}; model tokens excluded)"]
    if measured is not None:
        rows.append(
            f"  from: worker {measured.worker_seconds * 1000:.0f} ms at "
            f"{FUNCTIONS['worker'].memory_mb} MB, submit {measured.submit_seconds * 1000:.0f} ms,"
            f" status {measured.status_seconds * 1000:.0f} ms + the wait, authorizer"
            f" {measured.authorizer_seconds * 1000:.0f} ms (API functions at"
            f" {FUNCTIONS['status'].memory_mb} MB)"
        )
    width = max(len(name) for name in lines)
    for name, value in sorted(lines.items(), key=lambda item: -item[1]):
        rows.append(f"  {name:<{width}}  ${value:9.5f}")
    rows.append(f"  {'total':<{width}}  ${sum(lines.values()):9.5f}")
    rows.append(
        f"  long-poll reads: {reads_per_waiting_minute():.0f} per waiting minute (events:"
        f" {reads_per_waiting_minute(events=True):.0f}),"
        f" ${long_poll_read_cost_per_minute() * 1e6:.2f} per million caller-minutes"
    )
    return "\n".join(rows)
