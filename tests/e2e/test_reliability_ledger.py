"""The reliability ledger in its short form (issue 10): a behaviour test, not a timed one.

Thirty jobs of three tenants through the whole local stack (the real Claude Code CLI against
the fake Messages API) while one AWS call in six fails or is throttled, upstream calls fail
(429 / 500 / 529) or stall, workers are killed mid-job and messages are delivered twice. Every
check of the ledger must pass: no job lost or left non-terminal, no model call for a job after
it ended, one completion event per job, each answer its own job's.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_reliability import LedgerConfig, render, run_ledger

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(900)]


@pytest.mark.xfail(
    strict=False,
    reason="open findings of the ledger (README 'Reliability ledger'): under these fault rates "
    "some jobs stayed queued, unclaimed, for the whole settle time, and the local notifier "
    "missed some jobs' terminal stream records",
)
def test_every_job_ends_once_under_heavy_faults() -> None:
    # Given a short ledger with faults far more frequent than the full run's
    config = LedgerConfig(
        jobs=30,
        workers=3,
        seed=7,
        aws_fault_rate=0.15,
        upstream_error_rate=0.2,
        stall_rate=0.1,
        stall_seconds=2.0,
        kill_rate=0.07,
        duplicate_rate=0.3,
        # A restart mid-run makes the local stack's notifier miss some jobs' terminal stream
        # records (an open local-stack issue, see the README's "Reliability ledger"): the
        # full ledger keeps it and reports it; this test covers the other faults.
        restarts=0,
        settle_seconds=400,
    )
    # When it runs
    report = run_ledger(config)
    # Then every check passes
    assert report.checks, "the ledger checked nothing"
    assert report.passed, render(report)
    # And each kind of fault really happened (a quiet run would prove nothing)
    injected = report.injected
    assert injected["aws_faults"] > 0 and injected["upstream_errors"] > 0, injected
    assert injected["stalls"] > 0 and injected["duplicates"] > 0, injected
    assert injected["kills"] >= 2, injected
    # And every accepted job has a latency: it ended
    assert len(report.latencies) == config.jobs
