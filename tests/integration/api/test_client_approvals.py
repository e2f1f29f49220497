"""The client and the CLI against the real API handlers over real HTTP (a loopback server that
turns each request into an API Gateway event, as the gateway does; moto behind).

A job is put into `awaiting_approval` through the repository, as the worker does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from claude_jobs.clock import utcnow
from claude_jobs.definitions import FUNCTIONS
from claude_jobs.models import JobStatus
from claude_jobs.ports import Transition
from claude_jobs_client import ApiError, Client, WaitTimeoutError
from claude_jobs_tools.api_gateway_events import match_resource, rest_event
from claude_jobs_tools.cli.main import app
from tests.support.approvals import make_wait
from tests.support.servers import serving

from .conftest import OTHER_TENANT, TENANT, Api

#: API keys of the loopback gateway, and their tenants (its stand-in authorizer).
KEYS = {"key-a": TENANT, "key-b": OTHER_TENANT}


class Gateway:
    """WSGI: a request → an API Gateway proxy event → the route's real handler → its answer."""

    def __init__(self, api: Api) -> None:
        self.api = api
        #: Set once a job was answered to a caller as waiting for a decision (what the CLI's
        #: notice shows).
        self.served_waiting = threading.Event()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        resource, _ = match_resource(request.path)
        route = next((r for f in FUNCTIONS.values() for r in f.routes if r.path == resource), None)
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if route is None or key not in KEYS:
            return Response('{"title":"no"}', 404 if route is None else 401)(
                environ, start_response
            )
        event = rest_event(
            request.method,
            request.path,
            headers=dict(request.headers),
            query=dict(request.args),
            body=request.get_data(as_text=True) or None,
            authorizer={"tenant_id": KEYS[key], "key_id": "0a1b2c3d4e5f"},
        )
        module = self.api.submit if route.function == "submit" else self.api.status
        answer = self.api.call(module, event)
        body = answer.text or ""
        if resource == "/v1/jobs/{job_id}" and '"status":"awaiting_approval"' in body:
            self.served_waiting.set()
        return Response(body, answer.status, headers=answer.headers)(environ, start_response)


@pytest.fixture
def gateway(api: Api) -> Gateway:
    return Gateway(api)


@pytest.fixture
def url(gateway: Gateway) -> Iterator[str]:
    with serving(make_server("127.0.0.1", 0, gateway, threaded=True)) as server:
        yield server.url


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, "key-a", timeout=10) as c:
        yield c


def waiting(api: Api, client: Client, **wait: Any) -> str:
    job_id = str(client.submit("Push the fix.")["job_id"])
    make_wait(api.container.job_repository, job_id, **wait)
    return job_id


def finish(api: Api, job_id: str) -> None:
    repo = api.container.job_repository
    repo.transition(Transition(job_id=job_id, to=JobStatus.RUNNING, from_=[JobStatus.QUEUED]))
    repo.transition(
        Transition(
            job_id=job_id,
            to=JobStatus.SUCCEEDED,
            set_fields={"result": {"text": "pushed", "is_error": False}, "finished_at": utcnow()},
        )
    )


def cli(url: str, *args: str, key: str = "key-a") -> Any:
    env = {"CLAUDE_JOBS_URL": url, "CLAUDE_JOBS_API_KEY": key}
    return CliRunner().invoke(app, list(args), env=env)


# ---------------------------------------------------------------- the client


def test_the_client_lists_and_decides(api: Api, client: Client) -> None:
    # Given two waiting jobs of the tenant
    first, second = waiting(api, client), waiting(api, client)
    # When it lists its approvals (one a page) and answers them
    items = list(client.iter_approvals(page_size=1))
    assert sorted(i["job_id"] for i in items) == sorted([first, second])
    by_job = {i["job_id"]: i["pending_approval"]["approval_id"] for i in items}
    allowed = client.approve(first, by_job[first])
    denied = client.deny(second, by_job[second], "use a pull request")
    # Then both are queued again with the decisions recorded
    assert allowed["status"] == denied["status"] == "queued"
    decision = api.container.job_repository.get(second)
    assert decision is not None and decision.approval_decision is not None
    assert decision.approval_decision.message == "use a pull request"
    assert client.approvals()["items"] == []
    # And a second decision is a 409, another tenant's job a 404
    with pytest.raises(ApiError) as conflict:
        client.approve(first, by_job[first])
    assert conflict.value.status == 409
    third = waiting(api, client)
    with Client(client.base_url, "key-b") as other, pytest.raises(ApiError) as missing:
        other.decide(third, "apr-x", "allow")
    assert missing.value.status == 404


