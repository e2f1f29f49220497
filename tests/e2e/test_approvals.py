"""Approvals through `claude-jobs dev`, over HTTP only (shared/DESIGN.md, "Approvals").

Its own stack (four workers, so a tenant's running share is two jobs) and the marker model of
conftest.py: `[[bash:X]]` makes one Bash call running `BASH_COMMANDS[X]` and then answers with
what the call returned. Every job allows Bash and names `Bash` as an approval rule, so its call
waits for a person: four jobs of one tenant wait at once while other jobs (the other tenant's,
and the same tenant's fifth) run and finish. Then each waiting job meets another decision:
allow (the call runs), deny (it never does; the agent sees the message), cancel, expiry.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from claude_jobs_client import Client
from claude_jobs_tools.local.fake_anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Text,
    ToolUse,
)

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

#: The stack sweeps expired approvals this often (the deployment: once a minute).
SWEEP_SECONDS = 2
WAITING = 4


QUESTION = "Which colour should the button be?"
QUESTIONS = {
    "questions": [
        {
            "question": QUESTION,
            "header": "Colour",
            "multiSelect": False,
            "options": [
                {"label": "Red", "description": "a red button"},
                {"label": "Blue", "description": "a blue button"},
            ],
        }
    ]
}


def answer_after_decisions(request: RecordedRequest) -> Reply:
    """conftest's marker model, except that a `[[bash:X]]` job answers with its call's result
    wherever it is in the conversation: after a denial the resumed run adds a prompt of its
    own after the result, and a model that asked again would wait again."""
    results = [
        block
        for message in (request.body or {}).get("messages") or []
        if message.get("role") == "user" and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    if "[[ask:" in request.prompt_text() and not results:
        return ToolUse("AskUserQuestion", QUESTIONS)
    if ("[[bash:" in request.prompt_text() or "[[ask:" in request.prompt_text()) and results:
        return Text("\n".join(_text(block.get("content")) for block in results))
    return answer(request)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


@pytest.fixture(scope="module")
def approval_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    with FakeAnthropic(default=answer_after_decisions, api_key=ANTHROPIC_KEY) as fake:
        env = base_env(
            ANTHROPIC_API_KEY=ANTHROPIC_KEY,
            ANTHROPIC_BASE_URL=fake.url,
            CLAUDE_JOBS_DEV_KEYS=",".join(f"{t}:{k}" for t, k in TENANTS.items()),
            CLAUDE_JOBS_RECONCILE_SECONDS=str(SWEEP_SECONDS),
        )
        dev = start_dev(tmp_path_factory.mktemp("approvals"), env, workers=4)
        try:
            yield dev
        finally:
            assert dev.stop() == 0, dev.output()


def _http(stack: DevProcess, tenant: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url,
        headers={"Authorization": f"Bearer {TENANTS[tenant]}"},
        timeout=60,
    )


def _bash_job(client: Client, command: str, **options: Any) -> tuple[str, str]:
    """Submit a job whose one Bash call (`command`) waits for approval: (job id, marker)."""
    marker = f"apr-{uuid.uuid4().hex[:10]}"
    BASH_COMMANDS[marker] = command
    job = client.submit(
        f"run it [[bash:{marker}]]",
        allowed_tools=["Bash"],
        approvals=["Bash"],
        max_turns=5,
        **options,
    )
    return str(job["job_id"]), marker


def _until(client: Client, job_id: str, status: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = dict(client.get(job_id, wait=5))
        if job["status"] == status:
            return job
        assert job["status"] not in {"succeeded", "failed", "cancelled", "timed_out"} or (
            status in {"succeeded", "failed", "cancelled", "timed_out"}
        ), job
        assert time.monotonic() < deadline, f"{job_id} still {job['status']}, not {status}"


def _decide(
    http: httpx.Client, job_id: str, approval_id: str, body: dict[str, Any]
) -> httpx.Response:
    return http.post(f"/v1/jobs/{job_id}/approvals/{approval_id}", json=body)


def test_waiting_jobs_hold_no_worker_and_each_decision_is_carried_out(
    approval_stack: DevProcess,
) -> None:
    stack = approval_stack
    with (
        Client(stack.url, TENANTS["alpha"], timeout=60) as alpha,
        Client(stack.url, TENANTS["beta"], timeout=60) as beta,
        _http(stack, "alpha") as alpha_http,
        _http(stack, "beta") as beta_http,
    ):
        # Given four jobs of alpha whose Bash call waits for a person
        jobs = [_bash_job(alpha, f"echo ran-{i}-$((6*7))") for i in range(WAITING)]
        waiting = [_until(alpha, job_id, "awaiting_approval") for job_id, _ in jobs]
        for job in waiting:
            pending = job["pending_approval"]
            assert pending["tool"] == "Bash"
            assert pending["rule"] == "Bash"
            assert "echo ran-" in pending["input"]
            assert pending["expires_at"] > pending["requested_at"]

        # While they wait, a job of beta and a fifth job of alpha run and finish: the
        # waiting jobs hold no worker and no share of alpha's two running jobs.
        other = beta.submit("[[echo:beta-while-waiting]]")
        fifth = alpha.submit("[[echo:alpha-fifth]]")
        assert beta.wait(other["job_id"], timeout=120)["status"] == "succeeded"
        assert alpha.wait(fifth["job_id"], timeout=120)["status"] == "succeeded"
        for job_id, _ in jobs:
            assert alpha.get(job_id)["status"] == "awaiting_approval"

        # The tenant's pending approvals, and nobody else's
        listed = alpha_http.get("/v1/approvals")
        assert listed.status_code == 200, listed.text
        ids = {item["job_id"] for item in listed.json()["items"]}
        assert {job_id for job_id, _ in jobs} <= ids
        assert not {job_id for job_id, _ in jobs} & {
            item["job_id"] for item in beta_http.get("/v1/approvals").json()["items"]
        }

        (allowed, allowed_marker), (denied, _), (cancelled, _), (stale, _) = jobs
        allowed_approval = waiting[0]["pending_approval"]["approval_id"]
        denied_approval = waiting[1]["pending_approval"]["approval_id"]
        usage_before = waiting[0]["usage"]

        # Another tenant cannot see or decide it
        assert (
            _decide(beta_http, allowed, allowed_approval, {"decision": "allow"}).status_code == 404
        )
        # A decision on an id that is not the pending one
        assert (
            _decide(alpha_http, stale, "apr-not-this-one", {"decision": "allow"}).status_code == 409
        )

        # Allow: the call runs, the job goes on and finishes
        decided = _decide(alpha_http, allowed, allowed_approval, {"decision": "allow"})
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "queued"
        # A second decision
        again = _decide(alpha_http, allowed, allowed_approval, {"decision": "deny"})
        assert again.status_code == 409, again.text
        done = alpha.wait(allowed, timeout=120)
        assert done["status"] == "succeeded", done
        assert "ran-0-42" in done["result"]["text"]
        # The usage adds up across the wait
        assert done["usage"]["num_turns"] > usage_before["num_turns"]
        assert done["usage"]["input_tokens"] > usage_before["input_tokens"]
        assert done.get("pending_approval") is None

        # Deny: the call never runs; the agent sees the message and goes on
        message = f"not on a Friday {uuid.uuid4().hex[:6]}"
        denial = _decide(
            alpha_http, denied, denied_approval, {"decision": "deny", "message": message}
        )
        assert denial.status_code == 200, denial.text
        done = alpha.wait(denied, timeout=120)
        assert done["status"] == "succeeded", done
        assert message in done["result"]["text"]
        assert "ran-1-42" not in done["result"]["text"]

        # Cancel while waiting
        assert alpha.cancel(cancelled)["status"] == "cancelled"
        assert alpha.get(cancelled)["status"] == "cancelled"

        # The waiting job's events show the request
        events = alpha.events(allowed)["items"]
        assert any(e.get("type") == "approval_requested" for e in events), events
        del allowed_marker


def test_an_unanswered_approval_expires(approval_stack: DevProcess) -> None:
    with Client(approval_stack.url, TENANTS["alpha"], timeout=60) as alpha:
        job_id, _ = _bash_job(alpha, "echo never-$((6*7))", approval_timeout_seconds=10)
        _until(alpha, job_id, "awaiting_approval")
        ended = _until(alpha, job_id, "failed", timeout=10 + 6 * SWEEP_SECONDS + 30)
        assert ended["error"]["code"] == "approval_expired", ended
        assert ended.get("pending_approval") is None


def test_the_agents_question_is_answered_through_the_api(approval_stack: DevProcess) -> None:
    with Client(approval_stack.url, TENANTS["alpha"], timeout=60) as alpha:
        # Given a job that allows the agent to ask, and an agent that asks
        job = alpha.submit(
            f"ask me [[ask:{uuid.uuid4().hex[:8]}]]", allowed_tools=["AskUserQuestion"]
        )
        waiting = _until(alpha, str(job["job_id"]), "awaiting_approval")
        pending = waiting["pending_approval"]
        assert pending["tool"] == "AskUserQuestion" and pending.get("rule") is None
        assert QUESTION in pending["input"]
        # When the caller answers it
        decided = alpha.decide(
            str(job["job_id"]), pending["approval_id"], "allow", answers={QUESTION: "Blue"}
        )
        assert decided["status"] == "queued"
        # Then the agent goes on with the answer
        done = alpha.wait(str(job["job_id"]), timeout=120)
        assert done["status"] == "succeeded", done
        assert QUESTION in done["result"]["text"] and "Blue" in done["result"]["text"]


def test_the_cli_shows_what_waits_and_answers_it(approval_stack: DevProcess) -> None:
    env = base_env(CLAUDE_JOBS_URL=approval_stack.url, CLAUDE_JOBS_API_KEY=TENANTS["alpha"])
    marker = f"apr-cli-{uuid.uuid4().hex[:8]}"
    BASH_COMMANDS[marker] = f"echo {marker}-ran-$((6*7))"
    # Given `claude-jobs submit --wait` on a job whose call waits for approval
    waiting = subprocess.Popen(
        [
            CLAUDE_JOBS,
            "submit",
            f"run it [[bash:{marker}]]",
            "--tools",
            "Bash",
            "--approve-rule",
            "Bash",
            "--wait",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # When `claude-jobs approvals` lists it and `claude-jobs approve` allows it
        deadline = time.monotonic() + 120
        job_id = None
        while job_id is None:
            assert time.monotonic() < deadline, "the job never waited"
            listed = subprocess.run(
                [CLAUDE_JOBS, "approvals", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert listed.returncode == 0, listed.stderr
            job_id = next(
                (
                    item["job_id"]
                    for item in json.loads(listed.stdout)["items"]
                    if marker in item["pending_approval"]["input"]
                ),
                None,
            )
            if job_id is None:
                time.sleep(1)
        approved = subprocess.run(
            [CLAUDE_JOBS, "approve", job_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert approved.returncode == 0, approved.stderr
        # Then the waiting `submit --wait` showed the call and how to answer, and ends with
        # the job's answer
        stdout, stderr = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, stderr
    shown = stdout + stderr
    assert "claude-jobs approve" in shown and "Bash" in shown, shown
    assert f"{marker}-ran-42" in stdout, shown
