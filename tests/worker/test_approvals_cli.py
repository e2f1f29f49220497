"""Approvals with the real CLI, at the agent runner: a call matching an approval rule is
deferred before it runs; resuming the session runs it (allow); denying it in the transcript
first means it never runs and the model sees the denial."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import InMemorySessionStore

from claude_jobs.models import JobOptions
from claude_jobs.worker.agent import AgentRequest, AgentRunner
from claude_jobs.worker.approvals import (
    DEFERRED_ATTACHMENT,
    deny_in_transcript,
    read_transcript,
)
from claude_jobs.worker.isolation import AGENT_PATH, bundled_cli
from claude_jobs.worker.ports import AgentOutcome
from claude_jobs.worker.sessions import AgentSession, RecordingSessions
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.worker.conftest import REAL_KEY

pytestmark = pytest.mark.cli

#: The CLI version the transcript format below was checked with (shared/NOTES.md).
CHECKED_CLI_VERSION = "2.1.330"


@dataclass
class Agent:
    fake: FakeAnthropic
    root: Path
    session_id: str

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def marker(self) -> Path:
        return self.work / "marker.txt"

    def transcript(self) -> Path:
        from claude_agent_sdk import project_key_for_directory

        key = project_key_for_directory(self.work)
        return self.root / "config" / "projects" / key / f"{self.session_id}.jsonl"

    def run(
        self,
        prompt: str,
        *,
        resume: bool,
        approvals: tuple[str, ...],
        approved: tuple[str, ...] = (),
        yield_after_seconds: float | None = None,
    ) -> AgentOutcome:
        session = AgentSession(
            session_id=self.session_id,
            resume=resume,
            store=RecordingSessions(InMemorySessionStore(), "t", session_id=self.session_id),
        )
        request = AgentRequest(
            job_id="job-approvals",
            prompt=prompt,
            system_prompt=None,
            options=JobOptions(allowed_tools=["Bash"]),
            model="claude-sonnet-4-5",
            cli=bundled_cli(),
            cwd=self.work,
            env={
                "HOME": str(self.root / "home"),
                "CLAUDE_CONFIG_DIR": str(self.root / "config"),
                "TMPDIR": str(self.root / "tmp"),
                "PATH": AGENT_PATH,
                "LANG": "C.UTF-8",
                "SHELL": "/bin/bash",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_AUTOUPDATER": "1",
                "ANTHROPIC_BASE_URL": self.fake.url,
                "ANTHROPIC_API_KEY": REAL_KEY,
            },
            deadline_seconds=120,
            session=session,
            approvals=approvals,
            approved_calls=approved,
            yield_after_seconds=yield_after_seconds,
        )
        return AgentRunner(poll_seconds=0.5).run(request)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    for name in ("work", "home", "config", "tmp"):
        (tmp_path / name).mkdir()
    with FakeAnthropic(api_key=REAL_KEY) as fake:
        yield Agent(fake, tmp_path, str(uuid.uuid4()))


def _defer_a_marker_call(agent: Agent) -> AgentOutcome:
    agent.fake.script(
        ToolUse("Bash", {"command": "touch marker.txt"}, id="toolu_marker"), Text("done")
    )
    outcome = agent.run("Make the marker.", resume=False, approvals=("Bash(touch:*)",))
    return outcome


def _result_of(agent: Agent, tool_use_id: str) -> dict[str, Any]:
    """The tool result the model first got for the call (the request that carried it)."""
    for request in agent.fake.message_requests:
        found = [
            block
            for message in request.body["messages"]
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_result" and block.get("tool_use_id") == tool_use_id
        ]
        if found:
            (result,) = found
            text = json.dumps(request.body["messages"])
            assert text.count(tool_use_id) == 2, "the call and one result"
            return dict(result)
    raise AssertionError(f"no request carried a result for {tool_use_id}")


def test_a_matching_call_is_deferred_before_it_runs(agent: Agent) -> None:
    outcome = _defer_a_marker_call(agent)
    assert outcome.ending == "deferred", outcome.error
    assert outcome.deferred is not None
    assert outcome.deferred.tool_use_id == "toolu_marker"
    assert outcome.deferred.tool == "Bash"
    assert outcome.deferred.rule == "Bash(touch:*)"
    assert "touch marker.txt" in outcome.deferred.input
    assert not agent.marker.exists()
    assert len(agent.fake.message_requests) == 1  # the model was not asked again


def test_the_transcript_format_is_the_one_denial_rewrites(agent: Agent) -> None:
    # Pins the bundled CLI's transcript entries that `deny_in_transcript` relies on.
    _defer_a_marker_call(agent)
    entries = read_transcript(agent.transcript())
    attachments = [e["attachment"] for e in entries if e.get("type") == "attachment"]
    (attachment,) = [a for a in attachments if a.get("type") == DEFERRED_ATTACHMENT]
    assert attachment["toolUseID"] == "toolu_marker"
    assert attachment["toolName"] == "Bash"
    assert attachment["toolInput"] == {"command": "touch marker.txt"}
    calls = [e for e in entries if e.get("type") == "assistant"]
    assert calls[-1]["message"]["content"][-1]["id"] == "toolu_marker"
    for key in ("uuid", "sessionId", "cwd", "version"):
        assert key in calls[-1], key
    assert calls[-1]["version"] == CHECKED_CLI_VERSION, (
        "the bundled CLI changed: re-check the deferral's transcript format (shared/NOTES.md)"
    )


def test_allow_resumes_the_session_and_the_call_runs(agent: Agent) -> None:
    _defer_a_marker_call(agent)
    agent.fake.script(Text("made it"), Text("ok"))
    outcome = agent.run("", resume=True, approvals=("Bash(touch:*)",), approved=("toolu_marker",))
    assert outcome.ending == "succeeded", outcome.error
    assert agent.marker.exists()
    assert not _result_of(agent, "toolu_marker")["is_error"]


def test_deny_rewrites_the_transcript_and_the_call_never_runs(agent: Agent) -> None:
    _defer_a_marker_call(agent)
    deny_in_transcript(agent.transcript(), "toolu_marker", "Denied by alice: no markers today.")
    agent.fake.script(Text("understood"), Text("ok"))
    outcome = agent.run("", resume=True, approvals=("Bash(touch:*)",))
    assert outcome.ending == "succeeded", outcome.error
    assert not agent.marker.exists()
    result = _result_of(agent, "toolu_marker")
    assert result["is_error"]
    assert result["content"] == "Denied by alice: no markers today."


def test_a_call_no_rule_matches_runs(agent: Agent) -> None:
    agent.fake.script(ToolUse("Bash", {"command": "touch marker.txt"}), Text("done"))
    outcome = agent.run("Make the marker.", resume=False, approvals=("Bash(git push:*)",))
    assert outcome.ending == "succeeded", outcome.error
    assert outcome.deferred is None
    assert agent.marker.exists()


def test_a_segment_defers_a_matching_call_too(agent: Agent) -> None:
    # A segment's own PreToolUse hook (its turn-boundary stop) consults the gate as well.
    agent.fake.script(
        ToolUse("Bash", {"command": "touch marker.txt"}, id="toolu_marker"), Text("done")
    )
    outcome = agent.run(
        "Make the marker.", resume=False, approvals=("Bash",), yield_after_seconds=100
    )
    assert outcome.ending == "deferred", outcome.error
    assert outcome.deferred is not None and outcome.deferred.rule == "Bash"
    assert not agent.marker.exists()
