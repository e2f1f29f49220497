"""The reliability ledger in its short forms (issue 10): behaviour tests, not timed ones.

Jobs of three tenants through the whole local stack (the real Claude Code CLI against the fake
Messages API) while faults are injected; every check of the ledger must pass: no job lost or
left non-terminal, no model call for a job after it ended, one completion event per job, each
answer its own job's. Each test takes one family of faults, at rates far above the full run's;
the full run (`make bench-reliability`) mixes them all, with a restart of the workers, and its
open findings are in docs/benchmarks.md ("Reliability ledger").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The ledger runs its stack in its own process (as `make bench-reliability` does): the stack
#: sets the process's logging, environment and AWS session up for itself.
_RUN = """
import json, sys
from benchmarks.bench_reliability import LedgerConfig, render, run_ledger
report = run_ledger(LedgerConfig(**json.loads(sys.argv[1])))
print(json.dumps({"passed": report.passed, "checks": len(report.checks),
                  "injected": report.injected, "ended": len(report.latencies),
                  "table": render(report)}))
"""

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(900)]

#: A worker function of 100 s (its margin 10 s: a lease of at most 31 s for a 20 s job) and a
#: visibility timeout just past that lease: a killed job's message comes back after 35 s, not
#: the full run's 55 s, and the behaviour under test is the same.
SHORT: dict[str, Any] = {"invocation_seconds": 100, "visibility_seconds": 35}

QUIET: dict[str, Any] = {
    "aws_fault_rate": 0.0,
    "upstream_error_rate": 0.0,
    "stall_rate": 0.0,
    "kill_rate": 0.0,
    "duplicate_rate": 0.0,
    "swallow_rate": 0.0,
    "restarts": 0,
}


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        pytest.param({"aws_fault_rate": 0.15}, ("aws_faults",), id="aws-calls-failing"),
        pytest.param(
            {
                "upstream_error_rate": 0.2,
                "stall_rate": 0.1,
                "stall_seconds": 2.0,
                "kill_rate": 0.07,
                "duplicate_rate": 0.3,
            },
            ("upstream_errors", "stalls", "duplicates", "kills"),
            id="upstream-kills-duplicates",
        ),
        # Issue 27: invocations answered through the Runtime API before the worker ran them
        # (their messages deleted); the reconciler re-drives the jobs.
        pytest.param({"swallow_rate": 0.25}, ("swallowed",), id="runtime-api-swallowed"),
    ],
)
def test_every_job_ends_once_under_faults(
    faults: dict[str, Any], expected: tuple[str, ...]
) -> None:
    # Given a short ledger with one family of faults, far more frequent than the full run's
    config = {
        "jobs": 24,
        "workers": 3,
        "seed": 7,
        "settle_seconds": 400,
        **SHORT,
        **QUIET,
        **faults,
    }
    # When it runs
    done = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Then every check passes
    assert report["checks"], "the ledger checked nothing"
    assert report["passed"], report["table"]
    # And each kind of fault really happened (a quiet run would prove nothing)
    for kind in expected:
        assert report["injected"][kind] > 0, report["injected"]
    # And every accepted job has a latency: it ended
    assert report["ended"] == config["jobs"]
