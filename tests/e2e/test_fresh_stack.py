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

import contextlib
import secrets
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from claude_jobs_client import Client

from .conftest import DevProcess, base_env, start_dev

pytestmark = [pytest.mark.e2e, pytest.mark.cli]

ROUNDS = 10
JOBS = 20
#: A round's jobs all end well within this (20 one-call jobs on 4 workers; a stalled job would
#: wait for the queue's visibility timeout).
ROUND_SECONDS = 150


def fresh_stack(tmp_path: Path, round_number: int) -> tuple[DevProcess, str]:
    """A fresh stack with its offline stand-in model (no key), 4 workers and room for a burst
    of 20 jobs of one tenant; and that tenant's key."""
    key = "cj_" + secrets.token_urlsafe(24)
    env = base_env(
        CLAUDE_JOBS_DEV_KEYS=f"burst:{key}", TENANT_MAX_RUNNING="4", TENANT_MAX_PENDING="50"
    )
    workdir = tmp_path / f"round-{round_number}"
    workdir.mkdir()
    return start_dev(workdir, env, workers=4), key


def fresh_stacks(tmp_path: Path, rounds: int) -> Generator[tuple[DevProcess, str]]:
    """Each round's fresh stack. The next one starts while a round runs (a start-up is about a
    quarter of a round); no job reaches it before its own round. One left unused is stopped."""
    with ThreadPoolExecutor(1) as starter:
        upcoming = starter.submit(fresh_stack, tmp_path, 0)
        try:
            for round_number in range(rounds):
                current = upcoming.result()
                if round_number + 1 < rounds:
                    upcoming = starter.submit(fresh_stack, tmp_path, round_number + 1)
                yield current
        finally:
            if not upcoming.cancel():
                with contextlib.suppress(Exception):
                    upcoming.result()[0].stop()


def excerpt(output: str) -> str:
    """The stack's log around its first traceback, or its end."""
    at = output.find("Traceback")
    return output[max(0, at - 2000) : at + 6000] if at >= 0 else output[-4000:]


@pytest.mark.timeout(ROUNDS * (ROUND_SECONDS + 60))
def test_a_fresh_stack_finishes_every_job_of_a_burst_ten_times(tmp_path: Path) -> None:
    with contextlib.closing(fresh_stacks(tmp_path, ROUNDS)) as stacks:
        for round_number, (dev, key) in enumerate(stacks):
            # Given a fresh stack with its offline stand-in model (no key), 4 workers and room
            # for a burst of 20 jobs of one tenant
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
                        try:
                            # (a key, as a careful caller's: a submit that overran its
                            # function's time on a loaded machine is asked again, never twice)
                            job_id = client.submit(
                                f"burst {at}.{index}", idempotency_key=f"burst-{at}-{index}"
                            )["job_id"]
                            return str(client.wait(job_id, timeout=ROUND_SECONDS)["status"])
                        except Exception as exc:  # shown with the stack's log
                            return f"{type(exc).__name__}: {exc}"

                    with ThreadPoolExecutor(JOBS) as pool:
                        statuses = list(pool.map(submit_and_wait, range(JOBS)))
                    took = time.monotonic() - started
            finally:
                code = dev.stop()
            # Then every job succeeded, in far less than a visibility timeout
            assert statuses == ["succeeded"] * JOBS, f"round {round_number}: {statuses}\n" + (
                excerpt(dev.output())
            )
            assert took < ROUND_SECONDS
            # and no worker invocation raised (nor did any function fail to import)
            output = dev.output()
            assert "raised; messages" not in output, output[-4000:]
            assert "ModuleNotFoundError" not in output, output[-4000:]
            assert code == 0, output[-4000:]
