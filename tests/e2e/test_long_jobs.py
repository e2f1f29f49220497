"""Long jobs over HTTP: `claude-jobs dev --invocation-seconds 20` (20 s worker invocations),
the real CLI in the worker and the fake Messages API as upstream. A job of a dozen ~2 s tool
calls spans several invocations and succeeds, every tool call's effect present exactly once."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs_client import Client
from claude_jobs_tools.local.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    ToolUse,
)

from .conftest import TENANTS, DevProcess, base_env, start_dev

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(600)]

STEPS = 12
#: A segment yields after ~16 s, well short of the twelve two-second steps however fast the
#: machine. Its end-of-invocation margins scale with it: at 10 s (the shortest the stack allows)
#: the 1 s left to record a segment whose agent the hard stop killed was not always enough on
#: a loaded CI machine (the local Lambda timed the invocation out; the job went on after the
#: message's visibility timeout), at 20 s it is 2 s (on Lambda: 30 s).
INVOCATION_SECONDS = 20
#: Each step's Bash call: about two seconds (short sleeps: the CLI refuses a long one).
STEP_SLEEP = "sleep 0.5; sleep 0.5; sleep 0.5; sleep 0.5"
KEY = "sk-ant-test-long-jobs-0123456789"
_DONE = re.compile(r"STEP-OK-(\d+)")
_WORKSPACE = re.compile(r"WORKSPACE:([0-9,]+)")


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="long-jobs-"))
    os.chmod(path, 0o777)  # noqa: S103  # the agents' uids write here
    yield path
    shutil.rmtree(path, ignore_errors=True)


def steps_done(request: RecordedRequest) -> set[int]:
    done: set[int] = set()
    for message in (request.body or {}).get("messages") or []:
        if message.get("role") == "user":
            done.update(int(n) for n in _DONE.findall(json.dumps(message.get("content"))))
    return done


@pytest.fixture(scope="module")
def steps_model(shared_dir: Path) -> Iterator[FakeAnthropic]:
    """Each job's prompt names its effects file; the model takes the next step from what the
    conversation shows done."""

    def model(request: RecordedRequest) -> Reply:
        found = re.search(r"\[\[steps:([\w.-]+)\]\]", request.prompt_text())
        if found is None:
            return Text("no steps")
        effects = shared_dir / found.group(1)
        step = max(steps_done(request), default=0) + 1
        if step > STEPS:
            # The steps also noted themselves in the working directory: read it back.
            seen = _WORKSPACE.findall(json.dumps(request.body))
            if seen:
                return Text(f"all {STEPS} steps done; workspace {seen[-1]}")
            return ToolUse("Bash", {"command": "echo WORKSPACE:$(tr '\\n' , < steps.txt)"})
        return ToolUse(
            "Bash",
            {
                "command": f"{STEP_SLEEP}; echo {step} >> {effects}; echo {step} >> steps.txt; "
                f"echo STEP-OK-{step}"
            },
        )

    with FakeAnthropic(default=model, api_key=KEY) as fake:
        yield fake


def cut_off_steps(events: list[dict[str, object]]) -> set[int]:
    """The steps whose call a segment's hard stop cut off: its last tool call has no result
    event before the next segment's `running`."""
    cut: set[int] = set()
    open_call: str | None = None
    for event in events:
        if event["type"] == "tool_use":
            open_call = str(event["input"])
        elif event["type"] == "tool_result":
            open_call = None
        elif event["type"] == "status" and event.get("segment") and open_call is not None:
            found = re.search(r"echo (\d+) >> steps.txt", open_call)
            cut.update([int(found.group(1))] if found else [])
            open_call = None
    return cut


def once_in_order(seen: list[int], cut_off: set[int]) -> bool:
    """Every step once, in order; a step cut off may also appear once more right after."""
    kept = [n for i, n in enumerate(seen) if n not in seen[:i]]
    repeats = [n for i, n in enumerate(seen) if n in seen[:i]]
    return kept == list(range(1, STEPS + 1)) and all(
        n in cut_off and seen.count(n) == 2 for n in repeats
    )


@pytest.fixture(scope="module")
def short_stack(
    steps_model: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevProcess]:
    env = base_env(
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=steps_model.url,
        CLAUDE_JOBS_DEV_KEYS=f"alpha:{TENANTS['alpha']}",
    )
    dev = start_dev(
        tmp_path_factory.mktemp("long"),
        env,
        workers=2,
        args=("--invocation-seconds", str(INVOCATION_SECONDS)),
    )
    yield dev
    assert dev.stop() == 0, dev.output()


def test_a_job_spanning_several_invocations_runs_each_tool_once(
    short_stack: DevProcess, shared_dir: Path, steps_model: FakeAnthropic
) -> None:
    # Given a job of 12 tool calls of about two seconds each, longer than one 20 s invocation
    effects = shared_dir / "effects-1"
    effects.touch()
    os.chmod(effects, 0o666)  # noqa: S103  # each segment's agent may run as another uid
    with Client(short_stack.url, TENANTS["alpha"], timeout=60) as client:
        accepted = client.submit(
            f"Do the steps. [[steps:{effects.name}]]",
            allowed_tools=["Bash"],
            timeout_seconds=600,
            # a loaded machine can take many segments, each boundary a model turn
            max_turns=60,
        )
        # When it runs to its end
        job = client.wait(accepted["job_id"], timeout=400)
        events = list(client.iter_events(accepted["job_id"], follow=False))
    # Then it succeeded over at least two invocations, every step's effect exactly once: a
    # step is done again only when the hard stop cut its call off (no result recorded: what it
    # did is unknown, docs/sessions.md), which the worker avoids by the calls it timed and a
    # loaded machine can still bring about
    assert job["status"] == "succeeded", json.dumps({"job": job, "events": events})
    cut_off = cut_off_steps(events)
    done = [int(n) for n in effects.read_text().split()]
    assert once_in_order(done, cut_off), (done, cut_off)
    # And the working directory went on from segment to segment: the file the steps appended
    # to in it holds every step, once, in order
    found = re.fullmatch(rf"all {STEPS} steps done; workspace ([0-9,]+),", job["result"]["text"])
    assert found is not None, job
    assert once_in_order([int(n) for n in found.group(1).split(",")], cut_off), (job, cut_off)
    assert job["segments"] >= 2, job
    assert job["attempts"] == 1
    assert job["usage"]["num_turns"] >= STEPS + 1
    # And each turn counted was a model call (a boundary costs the call it paused, no more)
    assert job["usage"]["num_turns"] <= len(steps_model.message_requests), job
    # And the stack never hit a worker timeout (each segment ended before its invocation)
    assert "Task timed out" not in short_stack.output()
    # And its progress events span the segments in one order: seqs strictly increasing, each
    # step's tool call (a call refused at a segment's boundary is asked for again by the next
    # segment), `running` once per segment (numbered from the second on), one ending
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), seqs
    commands = [e["input"] for e in events if e["type"] == "tool_use"]
    assert len(set(commands)) == STEPS + 1, commands  # and the read-back
    assert len(commands) <= STEPS + 1 + job["segments"] - 1, commands
    running = [e for e in events if e["type"] == "status" and e["status"] == "running"]
    assert len(running) == job["segments"], running
    assert [e.get("segment") for e in running[1:]] == list(range(2, job["segments"] + 1))
    assert [e["status"] for e in events if e["type"] == "status"][-1] == "succeeded"