def test_wait_returns_a_waiting_job_only_when_asked(api: Api, client: Client) -> None:
    job_id = waiting(api, client)
    # until_waiting: the waiting job comes back at once
    started = time.monotonic()
    job = client.wait(job_id, until_waiting=True, timeout=30)
    assert job["status"] == "awaiting_approval" and job["pending_approval"]["tool"] == "Bash"
    assert time.monotonic() - started < 5
    # Otherwise it is not finished: the wait goes on (and on_update sees it waiting)
    seen: list[str] = []
    with pytest.raises(WaitTimeoutError) as gave_up:
        client.wait(job_id, timeout=2.5, on_update=lambda j: seen.append(j["status"]))
    assert gave_up.value.job["status"] == "awaiting_approval"
    assert seen and set(seen) == {"awaiting_approval"}


def test_a_watched_wait_sees_a_job_waiting_already_at_once(api: Api, client: Client) -> None:
    # Given a job that waits for a decision already
    job_id = waiting(api, client)
    seen_waiting = threading.Event()
    outcome: list[Any] = []

    def watch(job: Any) -> None:
        if job["status"] == "awaiting_approval":
            seen_waiting.set()

    def wait() -> None:
        outcome.append(client.wait(job_id, timeout=60, on_update=watch))

    # When a caller waits for it, watching each answer (as `submit --wait --quiet` does)
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    # Then it sees the job waiting at once, not when a 20 s long poll ends
    assert seen_waiting.wait(10), "the first answer was held by a long poll"
    # And the wait goes on to the job's end (decided, run and finished)
    repo = api.container.job_repository
    repo.transition(
        Transition(job_id=job_id, to=JobStatus.QUEUED, from_=[JobStatus.AWAITING_APPROVAL])
    )
    finish(api, job_id)
    waiter.join(30)
    assert outcome and outcome[0]["status"] == "succeeded"


# ---------------------------------------------------------------- the CLI


def test_cli_approvals_and_approve(api: Api, client: Client, url: str) -> None:
    job_id = waiting(api, client)
    listed = cli(url, "approvals")
    assert listed.exit_code == 0, listed.output
    assert job_id in listed.output and "Bash(git push:*)" in listed.output
    denied = cli(url, "approve", job_id, "--deny", "--message", "not on main")
    assert denied.exit_code == 0, denied.output
    assert f"{job_id} queued (denied Bash)" in denied.output
    job = api.container.job_repository.get(job_id)
    assert job is not None and job.approval_decision is not None
    assert (job.approval_decision.decision, job.approval_decision.message) == (
        "deny",
        "not on main",
    )
    # A job that waits for nothing: a clear error, exit 2
    again = cli(url, "approve", job_id)
    assert again.exit_code == 2 and "nothing waits for a decision" in again.output
    assert "nothing waits" in cli(url, "approvals").output


def test_cli_answers_a_question(api: Api, client: Client, url: str) -> None:
    job_id = waiting(api, client, tool="AskUserQuestion")
    bad = cli(url, "approve", job_id, "--answer", "no-equals-sign")
    assert bad.exit_code == 2
    missing = cli(url, "approve", job_id)
    assert missing.exit_code == 2 and "answers" in missing.output
    answered = cli(url, "approve", job_id, "--answer", "Which branch?=feature/x=1")
    assert answered.exit_code == 0, answered.output
    job = api.container.job_repository.get(job_id)
    assert job is not None and job.approval_decision is not None
    assert job.approval_decision.answers == {"Which branch?": "feature/x=1"}


