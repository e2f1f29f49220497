"""A hostile agent that hangs up on long streamed answers to dodge the meter, through the real
CLI: its Bash asks the proxy (with the job's own token) for answers far over its budget and cuts
each stream after a few KB. The proxy reads every answer to its end anyway, lowers `max_tokens`
to what the budget can pay for, and the job's record carries what the model produced."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.wiring import Container
from claude_jobs_tools.local.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    ToolUse,
    Usage,
)
from tests.worker.conftest import BEDROCK_MODELS, REAL_KEY, WorkerStack, sqs_event
from tests.worker.image_layout import (
    kill_all,
    live_processes_with,
    required_runtime_python,
    run_warm,
    worker_env,
)

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
        profile = BEDROCK_MODELS["claude-sonnet-4-5"]
        url = f'"$ANTHROPIC_BEDROCK_BASE_URL/model/{profile}/invoke-with-response-stream"'
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
    assert codes[0] == "200" and set(codes) <= {"200", "402", "429"}, report.read_text()
    spent = codes.index("402") if "402" in codes else len(codes)
    assert "200" not in codes[spent:], report.read_text()  # spent is spent
    answered = codes.count("200")
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


# ------------------------------------------------------------------ the forwarding allowlist

ALLOWED = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}],
}
#: name → (body changes, extra curl headers): each must be refused or stripped by the proxy.
FORBIDDEN: dict[str, tuple[dict[str, object], str]] = {
    "model": ({"model": "claude-opus-4-1"}, ""),
    "speed": ({"speed": "fast"}, ""),
    "geo": ({"inference_geo": "us"}, ""),
    "tier": ({"service_tier": "priority"}, ""),
    "container": ({"container": "container_shared_123"}, ""),
    "mcp": ({"mcp_servers": [{"type": "url", "url": "https://x.test/mcp", "name": "x"}]}, ""),
    "unknown": ({"future_option": True}, ""),
    "file": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "file", "file_id": "file_x"}}
                    ],
                }
            ]
        },
        "",
    ),
    "beta": ({}, '-H "anthropic-beta: files-api-2025-04-14"'),
}
SMUGGLED_HEADER = "anthropic-workspace-id"


def allowlist_probes(report: Path) -> str:
    lines = ["u=$ANTHROPIC_BASE_URL"]
    for name, (changes, extra) in {"control": ({}, ""), **FORBIDDEN}.items():
        body = json.dumps({**ALLOWED, **changes})
        lines.append(
            f"curl -s -o /dev/null -w '{name} %{{http_code}}\\n' -m 20 "
            f'-H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" {extra} '
            f"-H '{SMUGGLED_HEADER}: wrkspc_other' -d '{body}' \"$u/v1/messages\""
        )
    return "(" + "; ".join(lines) + f") > {report} 2>&1"


def test_what_is_not_on_the_allowlist_never_reaches_the_upstream(
    stack: WorkerStack, report: Path
) -> None:
    # Given a job whose agent calls the proxy with its token: once as the CLI would, then with
    # another model, a price-changing or shared-state field, a Files API source, an unknown
    # beta, each with a header that is not on the list
    job = stack.submit(allowed_tools=["Bash"], prompt="Probe the proxy.")
    stack.fake.script(ToolUse("Bash", {"command": allowlist_probes(report)}))
    stack.fake.default = lambda request: (
        Text("probed") if request.tool_results() else Text("ok", usage=Usage(12, 1))
    )
    # When it runs
    stack.deliver(job)
    # Then only the control call was forwarded; every forbidden one was a 400
    codes = dict(line.split() for line in report.read_text().splitlines())
    assert codes == {"control": "200", **dict.fromkeys(FORBIDDEN, "400")}, codes
    # And nothing forbidden reached the upstream: no other model, field or beta, and the
    # header not on the list was dropped (from the CLI's calls too)
    seen = stack.fake.requests
    assert len(seen) == 3  # the CLI's two calls and the control call
    for request in seen:
        assert request.body["model"] == "claude-sonnet-4-5"
        assert not {"speed", "inference_geo", "service_tier", "container", "mcp_servers"} & set(
            request.body
        )
        assert "files-api" not in request.headers.get("anthropic-beta", "")
        assert SMUGGLED_HEADER not in request.headers
        assert '"file"' not in request.raw.decode()
    # And the CLI's own multi-turn job (a tool call, then an answer) went through the
    # allowlist untouched and succeeded
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED and done.result is not None
    assert done.result.text == "probed"
    assert "claude-code-20250219" in seen[0].headers.get("anthropic-beta", "")


def test_what_is_not_on_the_allowlist_never_reaches_bedrock(
    bedrock_stack: WorkerStack, report: Path
) -> None:
    # Given a Bedrock job whose agent invokes its model with a price-changing field, an
    # unknown beta in the body, and a Files API source
    stack = bedrock_stack
    job = stack.submit(allowed_tools=["Bash"], prompt="Probe the proxy.")
    base = {k: v for k, v in ALLOWED.items() if k != "model"}
    base["anthropic_version"] = "bedrock-2023-05-31"
    probes = {
        "control": base,
        "speed": {**base, "speed": "fast"},
        "beta": {**base, "anthropic_beta": ["files-api-2025-04-14"]},
        "file": {**base, "messages": FORBIDDEN["file"][0]["messages"]},
    }
    url = f"$ANTHROPIC_BEDROCK_BASE_URL/model/{BEDROCK_MODELS['claude-sonnet-4-5']}/invoke"
    command = "(" + "; ".join(
        f"curl -s -o /dev/null -w '{name} %{{http_code}}\\n' -m 20 "
        f'-H "$ANTHROPIC_CUSTOM_HEADERS" -H "content-type: application/json" '
        f"-d '{json.dumps(body)}' \"{url}\""
        for name, body in probes.items()
    ) + f") > {report} 2>&1"  # fmt: skip
    stack.fake.script(ToolUse("Bash", {"command": command}))
    stack.fake.default = lambda request: (
        Text("probed") if request.tool_results() else Text("ok", usage=Usage(12, 1))
    )
    # When it runs
    stack.deliver(job)
    # Then only the control invocation was forwarded, and the CLI's own job succeeded
    codes = dict(line.split() for line in report.read_text().splitlines())
    assert codes == {"control": "200", "speed": "400", "beta": "400", "file": "400"}, codes
    seen = stack.fake.message_requests
    assert len(seen) == 3
    assert not any("speed" in r.body or '"file"' in r.raw.decode() for r in seen)
    assert not any("files-api" in str(r.body.get("anthropic_beta")) for r in seen)
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED and done.result is not None
    assert done.result.text == "probed"


# ------------------------------------------------------------------ the image layout


@pytest.fixture
def shared_report() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="cj-image-cut-"))
    os.chmod(directory, 0o777)  # noqa: S103 - the runtime user writes the report
    yield directory / "report.txt"
    shutil.rmtree(directory, ignore_errors=True)


def test_in_the_image_layout_cutting_streams_short_does_not_dodge_the_meter(
    task_root: Path, image_site: Path, moto_server: str, shared_report: Path
) -> None:
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    # Given the worker as its image runs it (one non-root user for worker and agent, a warm
    # worker reused for the next job), a $0.50 job whose agent cuts twelve $0.90 essays short,
    # then an ordinary job with a tool call
    essayist = Essayist(cutting_attack(shared_report, bedrock=False))

    def model(request: RecordedRequest) -> Reply:
        if "Run the benchmark." in request.prompt_text() or ESSAY_PROMPT in request.prompt_text():
            return essayist(request)
        if request.tool_results():
            return Text("listed")
        return ToolUse("Bash", {"command": "echo fine"})

    with FakeAnthropic(api_key=REAL_KEY, default=model) as fake:
        provisioned = provision("imgcut", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        submit = container.job_service.submit
        hostile = submit(
            "tenant-img",
            JobRequest(prompt="Run the benchmark.", allowed_tools=["Bash"], max_budget_usd=BUDGET),
        ).job
        ordinary = submit(
            "tenant-img", JobRequest(prompt="List things.", allowed_tools=["Bash"])
        ).job
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
        # When one warm worker process handles both, as the runtime user
        run = run_warm(python, task_root, env, [sqs_event(hostile), sqs_event(ordinary, "m2")])
        assert run.returncode == 0, run.stderr[-3000:]
        # Then the hostile job got at most one call past its budget, and its record carries
        # every token the model produced
        essays = [r for r in fake.message_requests if ESSAY_PROMPT in r.prompt_text()]
        codes = [line.split()[2] for line in shared_report.read_text().splitlines()]
        assert codes[0] == "200" and set(codes) <= {"200", "402", "429"}, codes
        spent = codes.index("402") if "402" in codes else len(codes)
        assert "200" not in codes[spent:], codes  # spent is spent
        answered = codes.count("200")
        assert 1 <= answered <= 2, codes
        assert len(essays) == answered
        assert all(r.body["max_tokens"] < ASKED for r in essays)
        assert sum(essayist.essays[:-1]) * OUTPUT <= BUDGET
        done = container.job_repository.get(hostile.job_id)
        assert done is not None and done.usage is not None, run.stdout[-6000:]
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "budget_exceeded"
        produced = sum(essayist.essays) * OUTPUT
        assert produced > BUDGET * 0.9
        assert done.usage.total_cost_usd >= produced
        assert done.usage.total_cost_usd <= BUDGET + 2048 * OUTPUT
        # And the next job, in the same warm worker, went through the allowlist and succeeded
        after = container.job_repository.get(ordinary.job_id)
        assert after is not None and after.status is JobStatus.SUCCEEDED, after
        assert after.result is not None and after.result.text == "listed"


#: The agent's Bash, on its first run only (a marker file outside the sandbox): kill its nearest
#: ancestor that is a Python interpreter — the worker (its CLI's parent), which on Lambda runs
#: as the agent's own user. On a later attempt it reports and goes on.
KILL_THE_WORKER_ONCE = (
    "if [ -e {marker} ]; then echo step-done; exit 0; fi; touch {marker}; "
    "p=$$; while p=$(awk '{{print $4}}' /proc/$p/stat) && [ \"$p\" -gt 1 ]; do "
    "if tr '\\0' '\\n' < /proc/$p/cmdline | head -1 | grep -q 'python[0-9.]*$'; "
    "then kill -9 $p; break; fi; done; "
    "sleep 30"
)
#: One model turn of about $0.03 (1,000 input tokens at $3/M, 1,800 output at $15/M).
TURN = Usage(input_tokens=1000, output_tokens=1800)
TURN_USD = 1000 * 3e-6 + 1800 * OUTPUT


def test_in_the_image_layout_an_agent_that_kills_its_worker_gets_no_fresh_budget(
    task_root: Path, image_site: Path, moto_server: str, shared_report: Path
) -> None:
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    command = KILL_THE_WORKER_ONCE.format(marker=shared_report.parent / "killed-once")

    def model(request: RecordedRequest) -> Reply:
        # decides from the conversation: a Bash step, then its answer once it sees the output
        if any("step-done" in r["content"] for r in request.tool_results()):
            return Text("finished", usage=TURN)
        return ToolUse("Bash", {"command": command}, usage=TURN)

    # Given the worker as its image runs it (one non-root user for worker and agent) and a
    # $0.05 job whose agent, after a $0.03 turn, kills its worker before anything is recorded
    with FakeAnthropic(api_key=REAL_KEY, default=model) as fake:
        provisioned = provision("imgdie", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        request = JobRequest(prompt="Spend.", allowed_tools=["Bash"], max_budget_usd=0.05)
        job = container.job_service.submit("tenant-img", request).job
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
        try:
            first = run_warm(python, task_root, env, [sqs_event(job)])
        finally:
            kill_all(live_processes_with("sleep 30"))  # what it left of its agent
        assert first.returncode == -9, first.stderr[-3000:]
        left = container.job_repository.get(job.job_id)
        assert left is not None and left.status is JobStatus.RUNNING and left.usage is None
        assert len(fake.message_requests) == 1
        # When the job's lease has expired and its message comes back to a fresh worker
        container.job_repository.update(
            job.job_id,
            set_fields={"lease_until": int(time.time()) - 5},
            expected_status=[JobStatus.RUNNING],
        )
        second = run_warm(python, task_root, env, [sqs_event(job, "m2")])
        assert second.returncode == 0, second.stderr[-3000:]
        # Then the second attempt had only what the first left ($0.02): its Bash step, and the
        # answer after it refused (a fresh $0.05 would have paid for both), and the job failed
        # over its budget with both attempts' cost on record
        done = container.job_repository.get(job.job_id)
        assert done is not None and done.attempts == 2, second.stdout[-3000:]
        assert len(fake.message_requests) == 2
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "budget_exceeded"
        assert done.usage is not None
        assert done.usage.total_cost_usd == pytest.approx(2 * TURN_USD)
