"""The approvals cost line (`make bench`): a waiting job's hour from measured sizes and the
price table, next to a held worker; and the measurement of a real waiting item."""

from __future__ import annotations

import pytest

from benchmarks import aws_prices as price
from benchmarks.approval_cost import (
    WaitingJob,
    fargate_per_hour,
    lambda_held_per_hour,
    render,
    waiting_cost_per_hour,
)
from benchmarks.bench_approvals import INPUTS, measure_item, schedule, sweeps_per_hour


def test_a_waiting_job_costs_no_compute_and_its_reads_follow_the_sweep() -> None:
    # Given a waiting job of 2 KB swept once a minute
    job = WaitingJob(item_bytes=2048, session_bytes=100_000, sweeps_per_hour=60)
    lines = waiting_cost_per_hour(job)
    # Then it costs no compute, and each scan reads half a read unit of it
    assert lines["compute"] == 0
    assert lines["reconciler reads"] == pytest.approx(30 * price.DYNAMODB_PER_MILLION_RRU / 1e6)
    # And twice the item or twice the sweeps is twice the reads
    twice = waiting_cost_per_hour(WaitingJob(4096, 100_000, 60))["reconciler reads"]
    assert twice == pytest.approx(2 * lines["reconciler reads"])
    # And the S3 line is the transcript's storage, prorated to the hour
    gb = 100_000 / 1024**3
    expected = gb * price.S3_PER_GB_MONTH / price.HOURS_PER_MONTH
    assert lines["S3 session storage"] == pytest.approx(expected)


def test_a_held_worker_costs_its_memory_for_every_second_of_the_wait() -> None:
    assert lambda_held_per_hour(1024) == pytest.approx(3600 * price.LAMBDA_ARM_PER_GB_SECOND)
    assert lambda_held_per_hour(2048) == pytest.approx(2 * lambda_held_per_hour(1024))
    assert fargate_per_hour(1, 2) == pytest.approx(
        price.FARGATE_ARM_PER_VCPU_HOUR + 2 * price.FARGATE_ARM_PER_GB_HOUR
    )


def test_the_table_prints_figures_and_the_ratio() -> None:
    job = WaitingJob(item_bytes=1200, session_bytes=7000, sweeps_per_hour=60)
    text = render(job, 1024)
    waiting = sum(waiting_cost_per_hour(job).values())
    ratio = lambda_held_per_hour(1024) / waiting
    assert f"{ratio:,.0f}x the waiting job" in text
    assert "item 1,200 B" in text and "60 reconciler runs an hour" in text


def test_the_sweep_rate_is_the_reconcilers_schedule() -> None:
    assert schedule() == "rate(1 minute)"
    assert sweeps_per_hour() == 60
    assert sweeps_per_hour("rate(5 minutes)") == 12 and sweeps_per_hour("rate(2 hours)") == 0.5
    with pytest.raises(ValueError, match="cannot read"):
        sweeps_per_hour("cron(0 * * * ? *)")


def test_a_real_waiting_item_is_measured_and_grows_with_the_calls_input() -> None:
    (_, small), (_, large) = INPUTS
    small_bytes, large_bytes = measure_item(small), measure_item(large)
    # The item holds the pending approval with its input: the larger input shows in the size
    assert 500 < small_bytes < 4096
    assert large_bytes - small_bytes >= len(large) - len(small)
