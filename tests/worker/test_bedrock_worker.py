"""The worker on Amazon Bedrock, end to end: SQS event → the real bundled Claude Code CLI in
Bedrock mode → the loopback proxy, which signs with the worker role → the fake Bedrock runtime,
which verifies each signature and answers in AWS event-stream frames. The deployment has no
Anthropic secret at all (the fixture deletes it), so a job that needed it could not run."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs.models import JobStatus
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse, Usage
from claude_jobs_tools.local.fake_bedrock import signature_matches
from tests.worker.conftest import BEDROCK_MODELS, REAL_KEY, WORKER_ROLE, WorkerStack

pytestmark = pytest.mark.cli

PROFILE = BEDROCK_MODELS["claude-sonnet-4-5"]
OTHER_PROFILE = "us.anthropic.claude-opus-4-5-20251101-v1:0"
FOUNDATION = "anthropic.claude-sonnet-4-5-20250929-v1:0"
#: Sonnet 4.5, USD per input and output token.
INPUT, OUTPUT = 3e-6, 15e-6

BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
#: For the agent's Bash: `call NAME [curl args…] URL` prints "NAME STATUS", presenting the
#: job's own token (which the CLI holds in ANTHROPIC_CUSTOM_HEADERS) to the proxy.
CALL = (
    'h="$ANTHROPIC_CUSTOM_HEADERS"; '
    "call() { name=$1; shift; "
    'curl -s -o /dev/null -w "$name %{http_code}\\n" --path-as-is -m 20 '
    '-H "$h" -H "content-type: application/json" "$@"; }; '
    f"b='{BODY}'; u=$ANTHROPIC_BEDROCK_BASE_URL; "
)


@pytest.fixture
def report() -> Iterator[Path]:
    """A file outside the sandbox where the agent's Bash writes what it saw."""
    directory = Path(tempfile.mkdtemp(prefix="cj-bedrock-"))
    os.chmod(directory, 0o777)  # noqa: S103 - the agent's uid writes the report
    yield directory / "report.txt"
    shutil.rmtree(directory, ignore_errors=True)


def _statuses(text: str) -> dict[str, str]:
    return dict(line.split() for line in text.splitlines() if len(line.split()) == 2)


def test_a_job_runs_on_bedrock_signed_by_the_worker_role_with_no_anthropic_key(
    bedrock_stack: WorkerStack,
) -> None:
    # Given a Bedrock deployment with no Anthropic secret, and a runtime answering a known usage
    stack = bedrock_stack
    job = stack.submit("What is 2 + 2?", allowed_tools=[], model="claude-sonnet-4-5")
    stack.fake.script(Text("2 + 2 = 4", usage=Usage(input_tokens=120, output_tokens=9)))
    # When the worker receives its message
    answer = stack.deliver(job)
    # Then the job succeeded with the streamed text and its usage, priced as the model
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result.text == "2 + 2 = 4"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (120, 9)
    assert done.usage.total_cost_usd == pytest.approx(120 * INPUT + 9 * OUTPUT)
    # And the runtime got one streaming invocation of the profile the job's model maps to,
    # signed with the worker role's credentials, in Bedrock's body format
    assert stack.bedrock.invocations == [(PROFILE, "invoke-with-response-stream")]
    (request,) = stack.fake.requests  # the CLI's ListInferenceProfiles never got through
    assert signature_matches(request, WORKER_ROLE, "us-east-1")
    assert "model" not in request.body and request.body["anthropic_version"]
    assert "What is 2 + 2?" in request.prompt_text()
    assert "x-api-key" not in request.headers


def test_a_scripted_bash_call_runs_and_the_agent_holds_no_credential(
    bedrock_stack: WorkerStack,
) -> None:
    # Given a job allowed Bash, whose agent dumps its environment and tries its ancestors'
    stack = bedrock_stack
    job = stack.submit(allowed_tools=["Bash"])
    walk = (
        "env; echo ===ANCESTORS===; p=$$; "
        'while [ "$p" -gt 1 ]; do '
        'if out=$(tr "\\0" "\\n" < /proc/$p/environ 2>&1); then echo "pid $p readable"; '
        'echo "$out"; else echo "pid $p denied"; fi; '
        "p=$(awk '{print $4}' /proc/$p/stat); done"
    )
    stack.fake.script(ToolUse("Bash", {"command": walk}), Text("done"))
    # When it runs
    stack.deliver(job)
    # Then the CLI ran the tool and sent its output back in the next invocation
    assert stack.get(job).status is JobStatus.SUCCEEDED
    assert len(stack.bedrock.invocations) == 2
    (result,) = stack.fake.message_requests[1].tool_results()
    output = result["content"]
    assert not result["is_error"] and "===ANCESTORS===" in output
    own_env, ancestors = output.split("===ANCESTORS===")
    names = {line.split("=", 1)[0] for line in own_env.splitlines() if "=" in line}
    # And its environment is Bedrock's switches and a job token: its only AWS variable is the
    # region, and no credential or key is anywhere in what it could read
    assert {n for n in names if n.startswith("AWS_")} == {"AWS_REGION"}
    assert {"CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_SKIP_BEDROCK_AUTH"} <= names
    assert "ANTHROPIC_API_KEY" not in names and "_HANDLER" not in names
    assert re.search(r"^ANTHROPIC_CUSTOM_HEADERS=x-claude-jobs-token: cj-job-\S+$", own_env, re.M)
    for secret in (WORKER_ROLE.access_key, WORKER_ROLE.secret_key, WORKER_ROLE.token, REAL_KEY):
        assert secret is not None and secret not in output
    assert f"pid {os.getpid()} denied" in ancestors
    # While every invocation was signed with exactly those credentials
    assert all(signature_matches(r, WORKER_ROLE, "us-east-1") for r in stack.fake.requests)


