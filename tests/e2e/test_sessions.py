"""Sessions over HTTP through the local stack (`claude-jobs dev`, the real CLI in the worker,
the fake Messages API upstream): continue, busy, another tenant's, delete; the client library
and the `claude-jobs` command alike."""

from __future__ import annotations

import json
import subprocess
import uuid

import httpx
import pytest

from claude_jobs_client import ApiError, Client
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic

from .conftest import CLAUDE_JOBS, TENANTS, DevProcess, base_env

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(300)]

JOB_WAIT = 120


def _texts(body: dict[str, object]) -> str:
    return json.dumps(body.get("messages"))


def _cli(stack: DevProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(CLAUDE_JOBS_URL=stack.url, CLAUDE_JOBS_API_KEY=TENANTS["alpha"])
    return subprocess.run(
        [CLAUDE_JOBS, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_a_job_continues_an_earlier_jobs_conversation(
    alpha: Client, fake_model: FakeAnthropic
) -> None:
    # Given a job that ended, with its session
    name = uuid.uuid4().hex[:10]
    first = alpha.wait(
        alpha.submit(f"Remember [[echo:{name}]]", allowed_tools=[])["job_id"], timeout=JOB_WAIT
    )
    assert first["status"] == "succeeded", first
    session_id = first["session_id"]
    assert session_id
    # When a job continues the session with a new prompt
    follow_up = f"And what did you answer? {uuid.uuid4().hex}"
    second = alpha.submit(follow_up, allowed_tools=[], session_id=session_id)
    done = alpha.wait(second["job_id"], timeout=JOB_WAIT)
    # Then it succeeds in the same session, and the model saw the earlier turn and the new one
    assert done["status"] == "succeeded", done
    assert done["session_id"] == session_id
    (call,) = [r for r in fake_model.message_requests if follow_up in _texts(r.body)]
    texts = _texts(call.body)
    assert f"[[echo:{name}]]" in texts and f"echo {name}" in texts
    # And the session lists both jobs, oldest first
    session = alpha.get_session(session_id)
    assert session["session_id"] == session_id
    assert session["job_ids"] == [first["job_id"], second["job_id"]]
    assert session["updated_at"] >= session["created_at"]


def test_a_busy_session_and_another_tenants_session(
    stack: DevProcess, alpha: Client, beta: Client
) -> None:
    # Given a job that stays running
    running = alpha.submit(f"[[slow:{uuid.uuid4().hex[:10]}]]", allowed_tools=[])
    session_id = alpha.get(running["job_id"])["session_id"]
    try:
        # When its session is continued, or deleted, then 409 session_busy
        for attempt in (
            lambda: alpha.submit("more", allowed_tools=[], session_id=session_id),
            lambda: alpha.delete_session(session_id),
        ):
            with pytest.raises(ApiError) as busy:
                attempt()
            assert busy.value.status == 409
            assert busy.value.problem["type"].endswith(":session_busy")
        # And another tenant gets 404 session_not_found for reading, continuing, deleting
        for attempt in (
            lambda: beta.get_session(session_id),
            lambda: beta.submit("steal", allowed_tools=[], session_id=session_id),
            lambda: beta.delete_session(session_id),
        ):
            with pytest.raises(ApiError) as hidden:
                attempt()
            assert hidden.value.status == 404
            assert hidden.value.problem["type"].endswith(":session_not_found")
        # And a malformed session id is a 422 in a body, a 404 in a path
        answer = httpx.post(
            f"{stack.url}/v1/jobs",
            json={"prompt": "x", "session_id": "../../etc"},
            headers={"Authorization": f"Bearer {TENANTS['alpha']}"},
        )
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["loc"] == ["body", "session_id"]
        answer = httpx.get(
            f"{stack.url}/v1/sessions/..%2F..%2Fetc",
            headers={"Authorization": f"Bearer {TENANTS['alpha']}"},
        )
        assert answer.status_code == 404
    finally:
        alpha.cancel(running["job_id"])
    assert alpha.wait(running["job_id"], timeout=JOB_WAIT)["status"] == "cancelled"


def test_the_cli_continues_shows_and_deletes_a_session(stack: DevProcess) -> None:
    # Given a job submitted with the command, and its session
    name = uuid.uuid4().hex[:10]
    done = _cli(stack, "submit", f"[[echo:{name}]]", "--tools", "", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    session_id = json.loads(done.stdout)["session_id"]
    # When another job continues it with --session
    again = _cli(stack, "submit", "again", "--tools", "", "--session", session_id, "--wait")
    assert again.returncode == 0, again.stderr
    # Then `sessions show` lists both jobs
    shown = _cli(stack, "sessions", "show", session_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["job_ids"]) == 2
    # And after `sessions delete` the session is gone: show and continue answer 404
    deleted = _cli(stack, "sessions", "delete", session_id)
    assert deleted.returncode == 0, deleted.stderr
    gone = _cli(stack, "sessions", "show", session_id)
    assert gone.returncode == 2 and "404" in gone.stderr
    refused = _cli(stack, "submit", "more", "--session", session_id)
    assert refused.returncode == 2 and "404" in refused.stderr
