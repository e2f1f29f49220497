"""Progress events over HTTP: `claude-jobs dev` runs a job with the real bundled CLI against
the fake Messages API (a Bash call, then its output as text); the caller follows the job's
events through `GET /v1/jobs/{id}/events`, the client library and `claude-jobs events`."""

from __future__ import annotations

import json
import subprocess
import uuid

import httpx
import pytest

from claude_jobs_client import ApiError, Client

from .conftest import ANTHROPIC_KEY, BASH_COMMANDS, CLAUDE_JOBS, TENANTS, DevProcess, base_env

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(300)]

JOB_WAIT = 120
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def bash_job(command: str) -> str:
    name = uuid.uuid4().hex[:10]
    BASH_COMMANDS[name] = command
    return f"Run it: [[bash:{name}]]"


def test_a_callers_follows_a_jobs_events_live_and_secrets_are_scrubbed(
    alpha: Client, beta: Client, stack: DevProcess
) -> None:
    # Given a job whose (hostile) model runs Bash printing the key it knows, AWS-looking
    # secrets and the agent's own API key variable, then answers with that output
    command = (
        f"echo progress; echo {ANTHROPIC_KEY} {AWS_KEY_ID} "
        f"aws_secret_access_key={AWS_SECRET}; echo token=$ANTHROPIC_API_KEY"
    )
    accepted = alpha.submit(bash_job(command), allowed_tools=["Bash"], max_turns=3)
    job_id = accepted["job_id"]
    # When the caller follows its events (long-polling) until done
    events = list(alpha.iter_events(job_id, follow=True, timeout=JOB_WAIT))
    # Then they are in seq order and tell the run: statuses, the Bash call with its input,
    # its result, the text, the usage
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"
    tool_use = next(e for e in events if e["type"] == "tool_use")
    assert tool_use["tool"] == "Bash" and "echo progress" in tool_use["input"]
    assert any(e["type"] == "tool_result" and e["tool"] == "Bash" for e in events)
    text = next(e for e in events if e["type"] == "text")
    assert "progress" in text["text"]
    usage = [e for e in events if e["type"] == "usage"]
    assert usage and usage[-1]["total_cost_usd"] > 0 and usage[-1]["input_tokens"] > 0
    # and no secret is in any event: the key, the AWS values, the agent's proxy token
    shown = json.dumps(events)
    for secret in (ANTHROPIC_KEY, AWS_KEY_ID, AWS_SECRET):
        assert secret not in shown
    assert "token=cj-" not in shown and "[REDACTED]" in shown
    # And the job is done: nothing newer, done, from the last cursor
    last = alpha.events(job_id, after=str(events[-1]["seq"]))
    assert last == {"items": [], "next_cursor": str(events[-1]["seq"]), "done": True}
    # And another tenant gets 404; a hostile cursor gets 422
    with pytest.raises(ApiError) as other:
        beta.events(job_id)
    assert other.value.status == 404
    for cursor in ("-1", "abc", "1" * 40, "1 OR 1=1"):
        refused = httpx.get(
            f"{stack.url}/v1/jobs/{job_id}/events",
            params={"after": cursor},
            headers={"Authorization": f"Bearer {TENANTS['alpha']}"},
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")

    # And `claude-jobs events --json` prints the same events as JSON lines
    env = base_env(CLAUDE_JOBS_URL=stack.url, CLAUDE_JOBS_API_KEY=TENANTS["alpha"])
    printed = subprocess.run(
        [CLAUDE_JOBS, "events", job_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert [json.loads(line) for line in printed.stdout.splitlines()] == events


def test_submit_wait_shows_the_tool_call_live(stack: DevProcess) -> None:
    # When `claude-jobs submit --wait` runs a job that calls Bash
    env = base_env(CLAUDE_JOBS_URL=stack.url, CLAUDE_JOBS_API_KEY=TENANTS["alpha"])
    done = subprocess.run(
        [CLAUDE_JOBS, "submit", bash_job("echo shown-live"), "--tools", "Bash", "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_WAIT + 30,
    )
    # Then its progress (stderr) shows the call with its input and its result, and stdout the
    # answer
    assert done.returncode == 0, done.stderr
    assert '→ Bash {"command":"echo shown-live"' in done.stderr
    assert "✓ Bash" in done.stderr and "succeeded" in done.stderr
    assert "shown-live" in done.stdout
