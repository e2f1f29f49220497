"""MCP servers in the image layout (tests/worker/test_image.py): one warm worker process as the
runtime user (worker and agent one non-root user, warm start on, the code directory read-only,
only the built artifact on the path). A job's tool call reaches a real streamable-HTTP MCP
server with its tenant's credential; its hostile Bash, running as the worker's own user, finds
the credential nowhere (the worker, which holds it, is not dumpable) and reaches no other tool;
then another tenant's job naming the same entry fails without the credential being used."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import pytest

from claude_jobs.adapters.vault import SecretsManagerVault
from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.resources import JOBS_QUEUE
from claude_jobs.wiring import Container
from claude_jobs_tools.local.demo_mcp import DemoMcpServer
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.support import mcp_probe
from tests.worker.conftest import REAL_KEY, sqs_event
from tests.worker.image_layout import (
    as_runtime_user,
    own_scratch,
    required_runtime_python,
    worker_env,
)
from tests.worker.test_image_segments import SEGMENT_HARNESS
from tests.worker.test_mcp_worker import CREDENTIAL, MARK

pytestmark = [pytest.mark.cli, pytest.mark.timeout(600)]


def test_in_the_image_the_credential_reaches_the_server_and_never_the_agent(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    shared_dir: Path,
) -> None:
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    with DemoMcpServer({CREDENTIAL: "acme"}) as server, FakeAnthropic(api_key=REAL_KEY) as fake:
        # Given a deployment whose allowlist has the server, and acme's vault entry `kb`
        provisioned = provision(
            "imgmcp",
            secret_value=REAL_KEY,
            anthropic_base_url=fake.url,
            mcp_allowed_urls=(server.url,),
        )
        settings = provisioned.settings
        SecretsManagerVault(boto3.client("secretsmanager"), settings.vault_secret_prefix).put(
            "acme", "kb", CREDENTIAL
        )
        container = Container(settings)
        kb = {"name": "kb", "url": server.url, "credential": "kb"}
        # And a job of acme with Bash and one tool of the server, whose agent calls the tool
        # and then hunts for the credential; and a job of globex naming the same entry
        job = container.job_service.submit(
            "acme",
            JobRequest(
                prompt="Look up, then probe.",
                mcp_servers=[kb],
                allowed_tools=["Bash", "mcp__kb__lookup"],
            ),
        ).job
        other = container.job_service.submit(
            "globex",
            JobRequest(prompt="Look up.", mcp_servers=[kb], allowed_tools=["mcp__kb__lookup"]),
        ).job
        fake.script(
            ToolUse("mcp__kb__lookup", {"query": "q1"}),
            ToolUse("Bash", {"command": mcp_probe.command(MARK), "timeout": 120000}),
            Text("done"),
        )
        env = worker_env(task_root, image_site, moto_server, settings, fake.url)
        env["WARM_START"] = "1"
        env["WORKER_INVOCATION_SECONDS"] = "300"
        env["MCP_ALLOWED_URLS"] = server.url
        env["VAULT_SECRET_PREFIX"] = settings.vault_secret_prefix
        own_scratch(env, shared_dir)
        events = []
        for each in (job, other):
            event = sqs_event(each)
            event["Records"][0]["eventSourceARN"] = provisioned.queue_arns[JOBS_QUEUE.logical_id]
            events.append(json.dumps(event) + "\n")
        log = shared_dir / "worker.log"
        # When one warm worker process handles both, one after the other
        worker = subprocess.run(
            [python, "-S", "-c", SEGMENT_HARNESS],
            input="".join(events),
            capture_output=True,
            text=True,
            cwd=task_root,
            env=env,
            timeout=300,
            check=False,
            **as_runtime_user(),
        )
        log.write_text(worker.stderr)
        answers = [line for line in worker.stdout.splitlines() if line.startswith("ANSWER ")]
        assert len(answers) == 2, worker.stdout[-4000:] + worker.stderr[-4000:]
        repo = container.job_repository
        # Then acme's job succeeded: its call reached the server with acme's credential, and
        # the answer reached the model
        done = repo.get(job.job_id)
        assert done is not None and done.status is JobStatus.SUCCEEDED, done and done.error
        assert [c.tool for c in server.tool_calls()] == ["lookup"]
        assert server.authorizations() == {f"Bearer {CREDENTIAL}"}
        lookup = fake.message_requests[1].tool_results()
        assert "kb[acme]: q1" in lookup[0]["content"]
        # And its Bash, the worker's own user, found the credential nowhere: not in the
        # worker's environ or memory (not dumpable), nor anywhere else it could read
        (probe,) = fake.message_requests[2].tool_results()
        output = probe["content"]
        assert "FOUND" in output, output[-3000:]
        assert json.loads(output.split("FOUND ", 1)[1].splitlines()[0]) == []
        assert MARK not in output
        calls = {line.split()[1]: line for line in output.splitlines() if line.startswith("CALL ")}
        assert "not allowed" in calls["admin_reset"]
        # And globex's job failed before its agent started: acme's entry was not used
        failed = repo.get(other.job_id)
        assert failed is not None and failed.error is not None
        assert failed.error.code == "mcp_credential_missing"
        assert len(fake.message_requests) == 3
        assert all(MARK.encode() not in r.raw for r in fake.requests)
