"""MCP servers through the worker function with the real CLI (the root layout: a leased uid per
job), against a real streamable-HTTP MCP server that requires a bearer token: the job's tool
call reaches it with its tenant's credential and the answer reaches the model; the model is
offered only the job's tools; a hostile agent finds the credential nowhere and reaches nothing
else of the server; a missing vault entry, or another tenant's entry, never runs the agent
with a credential."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from claude_jobs.adapters.vault import SecretsManagerVault
from claude_jobs.approval_models import ApprovalDecision
from claude_jobs.models import JobStatus
from claude_jobs.ports import Transition
from claude_jobs_tools.local.demo_mcp import DemoMcpServer
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.support import mcp_probe
from tests.worker.conftest import WorkerStack, _worker_stack

pytestmark = pytest.mark.cli

#: The tenant's credential for the server (a marker, not a real-looking token).
#: Built, not written: no file (this one, in a checkout under /tmp) holds the probe's mark.
MARK = "".join(("MCP", "CRED", "MARK"))
CREDENTIAL = f"demo-{MARK}-acme-0001"


@pytest.fixture
def mcp_server() -> Iterator[DemoMcpServer]:
    with DemoMcpServer({CREDENTIAL: "acme"}) as server:
        yield server


@pytest.fixture
def mcp_stack(
    aws: None,
    fake: FakeAnthropic,
    mcp_server: DemoMcpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[WorkerStack]:
    """The worker stack with the demo server on the allowlist and acme's vault entry `kb`."""
    for stack in _worker_stack("wm", fake, monkeypatch, mcp_allowed_urls=(mcp_server.url,)):
        vault(stack).put("acme", "kb", CREDENTIAL)
        yield stack


def vault(stack: WorkerStack) -> SecretsManagerVault:
    return SecretsManagerVault(
        boto3.client("secretsmanager"), stack.provisioned.settings.vault_secret_prefix
    )


def kb(server: DemoMcpServer, credential: str | None = "kb") -> dict[str, Any]:
    return {"name": "kb", "url": server.url, "credential": credential}


def test_a_tool_call_reaches_the_server_with_the_tenants_credential(
    mcp_stack: WorkerStack, mcp_server: DemoMcpServer
) -> None:
    # Given a job of acme allowed one tool of its server, whose model calls it
    stack = mcp_stack
    job = stack.submit(
        "Look q1 up.", mcp_servers=[kb(mcp_server)], allowed_tools=["mcp__kb__lookup"]
    )
    stack.fake.script(ToolUse("mcp__kb__lookup", {"query": "q1"}), Text("found it"))
    # When it runs
    assert stack.deliver(job) == {"batchItemFailures": []}
    # Then it succeeded; the call reached the server with acme's credential
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    calls = mcp_server.tool_calls()
    assert [c.tool for c in calls] == ["lookup"]
    assert calls[0].authorization == f"Bearer {CREDENTIAL}"
    assert mcp_server.authorizations() == {f"Bearer {CREDENTIAL}"}
    # And the server's answer reached the model
    (result,) = stack.fake.message_requests[-1].tool_results()
    assert not result["is_error"] and "kb[acme]: q1" in result["content"]
    # And the model was offered the job's tool of the server, and no other
    offered = stack.fake.message_requests[0].tool_names
    assert "mcp__kb__lookup" in offered
    assert "mcp__kb__admin_reset" not in offered
    # And the progress events show the call like any other tool's
    events = stack.container.job_service.events(stack.tenant, job.job_id, 0, 0)
    kinds = [(e.type, getattr(e, "tool", None)) for e in events.items]
    assert ("tool_use", "mcp__kb__lookup") in kinds and ("tool_result", "mcp__kb__lookup") in kinds


def test_a_hostile_agent_finds_the_credential_nowhere_and_reaches_nothing_else(
    mcp_stack: WorkerStack, mcp_server: DemoMcpServer
) -> None:
    # Given a job with Bash and one tool of the server, whose agent hunts for the credential
    # (environment, files, every /proc it can read) and calls the broker itself
    stack = mcp_stack
    job = stack.submit(
        "Probe.", mcp_servers=[kb(mcp_server)], allowed_tools=["Bash", "mcp__kb__lookup"]
    )
    stack.fake.script(
        ToolUse("mcp__kb__lookup", {"query": "warm-up"}),
        ToolUse("Bash", {"command": mcp_probe.command(MARK), "timeout": 120000}),
        Text("done"),
    )
    # When it runs
    assert stack.deliver(job) == {"batchItemFailures": []}
    assert stack.get(job).status is JobStatus.SUCCEEDED
    (result,) = stack.fake.message_requests[-1].tool_results()
    output = result["content"]
    # Then the probe ran, and the credential was nowhere it could look (environment, files,
    # /proc environ, cmdline and memory of every process it could see)
    assert "FOUND" in output, output[-3000:]
    found = json.loads(output.split("FOUND ", 1)[1].splitlines()[0])
    assert found == []
    assert MARK not in output
    # And the CLI's MCP configuration it found names the broker's loopback URL only
    configs = [json.loads(line[7:]) for line in output.splitlines() if line.startswith("CONFIG ")]
    assert configs, output[-3000:]
    for config in configs:
        (server,) = config["mcpServers"].values()
        assert server["url"].startswith("http://127.0.0.1:") and mcp_server.url not in server["url"]
    # And calling the broker itself: the listing names only the job's tool, the other tool and
    # another path are refused, and the server never saw a call of anything else
    calls = {line.split()[1]: line for line in output.splitlines() if line.startswith("CALL ")}
    assert "lookup" in calls["tools/list"] and "admin_reset" not in calls["tools/list"]
    assert "not allowed" in calls["admin_reset"]
    assert calls["elsewhere"].split()[2] == "404"
    assert [c.tool for c in mcp_server.tool_calls()] == ["lookup"]
    # And nothing the model received carries the credential
    assert all(MARK.encode() not in r.raw for r in stack.fake.requests)


