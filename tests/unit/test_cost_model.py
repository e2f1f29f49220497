"""The e2e bench's cost model: its arithmetic against hand-computed figures."""

from __future__ import annotations

import pytest

from benchmarks import aws_prices
from benchmarks.cost_model import Measured, cost_per_thousand, long_poll_read_cost_per_minute
from claude_jobs.definitions import FUNCTIONS
from claude_jobs.job_service import long_poll_reads


def test_lambda_lines_are_measured_seconds_times_configured_memory() -> None:
    # Given a job whose worker ran 1 s and whose API calls took 20 ms each
    measured = Measured(
        worker_seconds=1.0, submit_seconds=0.02, status_seconds=0.02, authorizer_seconds=0.02
    )
    # When it is priced
    lines = cost_per_thousand(measured, worker_memory_mb=1024)
    # Then the worker's line is 1 GB-s a job at the arm64 price, for 1,000 jobs
    assert lines["Lambda worker (GB-s)"] == pytest.approx(
        1000 * aws_prices.LAMBDA_ARM_PER_GB_SECOND
    )
    # and the status function is billed for its request plus the whole wait (the job's run)
    status_gb = FUNCTIONS["status"].memory_mb / 1024
    assert lines["Lambda status (GB-s)"] == pytest.approx(
        1000 * 1.02 * status_gb * aws_prices.LAMBDA_ARM_PER_GB_SECOND
    )
    # and API Gateway bills two requests a job
    assert lines["API Gateway"] == pytest.approx(2 * aws_prices.API_GATEWAY_REST_PER_MILLION / 1e3)


def test_long_poll_reads_are_priced_as_eventually_consistent_reads() -> None:
    # Given a waiting minute, Then its control reads cost half a read unit each
    expected = 0.5 * long_poll_reads(60) * aws_prices.DYNAMODB_PER_MILLION_RRU / 1e6
    assert long_poll_read_cost_per_minute() == pytest.approx(expected)
    # and a longer wait costs more reads (the reads line grows with the wait)
    short = cost_per_thousand(Measured(1.0, 0.02, 0.02, 0.02, wait_seconds=1.0))
    long = cost_per_thousand(Measured(1.0, 0.02, 0.02, 0.02, wait_seconds=10.0))
    assert long["DynamoDB reads"] > short["DynamoDB reads"]


def test_a_waiting_minute_is_priced_from_its_reads_function_seconds_and_requests() -> None:
    from benchmarks.cost_model import WaitingMinuteCost, waiting_cost_per_thousand

    # Given a caller-minute of 60 reads, 60 s of the status function and 3 requests
    lines = waiting_cost_per_thousand(WaitingMinuteCost(reads=60, function_seconds=60, requests=3))
    # Then 1,000 of them cost 60,000 read units, 60,000 s of the status function at its
    # memory, and 3,000 API requests
    status_gb = FUNCTIONS["status"].memory_mb / 1024
    assert lines["DynamoDB reads"] == pytest.approx(
        60_000 * aws_prices.DYNAMODB_PER_MILLION_RRU / 1e6
    )
    assert lines["Lambda status (GB-s)"] == pytest.approx(
        60_000 * status_gb * aws_prices.LAMBDA_ARM_PER_GB_SECOND
    )
    assert lines["API Gateway"] == pytest.approx(
        3_000 * aws_prices.API_GATEWAY_REST_PER_MILLION / 1e6
    )
    # and fewer reads cost less, all else equal
    fewer = waiting_cost_per_thousand(WaitingMinuteCost(reads=6, function_seconds=60, requests=3))
    assert fewer["DynamoDB reads"] < lines["DynamoDB reads"]
