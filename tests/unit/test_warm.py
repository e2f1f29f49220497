"""Warm start's parts without a CLI: which jobs a warm CLI may serve (and be modelled on), the
launch comparison, the session rename, and the local runtime ending a dropped environment's
warm CLI. The real CLI runs in `tests/worker/test_warm_start.py`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from claude_jobs.models import Job, JobOptions, JobStatus, Usage
from claude_jobs.worker.agent import AgentRequest, launch_of, sdk_options
from claude_jobs.worker.sessions import RecordingSessions
from claude_jobs.worker.warm import WarmProfile
from claude_jobs_tools.local.runtime import shut_down
from tests.support.jobs import make_job


def job(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "status": JobStatus.RUNNING,
        "options": JobOptions(allowed_tools=["Bash"], max_turns=5),
        "session_id": "s-1",
        "segments": 1,
        **fields,
    }
    return make_job("j-1", **values)


def test_a_job_with_options_only_is_a_profile_and_one_with_its_own_data_is_not() -> None:
    profile = WarmProfile.of(job())
    values = (
        ("allowed_tools", ("Bash",)),
        ("max_turns", 5),
        ("max_budget_usd", None),
        ("model", None),
    )
    assert profile == WarmProfile(values, True)
    assert profile is not None and profile.options() == JobOptions(
        allowed_tools=["Bash"], max_turns=5
    )
    # The prompt is not part of a profile: two jobs that differ only in it share one.
    assert WarmProfile.of(job(prompt="secret one")) == WarmProfile.of(job(prompt="secret two"))
    # A system prompt, an output schema or a later segment puts the job's data or state on
    # its CLI's command line: never warm-started, never a model.
    assert WarmProfile.of(job(system_prompt="You are a pirate.")) is None
    schema = {"type": "object"}
    assert WarmProfile.of(job(options=JobOptions(output_schema=schema))) is None
    assert WarmProfile.of(job(segments=2)) is None
    assert WarmProfile.of(job(usage=Usage())) is None
    assert WarmProfile.of(job(session_id=None)) == WarmProfile(values, False)
    assert WarmProfile.default() == WarmProfile.from_options(JobOptions(), session=True)


def request(tmp_path: Path, **fields: Any) -> AgentRequest:
    values: dict[str, Any] = {
        "job_id": "",
        "prompt": "",
        "system_prompt": None,
        "options": JobOptions(allowed_tools=[]),
        "model": "claude-sonnet-4-5",
        "cli": tmp_path / "claude",
        "cwd": tmp_path,
        "env": {"HOME": str(tmp_path), "ANTHROPIC_API_KEY": "cj-job-token"},
        "deadline_seconds": 60,
        **fields,
    }
    return AgentRequest(**values)


def test_launches_are_equal_only_for_the_same_cli(tmp_path: Path) -> None:
    base = request(tmp_path)
    same = request(tmp_path, job_id="j-2", prompt="another prompt", deadline_seconds=5)
    assert launch_of(base, sdk_options(base)) == launch_of(same, sdk_options(same))
    others = [
        request(tmp_path, options=JobOptions(allowed_tools=["Bash"])),
        request(tmp_path, options=JobOptions(allowed_tools=[], max_turns=3)),
        request(tmp_path, model="claude-haiku-4-5"),
        request(tmp_path, system_prompt="Be brief."),
        request(tmp_path, env={**base.env, "ANTHROPIC_API_KEY": "cj-job-other"}),
        request(tmp_path, cwd=tmp_path / "elsewhere"),
    ]
    for other in others:
        assert launch_of(other, sdk_options(other)) != launch_of(base, sdk_options(base))
    # The prompt is never part of a launch (it goes to the CLI's stdin).
    assert not any("another prompt" in part for part in launch_of(same, sdk_options(same)).command)


class Recorded:
    def __init__(self) -> None:
        self.appended: list[tuple[dict[str, Any], list[Any]]] = []

    async def append(self, key: Any, entries: Any) -> None:
        self.appended.append((dict(key), list(entries)))

    async def load(self, key: Any) -> None:
        return None

    async def list_subkeys(self, key: Any) -> list[str]:
        return []

    async def delete(self, key: Any) -> None:
        return None


def test_what_a_warm_cli_writes_is_stored_under_the_jobs_session() -> None:
    store = Recorded()
    sessions = RecordingSessions(store, "acme", alias=("warm-id", "job-session"))
    entries: list[Any] = [
        {"type": "user", "uuid": "u1", "sessionId": "warm-id"},
        {"type": "summary", "sessionId": "someone-else"},
        {"type": "assistant", "uuid": "u2"},
    ]
    key: Any = {"project_key": "-tmp-claude-job-warm-work", "session_id": "warm-id"}
    asyncio.run(sessions.append(key, entries))
    subagent: Any = {"project_key": "x", "session_id": "warm-id", "subpath": "subagents/a"}
    sub_entries: list[Any] = [{"uuid": "s1", "sessionId": "warm-id"}]
    asyncio.run(sessions.append(subagent, sub_entries))
    (main_key, main), (sub_key, sub) = store.appended
    assert main_key == {"project_key": "acme", "session_id": "job-session"}
    assert [e.get("sessionId") for e in main] == ["job-session", "someone-else", None]
    assert sub_key == {"project_key": "acme", "session_id": "job-session", "subpath": "subagents/a"}
    assert sub == [{"uuid": "s1", "sessionId": "job-session"}]
    assert sessions.appended == {"u1", "u2"}  # the main transcript's, as before
    assert entries[0]["sessionId"] == "warm-id"  # the SDK's own entries are not changed


def test_a_dropped_environment_ends_its_functions_warm_cli() -> None:
    ended: list[str] = []

    class Function:
        def shutdown(self) -> None:
            ended.append("shutdown")

    class Module:
        function = Function()

    def handler(event: dict[str, Any], context: Any) -> None:
        return None

    handler.module = Module  # type: ignore[attr-defined]
    shut_down(handler)
    assert ended == ["shutdown"]

    class Failing:
        def shutdown(self) -> None:
            raise RuntimeError("boom")

    Module.function = Failing()  # type: ignore[assignment]
    shut_down(handler)  # never raises: the environment is gone either way
    shut_down(lambda event, context: None)  # a function without shutdown
