"""MCP servers through `claude-jobs dev`, over HTTP only (shared/DESIGN.md, "MCP servers and
credentials").

Its own stack, started with `MCP_ALLOWED_URLS` naming a real streamable-HTTP MCP server (the
demo server, which requires a bearer token), and tenant alpha's vault entry `kb` set with
`claude-jobs vault set`. The model is scripted by markers: `[[mcp:X]]` calls
`mcp__kb__lookup` with X and answers with what the tool returned; `[[bash:X]]` (conftest) runs
a Bash command and answers with its output.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from claude_jobs_client import Client
from claude_jobs_tools.local.demo_mcp import MCP_PATH, DemoMcpServer
from claude_jobs_tools.local.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    ToolUse,
)
from tests.support import mcp_probe

from .conftest import (
    ANTHROPIC_KEY,
    BASH_COMMANDS,
    CLAUDE_JOBS,
    TENANTS,
    DevProcess,
    answer,
    base_env,
    start_dev,
)

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(600)]

#: Built, not written: no file (this one, in a checkout under /tmp) holds the probe's mark.
MARK = "".join(("MCP", "E2E", "MARK"))
CREDENTIAL = f"demo-{MARK}-alpha-0001"
JOB_WAIT = 240


def mcp_answer(request: RecordedRequest) -> Reply:
    """conftest's marker model, plus `[[mcp:X]]`: a lookup of X, then its result as text."""
    prompt = request.prompt_text()
    if "[[mcp:" in prompt:
        results = request.tool_results()
        if not results:
            query = prompt.split("[[mcp:", 1)[1].split("]]", 1)[0]
            return ToolUse("mcp__kb__lookup", {"query": query})
        return Text("\n".join(("ERROR " if r["is_error"] else "") + r["content"] for r in results))
    return answer(request)


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[DemoMcpServer]:
    with DemoMcpServer({CREDENTIAL: "alpha"}) as server:
        yield server


@pytest.fixture(scope="module")
def fake_mcp_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=mcp_answer, api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def mcp_stack(
    tmp_path_factory: pytest.TempPathFactory,
    mcp_server: DemoMcpServer,
    fake_mcp_model: FakeAnthropic,
) -> Iterator[DevProcess]:
    env = base_env(
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=fake_mcp_model.url,
        CLAUDE_JOBS_DEV_KEYS=",".join(f"{t}:{k}" for t, k in TENANTS.items()),
        MCP_ALLOWED_URLS=mcp_server.url,
    )
    dev = start_dev(tmp_path_factory.mktemp("mcp"), env, workers=2)
    try:
        # The operator stores alpha's credential with the command line, as the README says
        vault(dev, "set", "--tenant", "alpha", "kb", "--from-stdin", stdin=CREDENTIAL)
        yield dev
    finally:
        assert dev.stop() == 0, dev.output()


