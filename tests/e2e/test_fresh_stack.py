"""A fresh local stack takes a burst of jobs at once, and every one of them finishes.

Once, a fresh stack's first job stalled for more than 300 s: the worker raised
`ModuleNotFoundError: No module named 'aws_xray_sdk'` on its first invocation (the package is
installed) because the local runtime put a function's directory on sys.path and took it off
again while other threads imported, and the message came back only after the queue's full
visibility timeout. Now a function's directory is importable for the loading thread alone,
every worker environment is loaded before the consumers start, and a message whose function
raised comes back within a second.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from claude_jobs_client import Client

from .conftest import base_env, start_dev

pytestmark = [pytest.mark.e2e, pytest.mark.cli]

ROUNDS = 10
JOBS = 20
#: A round's jobs all end well within this (20 one-call jobs on 4 workers; a stalled job would
#: wait for the queue's visibility timeout).
ROUND_SECONDS = 150


@pytest.mark.timeout(ROUNDS * (ROUND_SECONDS + 60))
def test_a_fresh_stack_finishes_every_job_of_a_burst_ten_times(tmp_path: Path) -> None:
    for round_number in range(ROUNDS):
        # Given a fresh stack with its offline stand-in model (no key), 4 workers and room
        # for a burst of 20 jobs of one tenant
        key = "cj_" + secrets.token_urlsafe(24)
        env = base_env(
            CLAUDE_JOBS_DEV_KEYS=f"burst:{key}", TENANT_MAX_RUNNING="4", TENANT_MAX_PENDING="50"
        )
        workdir = tmp_path / f"round-{round_number}"
        workdir.mkdir()
        dev = start_dev(workdir, env, workers=4)
        try:
            with Client(dev.url, key, timeout=60) as client:
                # (one request first: the front caches the authorizer's answer for the key, as
                # API Gateway does, so the burst does not start 20 authorizers cold at once)
                client.list(limit=1)
                # When 20 callers each submit a job at once and wait for it
                started = time.monotonic()

                def submit_and_wait(
                    index: int, client: Client = client, at: int = round_number
                ) -> str:
                    job_id = client.submit(f"burst {at}.{index}")["job_id"]
                    return str(client.wait(job_id, timeout=ROUND_SECONDS)["status"])

                with ThreadPoolExecutor(JOBS) as pool:
                    statuses = list(pool.map(submit_and_wait, range(JOBS)))
                took = time.monotonic() - started
        finally:
            code = dev.stop()
        # Then every job succeeded, in far less than a visibility timeout
        assert statuses == ["succeeded"] * JOBS, (round_number, statuses, dev.output()[-4000:])
        assert took < ROUND_SECONDS
        # and no worker invocation raised (nor did any function fail to import)
        output = dev.output()
        assert "raised; messages" not in output, output[-4000:]
        assert "ModuleNotFoundError" not in output, output[-4000:]
        assert code == 0, output[-4000:]
