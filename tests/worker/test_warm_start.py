"""Warm start (worker/warm.py), through the real CLI and SDK: the CLI a job gets may have been
started before the job was known, and then it must be exactly what a cold start would have
given the job — and hold nothing of any other job.

The worker runs in this test's process with a Lambda-like environment (one user for worker and
agent as a non-root developer; a uid per job as root), the fake Messages API as its upstream.
`test_image.py` runs the hostile-agent attacks against a warm-started job in the image layout.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from claude_jobs.models import JobStatus
from claude_jobs.worker.processor import JobProcessor
from claude_jobs.worker.warm import WarmCli
from claude_jobs_tools.local.fake_anthropic import RecordedRequest, Text, ToolUse
from tests.worker.conftest import REAL_KEY, WorkerStack

pytestmark = pytest.mark.cli

#: A Bash command whose output names the process that runs the agent's tools: the CLI.
CLI_PID = "echo cli=$PPID"


def processor(stack: WorkerStack) -> JobProcessor:
    return stack.function.processor


def warm_cli(stack: WorkerStack) -> WarmCli:
    warm = processor(stack).warm_pool.current
    assert warm is not None, "no warm CLI was started"
    return warm


def proc_text(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b"\n").decode()


def system_prompt(call: RecordedRequest) -> str:
    """The system prompt a call carried, but the per-request billing header and the sandbox's
    name (a cold start's is named after its job, a warm one's is not)."""
    blocks = [b["text"] for b in call.body["system"] if not b["text"].startswith("x-anthropic")]
    return re.sub(r"claude-job-[\w-]+", "<sandbox>", "\n".join(blocks))


def reported_cli_pid(stack: WorkerStack, request_index: int) -> int:
    result = stack.fake.message_requests[request_index].tool_results()[0]
    text = str(result["content"])
    assert "cli=" in text, result
    return int(text.split("cli=")[1].split()[0])


def test_a_warm_cli_holds_nothing_of_the_last_job_and_runs_the_next(
    warm_stack: WorkerStack,
) -> None:
    stack = warm_stack
    # Given a first job that leaves traces of its secret in its working directory and HOME
    secret = f"launch code {uuid.uuid4().hex}"
    first = stack.submit(f"Remember: {secret}", allowed_tools=["Bash"])
    stack.fake.script(
        ToolUse("Bash", {"command": f"echo '{secret}' > note.txt; echo '{secret}' > ~/note"}),
        Text("noted"),
    )
    assert stack.deliver(first) == {"batchItemFailures": []}
    assert stack.get(first).status is JobStatus.SUCCEEDED
    # When the worker has started the CLI for the next job
    warm = warm_cli(stack)
    assert warm.process.alive
    # Then that CLI holds nothing of the first job: not its prompt, its token, or the key
    seen = proc_text(warm.process.pid, "cmdline") + proc_text(warm.process.pid, "environ")
    first_token = stack.fake.message_requests[0].headers.get("x-api-key")
    assert secret not in seen and REAL_KEY not in seen
    assert first.job_id not in seen and (first_token is None or first_token not in seen)
    assert warm.token in seen  # its own token, bound to no job
    # And it runs in a fresh sandbox, where nothing the first agent wrote is
    files = [p for p in warm.sandbox.root.rglob("*") if p.is_file()] if warm.sandbox.root else []
    assert all(secret not in p.read_text(errors="replace") for p in files)
    assert not (warm.sandbox.work_dir / "note.txt").exists()
    # And its token may spend nothing before a job adopts it
    meter = processor(stack).ports.proxy.meter_for(warm.token)  # type: ignore[attr-defined]
    assert meter is not None and meter.job_id == "" and meter.admit() == "budget"

    # When a second job with the same options arrives
    second = stack.submit("Who runs your tools?", allowed_tools=["Bash"])
    before = len(stack.fake.message_requests)
    stack.fake.script(ToolUse("Bash", {"command": CLI_PID}), Text("done"))
    assert stack.deliver(second) == {"batchItemFailures": []}
    # Then it ran in the warm CLI, with its own prompt and its token bound to it
    done = stack.get(second)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert reported_cli_pid(stack, before + 1) == warm.process.pid
    assert "Who runs your tools?" in stack.fake.message_requests[before].prompt_text()
    assert secret not in json.dumps(stack.fake.message_requests[before].body)
    # And its usage was metered through the adopted token
    assert done.usage is not None and done.usage.total_cost_usd > 0
    # And the next warm CLI is another process with another token
    after = warm_cli(stack)
    assert after.process.pid != warm.process.pid and after.token != warm.token
    assert not warm.process.alive  # the adopted CLI ended with its job


def test_a_job_that_does_not_fit_stops_the_warm_cli_before_its_agent_runs(
    warm_stack: WorkerStack,
) -> None:
    stack = warm_stack
    first = stack.submit("One.", allowed_tools=[])
    stack.fake.script(Text("one"))
    stack.deliver(first)
    warm = warm_cli(stack)
    # When the next job asks for other tools than the warm CLI was started with
    second = stack.submit("Is the other CLI there?", allowed_tools=["Bash"])
    probe = f"test -e /proc/{warm.process.pid}/cmdline && echo alive || echo gone; {CLI_PID}"
    before = len(stack.fake.message_requests)
    stack.fake.script(ToolUse("Bash", {"command": probe}), Text("done"))
    stack.deliver(second)
    # Then it ran in a CLI started for it, and the warm one was gone before its agent ran
    assert stack.get(second).status is JobStatus.SUCCEEDED
    result = str(stack.fake.message_requests[before + 1].tool_results()[0]["content"])
    assert "gone" in result and "alive" not in result, result
    assert reported_cli_pid(stack, before + 1) != warm.process.pid
    assert warm.sandbox.root is None  # removed


def test_a_warm_started_job_keeps_its_session_for_the_next_job(warm_stack: WorkerStack) -> None:
    stack = warm_stack
    stack.deliver(stack.submit("Warm the worker up.", allowed_tools=[]))
    warm = warm_cli(stack)
    # Given a job in a fresh session, run by the warm CLI (started under an id of its own)
    first = stack.submit("The password is tangerine.", allowed_tools=[])
    stack.fake.script(Text("I will remember it."))
    stack.deliver(first)
    done = stack.get(first)
    assert done.status is JobStatus.SUCCEEDED and done.session_id is not None
    assert warm.session_id is not None and warm.session_id != done.session_id
    # When the next job continues that session
    second = stack.submit("What is the password?", allowed_tools=[], session_id=done.session_id)
    before = len(stack.fake.message_requests)
    stack.fake.script(Text("tangerine"))
    stack.deliver(second)
    # Then the model saw the first exchange: the session was stored under the job's id
    assert stack.get(second).status is JobStatus.SUCCEEDED, stack.get(second).error
    conversation = json.dumps(stack.fake.message_requests[before].body)
    assert "The password is tangerine." in conversation
    assert "I will remember it." in conversation
    assert warm.session_id not in conversation


def test_shutdown_ends_the_warm_cli_and_its_sandbox(warm_stack: WorkerStack) -> None:
    stack = warm_stack
    stack.deliver(stack.submit("Hello.", allowed_tools=[]))
    warm = warm_cli(stack)
    root = warm.sandbox.root
    assert root is not None and root.exists()
    stack.function.shutdown()
    assert not warm.process.alive
    assert not root.exists()
    assert processor(stack).warm_pool.current is None
    assert processor(stack).ports.proxy.meter_for(warm.token) is None  # type: ignore[attr-defined]


def test_without_warm_start_no_cli_is_left_between_jobs(stack: WorkerStack) -> None:
    stack.deliver(stack.submit("Hello.", allowed_tools=[]))
    assert processor(stack).warm_pool.current is None
    assert os.environ.get("WARM_START") is None


def test_a_warm_started_job_gets_what_a_cold_start_gives_it(warm_stack: WorkerStack) -> None:
    stack = warm_stack
    tools = ["Read", "Glob", "Grep", "Bash"]
    # Given a job started cold, then one of the same options in the CLI started ahead
    stack.fake.script(Text("cold"))
    stack.deliver(stack.submit("First.", allowed_tools=tools))
    warm = warm_cli(stack)
    stack.fake.script(ToolUse("Grep", {"pattern": "needle"}), ToolUse("Bash", {"command": CLI_PID}))
    stack.fake.script(Text("warm"))
    stack.deliver(stack.submit("Second.", allowed_tools=tools))
    cold_call, warm_call = stack.fake.message_requests[0], stack.fake.message_requests[1]
    # Then the model was offered the same tools, the same system prompt and model
    assert sorted(warm_call.tool_names) == sorted(cold_call.tool_names)
    assert {"Read", "Glob", "Grep", "Bash"} <= set(warm_call.tool_names)
    assert system_prompt(warm_call) == system_prompt(cold_call)
    assert warm_call.body["model"] == cold_call.body["model"]
    # And its tools ran (in the warm CLI)
    grep = stack.fake.message_requests[2].tool_results()[0]
    assert not grep.get("is_error"), grep
    assert reported_cli_pid(stack, 3) == warm.process.pid


def test_an_invocation_nearly_out_of_time_starts_no_warm_cli(warm_stack: WorkerStack) -> None:
    from tests.worker.conftest import LambdaContext

    stack = warm_stack
    job = stack.submit("Hello.", allowed_tools=[])
    stack.fake.script(Text("hello"))
    # With plenty of time a job leaves a warm CLI behind
    stack.deliver(job)
    assert processor(stack).warm_pool.current is not None
    processor(stack).warm_pool.discard()
    # But an invocation with a few seconds left (too few to run a job: it is retried) starts
    # none: it must not time out waiting for a CLI to boot
    late = stack.submit("Too late.", allowed_tools=[])
    answer = stack.deliver(late, LambdaContext(remaining_ms=6_000))
    assert len(answer["batchItemFailures"]) == 1
    assert processor(stack).warm_pool.current is None
