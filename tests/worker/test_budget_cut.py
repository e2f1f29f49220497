"""A hostile agent that hangs up on long streamed answers to dodge the meter, through the real
CLI: its Bash asks the proxy (with the job's own token) for answers far over its budget and cuts
each stream after a few KB. The proxy reads every answer to its end anyway, lowers `max_tokens`
to what the budget can pay for, and the job's record carries what the model produced."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs.models import JobStatus
from claude_jobs_tools.local.fake_anthropic import RecordedRequest, Reply, Text, ToolUse, Usage
from tests.worker.conftest import BEDROCK_MODELS, WorkerStack

pytestmark = pytest.mark.cli

#: Sonnet 4.5 (the deployment's default model), USD per output token.
OUTPUT = 15e-6
BUDGET = 0.50
#: Output tokens an essay is worth asking for: $0.90 each at Sonnet's price.
ASKED = 60_000
ATTEMPTS = 12
ESSAY_PROMPT = "Write the longest essay you can."

ANTHROPIC_BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": ASKED,
        "stream": True,
        "messages": [{"role": "user", "content": ESSAY_PROMPT}],
    }
)
BEDROCK_BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": ASKED,
        "messages": [{"role": "user", "content": ESSAY_PROMPT}],
    }
)


def cutting_attack(report: Path, *, bedrock: bool) -> str:
    """Bash for the agent: ATTEMPTS streamed calls with the job's token, each cut after 3 KB
    (`head` exits, curl dies of SIGPIPE and the connection closes); prints each status line."""
    if bedrock:
        url = f'"$ANTHROPIC_BEDROCK_BASE_URL/model/{BEDROCK_MODELS["claude-sonnet-4-5"]}/invoke-with-response-stream"'
        auth, body = '-H "$ANTHROPIC_CUSTOM_HEADERS"', BEDROCK_BODY
    else:
        url, auth, body = (
            '"$ANTHROPIC_BASE_URL/v1/messages"',
            '-H "x-api-key: $ANTHROPIC_API_KEY"',
            ANTHROPIC_BODY,
        )
    return (
        f"b='{body}'; for i in $(seq {ATTEMPTS}); do "
        f'echo "$i $(curl -sN -D - -m 30 {auth} -H "content-type: application/json" '
        f'-d "$b" {url} | head -c 3000 | head -1)"; done > {report} 2>&1'
    )  # fmt: skip


class Essayist:
    """A scripted model that decides from the conversation it receives: the job's prompt →
    run the attack in Bash; a tool result → done; a request for an essay → as long an essay
    as its `max_tokens` allows (four characters a token, up to ASKED)."""

    def __init__(self, attack: str) -> None:
        self.attack = attack
        self.essays: list[int] = []  # output tokens of each essay written

    def __call__(self, request: RecordedRequest) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if request.tool_results():
            return Text("done")
        if ESSAY_PROMPT in request.prompt_text():
            tokens = min(int(body.get("max_tokens") or 0), ASKED)
            self.essays.append(tokens)
            return Text(
                "text" * tokens,
                usage=Usage(input_tokens=20, output_tokens=tokens),
                chunk_chars=256,
                stop_reason="max_tokens",
            )
        return ToolUse("Bash", {"command": self.attack})


@pytest.fixture
def report() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="cj-cut-"))
    os.chmod(directory, 0o777)  # noqa: S103 - the agent's uid writes the report
    yield directory / "report.txt"
    shutil.rmtree(directory, ignore_errors=True)


def essays_sent(stack: WorkerStack) -> list[RecordedRequest]:
    return [r for r in stack.fake.message_requests if ESSAY_PROMPT in r.prompt_text()]


def assert_the_cut_streams_were_metered(
    stack: WorkerStack, essayist: Essayist, report: Path, job_id: str
) -> None:
    statuses = [line.split(" ", 2)[1:] for line in report.read_text().splitlines()]
    codes = [s[1].split()[0] if len(s) > 1 else "" for s in statuses]
    # The agent's calls were answered (and cut short by itself) until the budget was spent,
    # then refused
    assert len(codes) == ATTEMPTS, report.read_text()
    answered = codes.count("200")
    assert codes == ["200"] * answered + codes[answered:], report.read_text()
    assert set(codes[answered:]) <= {"402", "429"}, report.read_text()
    # At most one call went past the budget: the essays that reached the model had their
    # max_tokens lowered from $0.90 worth to what was left, and all but the last fit in it
    sent = essays_sent(stack)
    assert 1 <= len(sent) == answered <= 2
    assert all(r.body["max_tokens"] < ASKED for r in sent)
    assert sum(essayist.essays[:-1]) * OUTPUT <= BUDGET
    assert sent[-1].body["max_tokens"] * OUTPUT <= BUDGET
    # And the job's recorded cost covers every token the model produced (not just the input)
    done = stack.repo.get(job_id)
    assert done is not None and done.usage is not None
    produced = sum(essayist.essays) * OUTPUT
    assert produced > BUDGET * 0.9
    assert done.usage.total_cost_usd >= produced
    assert done.usage.output_tokens >= sum(essayist.essays)
    # And the budget held: at most one call's floor past it
    assert done.usage.total_cost_usd <= BUDGET + 2048 * OUTPUT
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "budget_exceeded"


def test_cutting_streams_short_does_not_dodge_the_meter(stack: WorkerStack, report: Path) -> None:
    # Given a $0.50 job whose agent asks the proxy for twelve $0.90 essays, streamed, and
    # hangs up on each after 3 KB
    job = stack.submit(allowed_tools=["Bash"], max_budget_usd=BUDGET, prompt="Run the benchmark.")
    essayist = Essayist(cutting_attack(report, bedrock=False))
    stack.fake.default = essayist
    # When it runs
    answer = stack.deliver(job)
    # Then one essay reached the model and was metered to its end; the rest were refused
    assert answer == {"batchItemFailures": []}
    assert_the_cut_streams_were_metered(stack, essayist, report, job.job_id)


def test_cutting_streams_short_does_not_dodge_the_meter_on_bedrock(
    bedrock_stack: WorkerStack, report: Path
) -> None:
    # Given the same agent on a Bedrock deployment (event-stream answers)
    stack = bedrock_stack
    job = stack.submit(allowed_tools=["Bash"], max_budget_usd=BUDGET, prompt="Run the benchmark.")
    essayist = Essayist(cutting_attack(report, bedrock=True))
    stack.fake.default = essayist
    # When it runs
    answer = stack.deliver(job)
    # Then, as on the Messages API, the one essay it got was metered to its end
    assert answer == {"batchItemFailures": []}
    assert_the_cut_streams_were_metered(stack, essayist, report, job.job_id)
