"""A hostile agent against the key proxy, through the real CLI: its Bash calls the proxy
directly with its own token. It can reach only the Messages API, it cannot spend past its
budget, and what it spent is on the job's record — even when the job is stopped."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs.models import JobStatus
from claude_jobs.worker.processor import JobProcessor
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse, Usage
from tests.worker.conftest import WorkerStack

pytestmark = pytest.mark.cli

BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
#: A shell function for the agent's Bash: `call NAME [curl args…] URL` prints "NAME STATUS".
CALL = (
    "call() { name=$1; shift; "
    'curl -s -o /dev/null -w "$name %{http_code}\\n" --path-as-is -m 20 '
    '-H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" "$@"; }; '
    f"b='{BODY}'; u=$ANTHROPIC_BASE_URL; "
)

#: Sonnet 4.5 (the deployment's default model), USD per token.
INPUT, OUTPUT, CACHE_WRITE, CACHE_READ = 3e-6, 15e-6, 3.75e-6, 0.3e-6


def cost(usage: Usage) -> float:
    return (
        usage.input_tokens * INPUT
        + usage.output_tokens * OUTPUT
        + usage.cache_creation_input_tokens * CACHE_WRITE
        + usage.cache_read_input_tokens * CACHE_READ
    )


@pytest.fixture
def report() -> Iterator[Path]:
    """A file outside the sandbox where the agent's Bash writes what it saw (in a directory of
    the test's own: what a job leaves at the top of /tmp goes with the job)."""
    directory = Path(tempfile.mkdtemp(prefix="cj-hostile-"))
    os.chmod(directory, 0o777)  # noqa: S103 - the agent's uid writes the report
    yield directory / "report.txt"
    shutil.rmtree(directory, ignore_errors=True)


def _statuses(text: str) -> dict[str, str]:
    return dict(line.split() for line in text.splitlines() if len(line.split()) == 2)


def test_the_agent_reaches_nothing_but_the_messages_api_with_its_token(
    stack: WorkerStack,
) -> None:
    # Given a job whose agent may run Bash, and calls the proxy itself with its own token:
    # every forbidden path, method and trick, and one allowed call as a control
    job = stack.submit(allowed_tools=["Bash"])
    probes = CALL + " ".join(
        f"{probe};"
        for probe in [
            'call batches -X POST -d "$b" "$u/v1/messages/batches"',
            'call batches-beta -X POST -d "$b" "$u/v1/messages/batches?beta=true"',
            'call files-list "$u/v1/files"',
            'call files-upload -X POST -d "$b" "$u/v1/files"',
            'call models "$u/v1/models"',
            'call complete -X POST -d "$b" "$u/v1/complete"',
            'call get-messages "$u/v1/messages"',
            'call put-messages -X PUT -d "$b" "$u/v1/messages"',
            'call delete-messages -X DELETE "$u/v1/messages"',
            'call patch-count -X PATCH -d "$b" "$u/v1/messages/count_tokens"',
            'call dotdot -X POST -d "$b" "$u/v1/messages/../files"',
            'call pct-dotdot -X POST -d "$b" "$u/v1/messages/%2e%2e/files"',
            'call x-dotdot -X POST -d "$b" "$u/v1/x/../messages/batches"',
            'call double-slash -X POST -d "$b" "$u//v1/messages/batches"',
            'call enc-slash -X POST -d "$b" "$u/v1/messages%2fbatches"',
            'call absolute -X POST -d "$b" --request-target http://evil.example/v1/files "$u/"',
            'call bearer-models -H "authorization: Bearer $ANTHROPIC_API_KEY" "$u/v1/models"',
            'call control -X POST -d "$b" "$u/v1/messages"',
        ]
    )
    stack.fake.script(ToolUse("Bash", {"command": probes}), Text("direct call answer"), Text("ok"))
    # When it runs
    stack.deliver(job)
    # Then every probe was refused by the proxy with a 4xx, and the control went through
    output = stack.fake.message_requests[-1].tool_results()[0]["content"]
    statuses = _statuses(output)
    assert statuses.pop("control") == "200", output
    assert len(statuses) == 17, output
    assert all(status.startswith("4") for status in statuses.values()), output
    # And the upstream received only Messages calls: the CLI's two and the control
    assert [(r.method, r.path.split("?")[0]) for r in stack.fake.requests] == [
        ("POST", "/v1/messages")
    ] * 3
    assert stack.get(job).status is JobStatus.SUCCEEDED


