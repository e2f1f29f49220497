"""The client library and the client commands against a tiny stand-in API over real HTTP.

The stand-in keeps jobs in memory and follows the contract's shapes: 202 on submit, problem+json
on errors, `?wait=` answered at once (each poll of the job or of its events advances it one
step, adding its progress events). The full service is
covered by tests/e2e against the local stack.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from typer.testing import CliRunner
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from claude_jobs_client import ApiError, Client, WaitTimeoutError
from claude_jobs_tools.cli.main import app
from tests.support.servers import serving

KEY = "test-key-0123456789abcdef"


@dataclass
class StandInApi:
    """Jobs go queued → running → <outcome> one step per GET."""

    outcome: str = "succeeded"
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    throttle_next: int = 0
    #: Retry-After on unfinished answers (a front that answers a long-poll at once sends it)
    retry_after: str | None = None
    events_route: bool = True  # False: an older deployment without progress events
    #: The next status reads answered 502 (a long-poll that overran its function's time)
    gateway_errors: int = 0
    #: The next submissions answered 502 after the job was made (a submit function that
    #: overran its time while its work went on)
    submit_gateway_errors: int = 0
    #: Idempotency-Key → the job it made
    keyed: dict[str, str] = field(default_factory=dict)

    def problem(self, status: int, title: str, detail: str) -> Response:
        body = {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "request_id": "req-1",
        }
        return Response(json.dumps(body), status, content_type="application/problem+json")

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append((request.method, request.full_path, dict(request.headers)))
        return self.route(request)(environ, start_response)

    def route(self, request: Request) -> Response:
        if self.throttle_next:
            self.throttle_next -= 1
            return Response("{}", 429, headers={"Retry-After": "0"})
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return self.problem(401, "Unauthorized", "Missing or invalid API key.")
        parts = request.path.strip("/").split("/")
        if request.method == "POST" and parts == ["v1", "jobs"]:
            body = request.get_json()
            if not body.get("prompt"):
                return self.problem(422, "Unprocessable Content", "The request is not valid.")
            key = request.headers.get("Idempotency-Key")
            job_id = self.keyed.setdefault(key, str(uuid.uuid4())) if key else str(uuid.uuid4())
            if self.submit_gateway_errors:
                self.submit_gateway_errors -= 1
                self.jobs.setdefault(job_id, {"job_id": job_id, "status": "queued", "events": []})
                return Response('{"message":"Internal server error"}', 502)
            self.jobs[job_id] = {
                "job_id": job_id,
                "status": "queued",
                "created_at": "2026-11-22T00:00:00Z",
                "attempts": 0,
                "request": {k: v for k, v in body.items() if k != "prompt"},
                "metadata": body.get("metadata", {}),
                "links": {"self": f"/v1/jobs/{job_id}"},
                "prompt": body["prompt"],
                "events": [],
            }
            self.event(self.jobs[job_id], type="status", status="queued")
            accepted = {
                k: self.jobs[job_id][k] for k in ("job_id", "status", "created_at", "links")
            }
            return Response(json.dumps(accepted), 202, content_type="application/json")
        if request.method == "GET" and parts == ["v1", "jobs"]:
            items = [self.public(j) for j in reversed(self.jobs.values())]
            return Response(json.dumps({"items": items}), content_type="application/json")
        if len(parts) >= 3 and parts[:2] == ["v1", "jobs"] and parts[2] in self.jobs:
            job = self.jobs[parts[2]]
            if request.method == "POST" and parts[3:] == ["cancel"]:
                job["status"] = "cancelled"
                return Response(json.dumps(self.public(job)), 202, content_type="application/json")
            if request.method == "GET" and len(parts) == 3:
                if self.gateway_errors:
                    self.gateway_errors -= 1
                    return Response('{"message":"Internal server error"}', 502)
                self.advance(job)
                headers = {}
                if self.retry_after and job["status"] in ("queued", "running"):
                    headers["Retry-After"] = self.retry_after
                return Response(
                    json.dumps(self.public(job)), headers=headers, content_type="application/json"
                )
            if request.method == "GET" and parts[3:] == ["events"] and self.events_route:
                if self.gateway_errors:
                    self.gateway_errors -= 1
                    return Response('{"message":"Internal server error"}', 504)
                after = request.args.get("after", "0")
                if not after.isdigit():
                    return self.problem(422, "Unprocessable Content", "after is not valid.")
                self.advance(job)
                items = [e for e in job["events"] if e["seq"] > int(after)]
                page = {
                    "items": items,
                    "next_cursor": str(items[-1]["seq"]) if items else after,
                    "done": job["status"] not in ("queued", "running"),
                }
                return Response(json.dumps(page), content_type="application/json")
        return self.problem(404, "Not Found", "No such job.")

    @staticmethod
    def event(job: dict[str, Any], **event: Any) -> None:
        seq = len(job["events"]) + 1
        job["events"].append({"seq": seq, "at": "2026-11-22T00:00:01Z", **event})

    def advance(self, job: dict[str, Any]) -> None:
        if job["status"] == "queued":
            job["status"] = "running"
            self.event(job, type="status", status="running")
            self.event(job, type="tool_use", tool="Bash", input='{"command":"ls -la"}')
            self.event(job, type="tool_result", tool="Bash", is_error=False)
            self.event(job, type="text", text="Looking at the files.", truncated=False)
            self.event(job, type="usage", input_tokens=7, output_tokens=3, total_cost_usd=0.0123)
        elif job["status"] == "running":
            job["status"] = self.outcome
            self.event(job, type="status", status=self.outcome)
            job["usage"] = {
                "input_tokens": 12,
                "output_tokens": 5,
                "total_cost_usd": 0.001,
                "num_turns": 1,
                "duration_ms": 900,
            }
            if self.outcome == "succeeded":
                job["result"] = {"text": f"echo: {job['prompt']}", "is_error": False}
            else:
                job["error"] = {"code": "agent_error", "message": "it broke"}

    @staticmethod
    def public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k not in ("prompt", "events")}


@pytest.fixture
def api() -> Iterator[tuple[StandInApi, str]]:
    stand_in = StandInApi()
    with serving(make_server("127.0.0.1", 0, stand_in, threaded=True)) as server:
        yield stand_in, server.url


def run_cli(url: str, *args: str, key: str = KEY) -> Any:
    env = {"CLAUDE_JOBS_URL": url, "CLAUDE_JOBS_API_KEY": key}
    return CliRunner().invoke(app, list(args), env=env)


# ---------------------------------------------------------------- library


def test_submit_then_wait_long_polls_until_terminal(api: tuple[StandInApi, str]) -> None:
    stand_in, url = api
    # Given a client with a key
    with Client(url, KEY) as client:
        # When a job is submitted with options and waited for
        accepted = client.submit("hi", allowed_tools=["Read"], max_turns=3, idempotency_key="k")
        seen: list[str] = []
        job = client.wait(accepted["job_id"], on_update=lambda j: seen.append(j["status"]))
    # Then the body carried only the given options, the first look (watched: on_update) did
    # not wait, the next poll used ?wait=20, and it ended
    method, _, headers = stand_in.requests[0]
    assert method == "POST" and headers["Idempotency-Key"] == "k"
    assert stand_in.jobs[accepted["job_id"]]["request"] == {
        "allowed_tools": ["Read"],
        "max_turns": 3,
    }
    assert [p for m, p, _ in stand_in.requests[1:]] == [
        f"/v1/jobs/{accepted['job_id']}?wait={seconds}" for seconds in (0, 20)
    ]
    assert seen == ["running", "succeeded"]
    assert client.download_result(job) == "echo: hi"


def test_errors_carry_the_problem(api: tuple[StandInApi, str]) -> None:
    _, url = api
    # Given a client with a wrong key, When it reads a job, Then the 401 problem is raised
    with Client(url, "wrong-key-0123456789") as client, pytest.raises(ApiError) as caught:
        client.get("nope")
    assert caught.value.status == 401
    assert caught.value.problem["title"] == "Unauthorized"
    assert caught.value.request_id == "req-1"


def test_throttled_requests_are_retried_after_retry_after(api: tuple[StandInApi, str]) -> None:
    stand_in, url = api
    # Given an API that throttles the next two requests
    stand_in.throttle_next = 2
    # When a job is submitted, Then it goes through on the third try
    with Client(url, KEY) as client:
        assert client.submit("x")["status"] == "queued"
    assert len(stand_in.jobs) == 1


def test_wait_pauses_for_retry_after_when_a_long_poll_is_answered_early(
    api: tuple[StandInApi, str],
) -> None:
    stand_in, url = api
    # Given an API that answers ?wait=20 at once, unfinished, with Retry-After: 3
    stand_in.retry_after = "3"
    pauses: list[float] = []
    with Client(url, KEY, sleep=pauses.append) as client:
        job_id = client.submit("x")["job_id"]
        # When the client waits for the job
        job = client.wait(job_id)
    # Then it paused as told after the early unfinished answer instead of asking again at
    # once, and not after the final one
    assert job["status"] == "succeeded"
    assert pauses == [3.0]
    assert len([r for r in stand_in.requests if r[0] == "GET"]) == 2


def test_wait_rides_out_a_few_gateway_errors_and_raises_on_more(
    api: tuple[StandInApi, str],
) -> None:
    stand_in, url = api
    # Given status reads that answer 502 three times in a row (a long-poll that overran its
    # function's time on a loaded deployment)
    stand_in.gateway_errors = 3
    pauses: list[float] = []
    with Client(url, KEY, sleep=pauses.append) as client:
        job_id = client.submit("x")["job_id"]
        # When the client waits for the job, Then it asks again after growing pauses and
        # returns the job's end
        assert client.wait(job_id)["status"] == "succeeded"
        assert pauses == [1.0, 2.0, 4.0]
        # And a fourth gateway error in a row is raised, as is any other error at once
        stand_in.gateway_errors = 4
        other = client.submit("y")["job_id"]
        with pytest.raises(ApiError) as caught:
            client.wait(other)
        assert caught.value.status == 502
        with pytest.raises(ApiError) as missing:
            client.wait("no-such-job")
        assert missing.value.status == 404


def test_following_events_rides_out_a_few_gateway_errors_and_raises_on_more(
    api: tuple[StandInApi, str],
) -> None:
    stand_in, url = api
    pauses: list[float] = []
    with Client(url, KEY, sleep=pauses.append) as client:
        job_id = client.submit("x")["job_id"]
        # Given event reads that answer 504 three times in a row
        stand_in.gateway_errors = 3
        # When the client follows the job's events, Then it asks again after growing pauses
        # and yields every event once, in order, to the job's end
        seqs = [e["seq"] for e in client.iter_events(job_id)]
        assert pauses == [1.0, 2.0, 4.0]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 3
        # And a fourth gateway error in a row is raised
        stand_in.gateway_errors = 4
        other = client.submit("y")["job_id"]
        with pytest.raises(ApiError) as caught:
            list(client.iter_events(other))
        assert caught.value.status == 504


def test_a_submit_with_an_idempotency_key_rides_out_gateway_errors(
    api: tuple[StandInApi, str],
) -> None:
    stand_in, url = api
    pauses: list[float] = []
    with Client(url, KEY, sleep=pauses.append) as client:
        # Given submissions that answer 502 twice though the job was made (a submit function
        # that overran its time on a loaded deployment, its work going on)
        stand_in.submit_gateway_errors = 2
        # When a job is submitted with an Idempotency-Key, Then the client asks again after
        # growing pauses and gets the one job the key made
        accepted = client.submit("x", idempotency_key="burst-1")
        assert pauses == [1.0, 2.0]
        assert accepted["job_id"] == stand_in.keyed["burst-1"]
        assert len(stand_in.jobs) == 1
        # And without a key a gateway error is raised at once (asking again could make a
        # second job)
        stand_in.submit_gateway_errors = 1
        with pytest.raises(ApiError) as caught:
            client.submit("y")
        assert caught.value.status == 502 and pauses == [1.0, 2.0]
        # And a fourth gateway error in a row is raised, key or not
        stand_in.submit_gateway_errors = 4
        with pytest.raises(ApiError) as again:
            client.submit("z", idempotency_key="burst-2")
        assert again.value.status == 502 and pauses == [1.0, 2.0, 1.0, 2.0, 4.0]


def test_wait_gives_up_after_its_timeout(api: tuple[StandInApi, str]) -> None:
    _, url = api
    # Given a clock that jumps past the timeout after the first poll
    ticks = iter([0.0, 0.0, 100.0, 100.0])
    with Client(url, KEY, clock=lambda: next(ticks)) as client:
        job_id = client.submit("x")["job_id"]
        # When waiting with a 5 s timeout, Then it raises with the last state seen
        with pytest.raises(WaitTimeoutError) as caught:
            client.wait(job_id, timeout=5)
    assert caught.value.job["status"] == "running"


# ---------------------------------------------------------------- commands


def test_submit_wait_prints_the_result_and_exits_zero(api: tuple[StandInApi, str]) -> None:
    stand_in, url = api
    # When `submit --wait` runs with tools given both ways
    result = run_cli(
        url,
        "submit",
        "hello",
        "--tools",
        "Read,Grep",
        "--tools",
        "Glob",
        "--max-turns",
        "4",
        "--timeout",
        "60",
        "--wait",
    )
    # Then it prints the result text and a usage line, and exits 0
    assert result.exit_code == 0, result.output
    assert "echo: hello" in result.stdout
    assert "succeeded" in result.stdout
    job = next(iter(stand_in.jobs.values()))
    assert job["request"] == {
        "allowed_tools": ["Read", "Grep", "Glob"],
        "max_turns": 4,
        "timeout_seconds": 60,
    }


def test_submit_rides_out_a_gateway_error_with_a_key_of_its_own(
    api: tuple[StandInApi, str],
) -> None:
    stand_in, url = api
    # Given a submission that answers 502 though the job was made (a submit function that
    # overran its time on a loaded deployment)
    stand_in.submit_gateway_errors = 1
    # When `submit --wait` runs without an idempotency key
    result = run_cli(url, "submit", "hello", "--wait")
    # Then it asked again with the same key of its own, got the one job and its result
    assert result.exit_code == 0, result.output
    assert "echo: hello" in result.stdout
    keys = [h.get("Idempotency-Key") for m, p, h in stand_in.requests if m == "POST"]
    assert len(keys) == 2 and keys[0] == keys[1] and str(keys[0]).startswith("cli-")
    assert len(stand_in.jobs) == 1
    # And each command has a key of its own; a key given is the one sent
    run_cli(url, "submit", "again")
    run_cli(url, "submit", "mine", "--idempotency-key", "release-42")
    keys = [h.get("Idempotency-Key") for m, p, h in stand_in.requests if m == "POST"]
    assert len(set(keys)) == 3 and keys[-1] == "release-42"


def test_submit_wait_shows_progress_events_as_they_come(api: tuple[StandInApi, str]) -> None:
    stand_in, url = api
    # When `submit --wait` follows a job that calls a tool and writes text
    result = run_cli(url, "submit", "hello", "--wait")
    # Then its progress shows on stderr: the tool call with its input, its result, the text,
    # the statuses; and the result on stdout
    assert result.exit_code == 0, result.output
    for shown in ("running", '→ Bash {"command":"ls -la"}', "✓ Bash", "Looking at the files."):
        assert shown in result.stderr, result.stderr
    assert "echo: hello" in result.stdout
    # And it followed the events route, long-polling from the last cursor it saw
    paths = [p for m, p, _ in stand_in.requests if "/events" in p]
    assert paths and "after=6" in paths[-1]


def test_wait_falls_back_to_the_job_on_a_deployment_without_events(
    api: tuple[StandInApi, str],
) -> None:
    stand_in, url = api
    stand_in.events_route = False
    # When `submit --wait` runs against a deployment that has no events route
    result = run_cli(url, "submit", "hello", "--wait")
    # Then it still waits for and prints the result
    assert result.exit_code == 0, result.output
    assert "echo: hello" in result.stdout


def test_events_prints_lines_or_json_lines(api: tuple[StandInApi, str]) -> None:
    _, url = api
    job_id = run_cli(url, "submit", "hello").stdout.strip()
    # When `events --follow --json` runs
    followed = run_cli(url, "events", job_id, "--follow", "--json")
    # Then stdout is one JSON event per line, in order, to the terminal status
    assert followed.exit_code == 0, followed.output
    events = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["status"] == "queued" and events[-1]["status"] == "succeeded"
    # And `events --after 2` (no --follow) prints the newer ones as lines, with the cost
    later = run_cli(url, "events", job_id, "--after", "2")
    assert later.exit_code == 0, later.output
    assert "→ Bash" in later.stdout and "$0.0123" in later.stdout
    assert "queued" not in later.stdout
    # And the client's iterator stops at what is stored without `follow`
    with Client(url, KEY) as client:
        assert [e["seq"] for e in client.iter_events(job_id, follow=False)][-1] == len(events)
        with pytest.raises(ApiError) as caught:
            client.events(job_id, after="x")
        assert caught.value.status == 422


def test_a_failed_job_exits_one(api: tuple[StandInApi, str]) -> None:
    stand_in, url = api
    stand_in.outcome = "failed"
    result = run_cli(url, "submit", "hello", "--wait")
    assert result.exit_code == 1
    assert "it broke" in result.stderr


def test_submit_prints_the_id_and_json_modes_print_the_body(api: tuple[StandInApi, str]) -> None:
    stand_in, url = api
    # When a job is submitted without --wait, Then stdout is just its id
    submitted = run_cli(url, "submit", "hello", "--tools", "")
    assert submitted.exit_code == 0
    job_id = submitted.stdout.strip()
    assert job_id in stand_in.jobs
    assert stand_in.jobs[job_id]["request"] == {"allowed_tools": []}
    # And status/list/cancel --json print the API's JSON
    status = run_cli(url, "status", job_id, "--json")
    assert json.loads(status.stdout)["status"] == "running"
    listing = run_cli(url, "list", "--json")
    assert [j["job_id"] for j in json.loads(listing.stdout)["items"]] == [job_id]
    cancelled = run_cli(url, "cancel", job_id, "--json")
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    # And a cancelled job's status exits 1
    assert run_cli(url, "status", job_id).exit_code == 1


def test_api_errors_exit_two_with_the_problem_on_stderr(api: tuple[StandInApi, str]) -> None:
    _, url = api
    result = run_cli(url, "status", "nope", key="wrong-key-0123456789")
    assert result.exit_code == 2
    assert "401 Unauthorized" in result.stderr


def test_an_unreachable_api_exits_two() -> None:
    result = run_cli("http://127.0.0.1:9", "list")
    assert result.exit_code == 2
    assert "cannot reach" in result.stderr