def vault(
    dev: DevProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`claude-jobs vault …` with the banner's exports (the emulator's endpoint and key)."""
    done = subprocess.run(
        [CLAUDE_JOBS, "vault", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=base_env(**dev.exports()),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def alpha(mcp_stack: DevProcess) -> Iterator[Client]:
    with Client(mcp_stack.url, TENANTS["alpha"], timeout=60) as client:
        yield client


@pytest.fixture
def beta(mcp_stack: DevProcess) -> Iterator[Client]:
    with Client(mcp_stack.url, TENANTS["beta"], timeout=60) as client:
        yield client


def kb(server: DemoMcpServer, credential: str | None = "kb") -> list[dict[str, Any]]:
    return [{"name": "kb", "url": server.url, "credential": credential}]


def test_the_vault_lists_names_only(mcp_stack: DevProcess) -> None:
    listed = vault(mcp_stack, "list", "--tenant", "alpha")
    assert listed.stdout.split() == ["kb"]
    assert MARK not in listed.stdout + listed.stderr
    assert vault(mcp_stack, "list", "--tenant", "beta").stdout.split() == []


def test_a_jobs_tool_call_reaches_the_server_with_its_credential(
    alpha: Client, mcp_server: DemoMcpServer
) -> None:
    # Given alpha's job allowed one tool of the server, whose model looks a term up
    term = f"t{uuid.uuid4().hex[:8]}"
    job = alpha.submit(
        f"Look it up [[mcp:{term}]]", mcp_servers=kb(mcp_server), allowed_tools=["mcp__kb__lookup"]
    )
    # When it runs
    done = alpha.wait(job["job_id"], timeout=JOB_WAIT)
    # Then the server's answer reached the model, which answered with it
    assert done["status"] == "succeeded", done
    assert done["result"]["text"].startswith(f'{{"result":"kb[alpha]: {term}"}}')
    # And the call reached the server with alpha's credential
    calls = [c for c in mcp_server.tool_calls() if c.tool == "lookup"]
    assert calls and all(c.authorization == f"Bearer {CREDENTIAL}" for c in calls)
    # And its progress events show the call like any other tool's
    events = alpha.events(job["job_id"])["items"]
    assert {"tool_use", "tool_result"} <= {
        e["type"] for e in events if e.get("tool") == "mcp__kb__lookup"
    }


def test_a_job_with_bash_cannot_find_the_credential(
    alpha: Client, mcp_server: DemoMcpServer
) -> None:
    # Given alpha's job with Bash and the server, whose agent hunts for the credential and
    # calls the broker itself
    marker = f"mcp-{uuid.uuid4().hex[:10]}"
    BASH_COMMANDS[marker] = mcp_probe.command(MARK)
    job = alpha.submit(
        f"probe [[bash:{marker}]]",
        mcp_servers=kb(mcp_server),
        allowed_tools=["Bash", "mcp__kb__lookup"],
    )
    done = alpha.wait(job["job_id"], timeout=JOB_WAIT)
    assert done["status"] == "succeeded", done
    output = done["result"]["text"]
    # Then the credential was nowhere it could look: environment, files (~/.claude.json and
    # the CLI's config), /proc environ, cmdline and memory of the CLI and the worker
    assert "FOUND" in output, output[-3000:]
    assert json.loads(output.split("FOUND ", 1)[1].splitlines()[0]) == []
    assert MARK not in output
    # And the CLI's MCP configuration names only the broker, on loopback
    configs = [json.loads(line[7:]) for line in output.splitlines() if line.startswith("CONFIG ")]
    assert configs and all(
        s["url"].startswith("http://127.0.0.1:") and s["url"] != mcp_server.url
        for config in configs
        for s in config["mcpServers"].values()
    )
    # And calling the broker itself reaches nothing but the job's tool
    calls = {line.split()[1]: line for line in output.splitlines() if line.startswith("CALL ")}
    assert "admin_reset" not in calls["tools/list"]
    assert "not allowed" in calls["admin_reset"]
    assert "admin_reset" not in {c.tool for c in mcp_server.tool_calls()}


def test_a_server_off_the_allowlist_is_refused_at_submit(mcp_stack: DevProcess) -> None:
    body = {
        "prompt": "hi",
        "mcp_servers": [{"name": "evil", "url": "https://mcp.evil.example/kb"}],
        "allowed_tools": ["mcp__evil__lookup"],
    }
    answered = httpx.post(
        f"{mcp_stack.url}/v1/jobs",
        json=body,
        headers={"Authorization": f"Bearer {TENANTS['alpha']}"},
        timeout=30,
    )
    assert answered.status_code == 422
    problem = answered.json()
    assert answered.headers["content-type"].startswith("application/problem+json")
    (error,) = problem["errors"]
    assert error["loc"] == ["body", "mcp_servers", 0, "url"] and "'evil'" in error["msg"]


def test_another_tenants_job_never_reaches_the_server_with_the_first_ones_credential(
    beta: Client, mcp_server: DemoMcpServer
) -> None:
    # Given beta's job naming the same server and the entry name alpha has
    before = len(mcp_server.requests())
    named = beta.submit(
        "Look it up [[mcp:x]]", mcp_servers=kb(mcp_server), allowed_tools=["mcp__kb__lookup"]
    )
    # Then it fails before its agent starts: beta's vault has no `kb`
    failed = beta.wait(named["job_id"], timeout=JOB_WAIT)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "mcp_credential_missing"
    # And beta's job naming no credential reaches the server without one (refused there)
    bare = beta.submit(
        "Look it up [[mcp:y]]",
        mcp_servers=kb(mcp_server, None),
        allowed_tools=["mcp__kb__lookup"],
    )
    done = beta.wait(bare["job_id"], timeout=JOB_WAIT)
    assert done["status"] == "succeeded", done
    # (requests to its MCP endpoint: a test probing every loopback port may run beside this one)
    seen = [s for s in mcp_server.requests()[before:] if s.path == MCP_PATH]
    assert seen and {s.authorization for s in seen} == {None}
    assert not any(s.accepted for s in seen)
