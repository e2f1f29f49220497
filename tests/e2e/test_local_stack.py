"""The whole service over HTTP: `claude-jobs dev` with the real handlers, the real bundled Claude
CLI in the worker and the fake Messages API as upstream (see conftest.py)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_jobs_client import ApiError, Client
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic
from tests.support.servers import http_server

from .conftest import (
    ANTHROPIC_KEY,
    CLAUDE_JOBS,
    TENANTS,
    DevProcess,
    base_env,
    model_calls,
    start_dev,
)

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(300)]

JOB_WAIT = 120  # seconds a job may take here: 2 shared cores, one CLI run per job


def marker(kind: str = "echo") -> tuple[str, str]:
    """A unique prompt marker and the answer the fake gives for it."""
    name = uuid.uuid4().hex[:10]
    return f"[[{kind}:{name}]]", f"echo {name}"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_job_goes_from_queued_to_succeeded_with_its_result_and_usage(
    alpha: Client, fake_model: FakeAnthropic
) -> None:
    # Given a prompt the model answers
    prompt, expected = marker()
    # When it is submitted
    accepted = alpha.submit(f"Answer this: {prompt}", allowed_tools=[], max_turns=2)
    assert accepted["status"] == "queued"
    assert accepted["links"]["self"] == f"/v1/jobs/{accepted['job_id']}"
    # Then waiting (long-polls) returns it succeeded with the model's answer and its usage
    job = alpha.wait(accepted["job_id"], timeout=JOB_WAIT)
    assert job["status"] == "succeeded", job
    assert job["result"]["text"] == expected
    assert job["result"]["is_error"] is False
    assert job["attempts"] == 1
    assert job["started_at"] and job["finished_at"]
    assert job["request"]["allowed_tools"] == [] and job["request"]["max_turns"] == 2
    usage = job["usage"]
    assert usage["num_turns"] >= 1
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    # And the model was called once, with the Anthropic key that the stack stored in the
    # emulated Secrets Manager (the fake refuses any other key)
    calls = model_calls(fake_model, prompt)
    assert len(calls) == 1
    assert calls[0].headers.get("x-api-key") == ANTHROPIC_KEY
    # And the job is listed, newest first
    listed = [j["job_id"] for j in alpha.list(limit=100)["items"]]
    assert accepted["job_id"] in listed


def test_etag_and_long_poll_headers(stack: DevProcess, alpha: Client) -> None:
    prompt, _ = marker()
    job_id = alpha.submit(prompt, allowed_tools=[])["job_id"]
    alpha.wait(job_id, timeout=JOB_WAIT)
    # Given the finished job's ETag, When it is asked for again with If-None-Match, Then 304
    url = f"{stack.url}/v1/jobs/{job_id}"
    first = httpx.get(url, headers=auth(TENANTS["alpha"]))
    assert first.status_code == 200 and first.headers["etag"]
    again = httpx.get(
        url, headers={**auth(TENANTS["alpha"]), "If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304


def test_the_location_header_and_health(stack: DevProcess) -> None:
    assert httpx.get(f"{stack.url}/v1/health").json() == {"status": "ok"}
    response = httpx.post(
        f"{stack.url}/v1/jobs", json={"prompt": marker()[0]}, headers=auth(TENANTS["alpha"])
    )
    assert response.status_code == 202
    assert response.headers["location"].endswith(f"/v1/jobs/{response.json()['job_id']}")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key-0123456789"}, {"Authorization": "Basic abc"}],
    ids=["missing", "unknown", "not-bearer"],
)
def test_requests_without_a_valid_key_get_401_problems(
    stack: DevProcess, headers: dict[str, str]
) -> None:
    for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x")):
        response = httpx.request(
            method, f"{stack.url}{path}", headers=headers, json={"prompt": "x"}
        )
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 401
        assert problem["request_id"]
        assert {"type", "title", "detail"} <= problem.keys()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "colour": "blue"}, "colour"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "max_turns": 0}, "max_turns"),
        ({"prompt": "x", "timeout_seconds": 5}, "timeout_seconds"),
        ({"prompt": "x", "allowed_tools": ["WebFetch"]}, "allowed_tools"),
        ({"max_turns": 3}, "prompt"),
    ],
)
def test_invalid_jobs_get_422_with_the_field(
    stack: DevProcess, body: dict[str, object], field: str
) -> None:
    response = httpx.post(f"{stack.url}/v1/jobs", json=body, headers=auth(TENANTS["alpha"]))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    locs = [e["loc"] for e in response.json()["errors"]]
    assert any(field in loc for loc in locs), locs


def test_malformed_and_oversized_bodies_and_unknown_things(stack: DevProcess) -> None:
    headers = {**auth(TENANTS["alpha"]), "Content-Type": "application/json"}
    # Not JSON at all: a 4xx problem, never a 5xx
    broken = httpx.post(f"{stack.url}/v1/jobs", content=b"{not json", headers=headers)
    assert 400 <= broken.status_code < 500
    assert broken.headers["content-type"].startswith("application/problem+json")
    # Over 256 KiB: 413
    huge = json.dumps({"prompt": "x" * (300 * 1024)}).encode()
    too_large = httpx.post(f"{stack.url}/v1/jobs", content=huge, headers=headers)
    assert too_large.status_code == 413
    # An unknown job and an unknown route: 404 problems
    missing = httpx.get(f"{stack.url}/v1/jobs/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["status"] == 404
    assert httpx.get(f"{stack.url}/v1/nothing", headers=headers).status_code == 404
    # An out-of-range wait is a 422, not a crash
    bad_wait = httpx.get(f"{stack.url}/v1/jobs/{uuid.uuid4()}?wait=abc", headers=headers)
    assert 400 <= bad_wait.status_code < 500


def test_a_tenant_never_sees_another_tenants_jobs(alpha: Client, beta: Client) -> None:
    # Given a job of tenant alpha
    job_id = alpha.submit(marker()[0], allowed_tools=[])["job_id"]
    # When tenant beta reads, cancels or lists, Then the job does not exist for beta
    attempts: list[Callable[[], object]] = [lambda: beta.get(job_id), lambda: beta.cancel(job_id)]
    for attempt in attempts:
        with pytest.raises(ApiError) as caught:
            attempt()
        assert caught.value.status == 404
    assert job_id not in [j["job_id"] for j in beta.list(limit=100)["items"]]
    # And alpha's job was not disturbed
    assert alpha.wait(job_id, timeout=JOB_WAIT)["status"] == "succeeded"


def test_cancelling_a_running_job_stops_it(alpha: Client, fake_model: FakeAnthropic) -> None:
    # Given a job whose model call hangs, so it stays running
    prompt, _ = marker("slow")
    job_id = alpha.submit(prompt, allowed_tools=[])["job_id"]
    deadline = time.monotonic() + JOB_WAIT
    while not model_calls(fake_model, prompt):
        assert time.monotonic() < deadline, "the job never reached the model"
        time.sleep(0.2)
    assert alpha.get(job_id)["status"] == "running"
    # When it is cancelled
    answer = alpha.cancel(job_id)
    assert answer["job_id"] == job_id
    # Then it ends cancelled, long before the model would have answered
    job = alpha.wait(job_id, timeout=JOB_WAIT)
    assert job["status"] == "cancelled"
    # And cancelling it again changes nothing
    assert alpha.cancel(job_id)["status"] == "cancelled"


def test_an_idempotency_key_returns_the_first_job_and_runs_it_once(
    alpha: Client, fake_model: FakeAnthropic
) -> None:
    prompt, expected = marker()
    key = f"idem-{uuid.uuid4()}"
    # When the same request is sent twice with the same Idempotency-Key
    first = alpha.submit(prompt, allowed_tools=[], idempotency_key=key)
    second = alpha.submit(prompt, allowed_tools=[], idempotency_key=key)
    # Then both answers name one job, which runs once
    assert second["job_id"] == first["job_id"]
    assert alpha.wait(first["job_id"], timeout=JOB_WAIT)["result"]["text"] == expected
    assert len(model_calls(fake_model, prompt)) == 1
    # And the key with another body is a 409
    with pytest.raises(ApiError) as caught:
        alpha.submit(prompt + " and more", allowed_tools=[], idempotency_key=key)
    assert caught.value.status == 409


def test_twenty_concurrent_jobs_all_succeed(stack: DevProcess) -> None:
    # Given 20 clients submitting at the same moment
    prompts = [marker() for _ in range(20)]
    results: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(prompts))

    def run(prompt: str) -> None:
        try:
            with Client(stack.url, TENANTS["beta"], timeout=60) as client:
                start.wait()
                job_id = client.submit(prompt, allowed_tools=[])["job_id"]
                results[prompt] = client.wait(job_id, timeout=240)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p, _ in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every job succeeded with its own answer
    assert not errors, errors
    assert {p: j["status"] for p, j in results.items()} == {p: "succeeded" for p, _ in prompts}
    for prompt, expected in prompts:
        assert results[prompt]["result"]["text"] == expected


def run_cli(
    stack: DevProcess, *args: str, key: str = TENANTS["alpha"]
) -> subprocess.CompletedProcess[str]:
    env = base_env(CLAUDE_JOBS_URL=stack.url, CLAUDE_JOBS_API_KEY=key)
    return subprocess.run(
        [CLAUDE_JOBS, *args], env=env, capture_output=True, text=True, timeout=JOB_WAIT + 30
    )


def test_submit_wait_prints_the_result_and_exits_zero(stack: DevProcess) -> None:
    prompt, expected = marker()
    # When `claude-jobs submit … --wait` runs
    done = run_cli(stack, "submit", prompt, "--tools", "", "--max-turns", "3", "--wait")
    # Then it prints the answer and a usage line on stdout and exits 0
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == expected
    assert lines[-1].startswith("succeeded · ")
    assert "tokens" in lines[-1]


def test_submit_wait_exits_one_when_the_job_fails_and_json_serves_scripts(
    stack: DevProcess,
) -> None:
    prompt, _ = marker("fail")
    failed = run_cli(stack, "submit", prompt, "--tools", "", "--wait", "--json")
    assert failed.returncode == 1, failed.stderr
    job = json.loads(failed.stdout)
    assert job["status"] == "failed"
    assert job["error"]["code"]
    # And status/list answer with the same job
    status = run_cli(stack, "status", job["job_id"], "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["status"] == "failed"
    listing = run_cli(stack, "list", "--json", "--limit", "100")
    assert job["job_id"] in [j["job_id"] for j in json.loads(listing.stdout)["items"]]


def test_cli_errors_exit_two(stack: DevProcess) -> None:
    refused = run_cli(stack, "status", str(uuid.uuid4()), key="wrong-key-0123456789")
    assert refused.returncode == 2
    assert "401" in refused.stderr
    unknown = run_cli(stack, "status", str(uuid.uuid4()))
    assert unknown.returncode == 2
    assert "404" in unknown.stderr


def test_without_a_key_the_offline_model_answers_and_ctrl_c_stops_cleanly(
    tmp_path: Path,
) -> None:
    # Given a stack started with no Anthropic key and no API keys configured
    dev = start_dev(tmp_path, base_env(), workers=1)
    try:
        banner = dev.output()
        # Then its banner says the answers are canned, and shows the one generated key
        assert "canned" in banner
        (key,) = [
            line.split("=", 1)[1]
            for line in banner.splitlines()
            if line.strip().startswith("export CLAUDE_JOBS_API_KEY=")
        ]
        # When a job runs, Then the stand-in answers it
        with Client(dev.url, key, timeout=60) as client:
            job = client.wait(client.submit("Say hi", allowed_tools=[])["job_id"], timeout=JOB_WAIT)
        assert job["status"] == "succeeded", job
        assert "canned" in job["result"]["text"]
    finally:
        # And Ctrl-C stops it with exit code 0
        code = dev.stop()
    assert code == 0, dev.output()
    assert "stopped" in dev.output()


def test_a_finished_job_calls_its_webhook(stack: DevProcess, alpha: Client) -> None:
    # Given a receiver on loopback (the local stack allows loopback webhooks)
    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path != "/hook":  # another e2e test's agent probing every loopback port
                self.send_response(404)
                self.end_headers()
                return
            received.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    with http_server(Receiver) as server:
        # When a job with a webhook_url finishes
        response = httpx.post(
            f"{stack.url}/v1/jobs",
            json={
                "prompt": marker()[0],
                "allowed_tools": [],
                "webhook_url": f"{server.url}/hook",
            },
            headers=auth(TENANTS["alpha"]),
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert alpha.wait(job_id, timeout=JOB_WAIT)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while not received:
            assert time.monotonic() < deadline, "no webhook arrived"
            time.sleep(0.2)
    # Then the notifier (on the jobs table's stream) queued a signed completion, which the
    # webhook function posted to it, once
    headers, body = received[0]
    assert headers["X-Claude-Jobs-Event"] == "Job Succeeded"
    assert headers["X-Claude-Jobs-Signature"].startswith("v1=")
    assert json.loads(body)["job_id"] == job_id
    # And the job shows the delivery
    webhook = alpha.get(job_id)["webhook"]
    assert webhook["status"] == "delivered" and webhook["attempts"] == 1
    assert webhook["delivered_at"]
    assert len(received) == 1
