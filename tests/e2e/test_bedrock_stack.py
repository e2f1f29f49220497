"""`claude-jobs dev --provider bedrock` as a subprocess, driven over HTTP: no Anthropic key
anywhere; its worker's proxy signs each model call with the stack's credentials and sends it
to the Bedrock runtime — the built-in offline stand-in, or AWS_ENDPOINT_URL_BEDROCK_RUNTIME."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs.settings import DEFAULT_BEDROCK_MODELS
from claude_jobs_client import Client
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse, Usage
from claude_jobs_tools.local.fake_bedrock import Credentials, FakeBedrock, signature_matches
from claude_jobs_tools.local.stack import CANNED_ANSWER
from tests.e2e.conftest import base_env, start_dev

pytestmark = pytest.mark.cli

TENANT_KEY = "test-key-bedrock-0123456789"
JOB_WAIT = 90


@pytest.fixture
def runtime() -> Iterator[FakeBedrock]:
    """A Bedrock runtime of the test's own (it records; the test checks the signatures)."""
    with FakeBedrock() as fake:
        yield fake


def test_the_offline_stand_in_runs_a_job_in_bedrocks_wire_format(tmp_path: Path) -> None:
    # Given the local stack started with --provider bedrock and no runtime of its own
    env = base_env(CLAUDE_JOBS_DEV_KEYS=f"t:{TENANT_KEY}")
    dev = start_dev(tmp_path, env, args=("--provider", "bedrock"))
    try:
        # Then its banner says where the models run
        assert "Amazon Bedrock, OFFLINE STAND-IN" in dev.output()
        # When a job is submitted over HTTP
        with Client(dev.url, TENANT_KEY, timeout=60) as client:
            job_id = client.submit("Say hello", allowed_tools=[])["job_id"]
            job = client.wait(job_id, timeout=JOB_WAIT)
        # Then the real CLI got the stand-in's canned answer through the signing proxy (the
        # stand-in refuses calls not signed with the stack's credentials)
        assert job["status"] == "succeeded", (job.get("error"), job.get("result"))
        assert job["result"]["text"] == CANNED_ANSWER
        assert job["usage"]["total_cost_usd"] > 0
    finally:
        assert dev.stop() == 0, dev.output()


def test_a_job_runs_against_the_runtime_the_override_names(
    tmp_path: Path, runtime: FakeBedrock
) -> None:
    # Given the local stack on Bedrock, its runtime the standard service-specific override
    marker = secrets.token_hex(4)
    runtime.script(
        ToolUse("Bash", {"command": f"echo bash-{marker}"}),
        Text(f"done {marker}", usage=Usage(input_tokens=50, output_tokens=5)),
    )
    env = base_env(
        CLAUDE_JOBS_DEV_KEYS=f"t:{TENANT_KEY}", AWS_ENDPOINT_URL_BEDROCK_RUNTIME=runtime.url
    )
    dev = start_dev(tmp_path, env, args=("--provider", "bedrock"))
    try:
        assert f"Amazon Bedrock at {runtime.url}" in dev.output()
        # When a job allowed Bash is submitted
        with Client(dev.url, TENANT_KEY, timeout=60) as client:
            job_id = client.submit(f"Run it {marker}", allowed_tools=["Bash"])["job_id"]
            job = client.wait(job_id, timeout=JOB_WAIT)
        exports = dev.exports()
    finally:
        assert dev.stop() == 0, dev.output()
    # Then it succeeded: the CLI ran the scripted Bash call and got the final answer
    assert job["status"] == "succeeded", job
    assert job["result"]["text"] == f"done {marker}"
    (result,) = runtime.message_requests[1].tool_results()
    assert f"bash-{marker}" in result["content"]
    # And the runtime received only invocations of the default model's inference profile,
    # each signed with the stack's credentials (the key the emulator serves)
    profile = DEFAULT_BEDROCK_MODELS["claude-sonnet-4-5"]
    assert runtime.invocations == [(profile, "invoke-with-response-stream")] * 2
    stack_key = Credentials(exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"])
    # (the model calls: the runtime's port is a loopback port like any other, and another
    # e2e test's hostile agent, probing every loopback port, may knock on it meanwhile)
    unsigned = [
        (r.method, r.path, r.headers.get("authorization", "")[:60], r.headers.get("x-amz-date"))
        for r in runtime.message_requests
        if not signature_matches(r, stack_key, "us-east-1")
    ]
    assert unsigned == [], (stack_key.access_key, unsigned)