@pytest.mark.parametrize("quiet", [True, False])
def test_submit_wait_shows_what_waits_and_keeps_waiting(
    api: Api, gateway: Gateway, url: str, quiet: bool
) -> None:
    # Given a "worker" that stops the job at a call once the CLI's long-poll is under way (a
    # long-poll answers a job that *becomes* awaiting_approval at once; one that already waits
    # when it begins is held, unchanged, for its whole `wait`), (for the live view) appends its
    # status event, and once the call is allowed finishes the job
    repo = api.container.job_repository
    polling = threading.Event()
    read_control = repo.control

    def control(job_id: str) -> Any:
        polling.set()  # a long-poll read the job and now polls it
        return read_control(job_id)

    repo.control = control  # type: ignore[method-assign]

    def worker() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            jobs = repo.list_for_tenant(TENANT, 1).jobs
            if jobs:
                break
            time.sleep(0.05)
        job_id = jobs[0].job_id
        polling.wait(20)
        deadline = time.monotonic() + 20
        waited = make_wait(repo, job_id)
        api.container.event_store.append(
            job_id,
            [
                {"seq": 1, "at": utcnow().isoformat(), "type": "status", "status": "queued"},
                {
                    "seq": 2,
                    "at": utcnow().isoformat(),
                    "type": "status",
                    "status": waited.status.value,
                },
            ],
        )
        while time.monotonic() < deadline:
            current = repo.get(job_id)
            if current is not None and current.status is JobStatus.QUEUED:
                finish(api, job_id)
                return
            if current is not None and not current.pending_approval:
                return
            time.sleep(0.1)

    def decider() -> None:
        with Client(url, "key-a") as c:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                items = c.approvals()["items"]
                if items:
                    # (once the CLI was answered the job as waiting: what it shows)
                    gateway.served_waiting.wait(20)
                    c.approve(items[0]["job_id"], items[0]["pending_approval"]["approval_id"])
                    return
                time.sleep(0.1)

    threads = [threading.Thread(target=worker), threading.Thread(target=decider)]
    for t in threads:
        t.start()
    args = ["submit", "Push the fix.", "--wait", "--wait-timeout", "30"]
    result = cli(url, *args, *(["--quiet"] if quiet else []))
    for t in threads:
        t.join(timeout=30)
    # Then the CLI showed the waiting call and how to answer it, and went on to the result
    assert result.exit_code == 0, result.output
    assert gateway.served_waiting.is_set()
    output = result.output
    assert "waiting for approval: Bash" in output
    assert '"command": "git push origin main"' in output
    assert "rule:    Bash(git push:*)" in output
    assert "claude-jobs approve " in output and "--deny --message" in output
    assert "pushed" in output


def test_status_shows_the_pending_approval(api: Api, client: Client, url: str) -> None:
    job_id = waiting(api, client)
    shown = cli(url, "status", job_id)
    assert shown.exit_code == 0, shown.output
    assert "awaiting_approval" in shown.output
    assert f"allow:   claude-jobs approve {job_id}" in shown.output


def test_cli_submit_takes_approval_rules_and_timeout(api: Api, url: str) -> None:
    # Given rules on an allowed tool: the job carries them
    args = ["submit", "Push it.", "--tools", "Bash", "--tools", "Read"]
    rules = ["--approve-rule", "Bash(git push:*)", "--approve-rule", "Bash(rm:*)"]
    done = cli(url, *args, *rules, "--approval-timeout", "600", "--quiet")
    assert done.exit_code == 0, done.output
    (job,) = api.container.job_repository.list_for_tenant(TENANT, 10).jobs
    assert job.job_id in done.output
    assert job.options.approvals == ["Bash(git push:*)", "Bash(rm:*)"]
    assert job.options.approval_timeout_seconds == 600
    # And a rule on a tool the job does not allow is refused, saying why
    refused = cli(url, "submit", "x", "--tools", "Read", "--approve-rule", "Write")
    assert refused.exit_code == 2
    assert "approval rule 'Write'" in refused.output