def test_the_budget_limit_fails_a_bedrock_job(bedrock_stack: WorkerStack) -> None:
    # Given a job with a small budget and a first turn that costs far more
    stack = bedrock_stack
    job = stack.submit(allowed_tools=["Read"], max_budget_usd=0.05)
    expensive = Usage(input_tokens=100_000, output_tokens=100)  # $0.3015
    stack.fake.script(ToolUse("Read", {"file_path": "/etc/hostname"}, usage=expensive))
    stack.fake.default = Text("never reached")
    # When it runs
    answer = stack.deliver(job)
    # Then the proxy refused the next call: the runtime saw one, and the job failed on budget
    assert len(stack.bedrock.invocations) == 1
    done = stack.get(job)
    assert answer == {"batchItemFailures": []}
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "budget_exceeded"
    assert done.usage is not None
    assert done.usage.total_cost_usd == pytest.approx(100_000 * INPUT + 100 * OUTPUT)


def test_a_model_the_deployment_does_not_map_never_reaches_the_runtime(
    bedrock_stack: WorkerStack,
) -> None:
    # Given a job asking for a model the deployment has no inference profile for
    stack = bedrock_stack
    job = stack.submit(allowed_tools=[], model="claude-opus-4-5")
    # When it runs
    stack.deliver(job)
    # Then it failed with the proxy's reason, and nothing reached the runtime
    done = stack.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "upstream_error"
    assert "not enabled for this deployment" in done.error.message
    assert stack.fake.requests == []


def test_the_agent_reaches_nothing_but_its_models_invocation_with_its_token(
    bedrock_stack: WorkerStack,
) -> None:
    # Given a job whose agent may run Bash and calls the proxy itself with its own token:
    # other models, the control plane, other operations, methods and path tricks, and one
    # allowed call as a control
    stack = bedrock_stack
    job = stack.submit(allowed_tools=["Bash"])
    m, other, foundation = "$u/model/" + PROFILE, "$u/model/" + OTHER_PROFILE, FOUNDATION
    post = '-X POST -d "$b"'
    probes = CALL + " ".join(
        f"{probe};"
        for probe in [
            f'call other-model {post} "{other}/invoke"',
            f'call other-stream {post} "{other}/invoke-with-response-stream"',
            f'call foundation {post} "$u/model/{foundation}/invoke"',
            'call profiles "$u/inference-profiles?type=SYSTEM_DEFINED"',
            'call profiles-plain "$u/inference-profiles"',
            f'call converse {post} "{m}/converse"',
            f'call async {post} "$u/async-invoke"',
            f'call get-invoke "{m}/invoke"',
            f'call dotdot {post} "{m}/../{OTHER_PROFILE}/invoke"',
            f'call pct-dotdot {post} "$u/model/%2e%2e/invoke"',
            f'call enc-slash {post} "{m}%2F..%2F{OTHER_PROFILE}/invoke"',
            f'call query {post} "{m}/invoke?x=1"',
            f'call absolute {post} --request-target http://evil.example/model/x/invoke "$u/"',
            f'call anthropic {post} "$u/v1/messages"',
            f'call control {post} "{m}/invoke"',
        ]
    )
    stack.fake.script(ToolUse("Bash", {"command": probes}), Text("direct call answer"), Text("ok"))
    # When it runs
    stack.deliver(job)
    # Then every probe was refused by the proxy with a 4xx, and the control went through
    output = stack.fake.message_requests[-1].tool_results()[0]["content"]
    statuses = _statuses(output)
    assert statuses.pop("control") == "200", output
    assert len(statuses) == 14, output
    assert all(status.startswith("4") for status in statuses.values()), output
    # And the runtime received only invocations of the job's profile: the CLI's two and the
    # control, each signed by the worker role
    assert [model for model, _ in stack.bedrock.invocations] == [PROFILE] * 3
    assert len(stack.fake.requests) == 3
    assert all(signature_matches(r, WORKER_ROLE, "us-east-1") for r in stack.fake.requests)
    assert stack.get(job).status is JobStatus.SUCCEEDED


def test_an_agent_cannot_overspend_its_budget_with_direct_bedrock_calls(
    bedrock_stack: WorkerStack, report: Path
) -> None:
    # Given a job with a $0.05 budget whose agent invokes the model itself in a loop, each
    # answer costing $0.03
    stack = bedrock_stack
    job = stack.submit(allowed_tools=["Bash"], max_budget_usd=0.05)
    loop = (
        CALL + 'for i in 1 2 3 4 5 6; do call "$i" -X POST -d "$b" '
        f'"$u/model/{PROFILE}/invoke"; done > {report} 2>&1'
    )
    first = Usage()
    direct = Usage(input_tokens=10_000, output_tokens=0)
    stack.fake.script(ToolUse("Bash", {"command": loop}, usage=first))
    stack.fake.default = Text("spent", usage=direct)
    # When it runs
    stack.deliver(job)
    # Then two direct calls went through (the second crossed the budget), the rest were refused
    statuses = _statuses(report.read_text())
    assert [statuses[str(i)] for i in range(1, 7)] == ["200", "200"] + ["402"] * 4
    assert len(stack.bedrock.invocations) == 3
    # And the job failed on its budget, its recorded cost the metered spend
    done = stack.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "budget_exceeded"
    assert done.usage is not None
    spent = (first.input_tokens + 20_000) * INPUT + first.output_tokens * OUTPUT
    assert done.usage.total_cost_usd == pytest.approx(spent)