def test_a_missing_vault_entry_fails_the_job_before_the_agent_starts(
    mcp_stack: WorkerStack, mcp_server: DemoMcpServer
) -> None:
    # Given a job naming an entry its tenant's vault does not hold
    stack = mcp_stack
    job = stack.submit(
        "Look up.", mcp_servers=[kb(mcp_server, "nope")], allowed_tools=["mcp__kb__lookup"]
    )
    # When it runs
    assert stack.deliver(job) == {"batchItemFailures": []}
    # Then it failed mcp_credential_missing naming the entry; no model call, no server call
    done = stack.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "mcp_credential_missing"
    assert "'nope'" in done.error.message
    assert stack.fake.message_requests == [] and mcp_server.requests() == []


def test_another_tenants_job_never_gets_the_first_tenants_credential(
    mcp_stack: WorkerStack, mcp_server: DemoMcpServer
) -> None:
    # Given a job of another tenant naming the same server and acme's entry name
    stack = mcp_stack
    stack.tenant = "globex"
    named = stack.submit(
        "Look up.", mcp_servers=[kb(mcp_server)], allowed_tools=["mcp__kb__lookup"]
    )
    # And one naming no credential at all, whose model calls the tool
    bare = stack.submit(
        "Look up.", mcp_servers=[kb(mcp_server, None)], allowed_tools=["mcp__kb__lookup"]
    )
    stack.fake.script(ToolUse("mcp__kb__lookup", {"query": "q"}), Text("done"))
    # When both run
    stack.deliver(named)
    stack.deliver(bare)
    # Then the first failed: globex has no entry `kb` (acme's is not used)
    failed = stack.get(named)
    assert failed.error is not None and failed.error.code == "mcp_credential_missing"
    # And the second reached the server without any credential: refused there
    assert stack.get(bare).status is JobStatus.SUCCEEDED
    assert mcp_server.requests(), "the bare job's CLI reached the server through the broker"
    assert {s.authorization for s in mcp_server.requests()} == {None}
    assert not any(s.accepted for s in mcp_server.requests())


def test_an_approval_rule_holds_an_mcp_call_before_it_reaches_the_server(
    mcp_stack: WorkerStack, mcp_server: DemoMcpServer
) -> None:
    # Given a job whose approvals name its MCP tool, and whose model calls it
    stack = mcp_stack
    job = stack.submit(
        "Look q1 up.",
        mcp_servers=[kb(mcp_server)],
        allowed_tools=["mcp__kb__lookup"],
        approvals=["mcp__kb__lookup"],
    )
    stack.fake.script(ToolUse("mcp__kb__lookup", {"query": "q1"}), Text("found it"))
    # When it runs
    assert stack.deliver(job) == {"batchItemFailures": []}
    # Then it waits for a person with the call shown, which never reached the server
    waiting = stack.get(job)
    assert waiting.status is JobStatus.AWAITING_APPROVAL
    assert waiting.pending_approval is not None
    assert waiting.pending_approval.tool == "mcp__kb__lookup"
    assert waiting.pending_approval.rule == "mcp__kb__lookup"
    assert mcp_server.tool_calls() == []
    # And once a person allows it, the resumed run makes the call with the credential
    pending = waiting.pending_approval
    stack.repo.transition(
        Transition(
            job_id=job.job_id,
            to=JobStatus.QUEUED,
            from_=[JobStatus.AWAITING_APPROVAL],
            set_fields={
                "approval_decision": ApprovalDecision(
                    approval_id=pending.approval_id,
                    tool_use_id=pending.tool_use_id,
                    tool=pending.tool,
                    decision="allow",
                    decided_at=datetime.now(UTC),
                ),
                "continuing": True,
            },
            remove_fields=["pending_approval"],
        )
    )
    assert stack.deliver(job) == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    (call,) = mcp_server.tool_calls()
    assert call.tool == "lookup" and call.authorization == f"Bearer {CREDENTIAL}"