def test_an_agent_cannot_overspend_its_budget_with_direct_calls(
    stack: WorkerStack, report: Path
) -> None:
    # Given a job with a $0.05 budget whose agent calls the Messages API itself in a loop,
    # each answer costing $0.03
    job = stack.submit(allowed_tools=["Bash"], max_budget_usd=0.05)
    loop = (
        CALL + 'for i in 1 2 3 4 5 6 7 8; do call "$i" -X POST -d "$b" "$u/v1/messages"; '
        f"done > {report} 2>&1"
    )
    first = Usage()  # the CLI's own first call
    direct = Usage(input_tokens=10_000, output_tokens=0)
    stack.fake.script(ToolUse("Bash", {"command": loop}, usage=first))
    stack.fake.default = Text("spent", usage=direct)
    # When it runs
    answer = stack.deliver(job)
    # Then two direct calls went through (the second crossed the budget) and the proxy refused
    # the rest with 402, the CLI's own next call included
    statuses = _statuses(report.read_text())
    assert [statuses[str(i)] for i in range(1, 9)] == ["200", "200"] + ["402"] * 6
    assert len(stack.fake.message_requests) == 3  # the CLI's first call + two direct ones
    # And the job ended failed with budget_exceeded (not retried, not looping), its recorded
    # cost being the metered spend, the agent's direct calls included
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "budget_exceeded"
    assert "budget" in done.error.message
    assert done.usage is not None
    assert done.usage.total_cost_usd == pytest.approx(cost(first) + 2 * cost(direct))
    assert done.usage.input_tokens == first.input_tokens + 2 * direct.input_tokens


def test_the_deployment_cap_bounds_a_job_without_a_budget(
    stack: WorkerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment whose cap is $0.02 and a job with no budget of its own
    settings = stack.container.settings.model_copy(update={"max_budget_usd_cap": 0.02})
    ports = dataclasses.replace(stack.function.processor.ports, settings=settings)
    monkeypatch.setattr(stack.function, "processor", JobProcessor(ports))
    job = stack.submit(allowed_tools=["Read"])
    expensive = Usage(input_tokens=10_000)  # $0.03: past the cap in one call
    stack.fake.script(ToolUse("Read", {"file_path": "/etc/hostname"}, usage=expensive))
    stack.fake.default = Text("never reached")
    # When it runs
    stack.deliver(job)
    # Then its second call was refused: the upstream saw one call only
    assert len(stack.fake.message_requests) == 1
    done = stack.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "budget_exceeded"
    assert done.usage is not None and done.usage.total_cost_usd == pytest.approx(cost(expensive))


def test_a_finished_job_records_the_agents_direct_spend_too(stack: WorkerStack) -> None:
    # Given an agent that makes one direct call besides the CLI's two
    job = stack.submit(allowed_tools=["Bash"])
    cli_first = Usage(input_tokens=120, output_tokens=9)
    direct = Usage(input_tokens=20_000, output_tokens=100)
    cli_last = Usage(input_tokens=300, output_tokens=5, cache_read_input_tokens=200)
    stack.fake.script(
        ToolUse("Bash", {"command": CALL + 'call direct -X POST -d "$b" "$u/v1/messages"'},
                usage=cli_first),
        Text("direct answer", usage=direct),
        Text("done", usage=cli_last),
    )  # fmt: skip
    # When it runs
    stack.deliver(job)
    # Then the recorded cost is the metered one (the CLI's own figure lacks the direct call),
    # priced with the price table
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED and done.usage is not None
    assert done.usage.total_cost_usd == pytest.approx(
        cost(cli_first) + cost(direct) + cost(cli_last)
    )
    assert done.usage.input_tokens == 120 + 20_000 + 300
    assert done.usage.output_tokens == 9 + 100 + 5
    assert done.usage.num_turns == 2  # the CLI's figure


EXPENSIVE = Usage(
    input_tokens=50_000,
    output_tokens=2_000,
    cache_read_input_tokens=10_000,
    cache_creation_input_tokens=3_000,
)


def test_a_timed_out_job_records_its_metered_cost(stack: WorkerStack) -> None:
    # Given a model whose first turn costs something and whose second never comes in time
    job = stack.submit(allowed_tools=["Read"], timeout_seconds=10)
    stack.fake.script(
        ToolUse("Read", {"file_path": "/etc/hostname"}, usage=EXPENSIVE),
        Text("too late", delay=60),
    )
    # When the worker runs it (its deadline: 10 s)
    stack.deliver(job)
    # Then it timed out, and its record carries the first turn's tokens and metered cost
    done = stack.get(job)
    assert done.status is JobStatus.TIMED_OUT
    assert len(stack.fake.message_requests) == 2
    assert done.usage is not None
    assert done.usage.total_cost_usd == pytest.approx(cost(EXPENSIVE))
    assert (done.usage.input_tokens, done.usage.output_tokens) == (50_000, 2_000)
    assert done.usage.cache_read_input_tokens == 10_000
    assert done.usage.cache_creation_input_tokens == 3_000


def test_a_cancelled_job_records_its_metered_cost(stack: WorkerStack) -> None:
    # Given a running job whose first turn cost something and whose second is slow
    job = stack.submit(allowed_tools=["Read"])
    stack.fake.script(
        ToolUse("Read", {"file_path": "/etc/hostname"}, usage=EXPENSIVE),
        Text("never delivered", delay=60),
    )
    thread, answer = stack.deliver_in_thread(job)
    _wait_for(lambda: len(stack.fake.message_requests) >= 2)
    # When the caller cancels it
    stack.container.job_service.cancel(stack.tenant, job.job_id)
    thread.join(timeout=30)
    # Then it ended cancelled with the metered cost of what it used
    assert not thread.is_alive() and answer == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.CANCELLED
    assert done.usage is not None
    assert done.usage.total_cost_usd == pytest.approx(cost(EXPENSIVE))
    assert done.usage.input_tokens == 50_000


def _wait_for(condition: object, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")
