"""The waiting benchmark's `pool alone` drain (benchmarks/bench_waiting.py): the best case of a
design that gives each job a CLI of its own, through the real bundled CLI. Each job gets a
fresh CLI started ahead, and a job that fails fails the drain."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from benchmarks import bench_e2e as e2e
from benchmarks import bench_waiting
from claude_jobs_tools.local.fake_anthropic import ApiError, FakeAnthropic, Text

pytestmark = pytest.mark.cli


def test_each_job_runs_in_a_fresh_cli_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool's HOMEs go under this test's own directory: a test beside it in another worker
    # makes and removes its own elsewhere.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with FakeAnthropic(api_key=e2e.API_KEY, default=Text("hello")) as fake:
        wall = bench_waiting.pool_drain(fake.url, jobs=3, at_once=2)
        prompts = [r for r in fake.message_requests if "Say hello" in r.prompt_text()]
    assert wall > 0
    # One model call a job, and none carries another job's turn: every CLI served one job.
    assert len(prompts) == 3
    assert all(r.prompt_text().count("Say hello") == 1 for r in prompts)
    assert not list(tmp_path.glob("claude-jobs-bench-pool-*"))  # every job's HOME removed


def test_a_failed_job_fails_the_drain() -> None:
    error = ApiError(status=400, type="invalid_request_error", message="refused")
    with (
        FakeAnthropic(api_key=e2e.API_KEY, default=error) as fake,
        pytest.raises(RuntimeError, match="failed"),
    ):
        bench_waiting.pool_drain(fake.url, jobs=2, at_once=1)
