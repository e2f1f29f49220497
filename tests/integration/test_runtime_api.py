"""The local Runtime API has the emulator's semantics (docs/adr/0001-runtime-api.md)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from claude_jobs_tools.local.runtime_api import Answer, RuntimeApi


@pytest.fixture
def api() -> Iterator[RuntimeApi]:
    with RuntimeApi() as runtime:
        yield runtime


def _invoke(api: RuntimeApi, event: Any, answers: list[Answer]) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(api.invoke(event, 30)), daemon=True)
    thread.start()
    return thread


def _next(base: str) -> tuple[str, Any]:
    got = httpx.get(f"{base}/next", timeout=30)
    assert got.status_code == 200
    return got.headers["Lambda-Runtime-Aws-Request-Id"], got.json()


def test_next_during_an_invocation_renders_it_again_and_answers_are_single(
    api: RuntimeApi,
) -> None:
    base = f"http://{api.address}/2018-06-01/runtime/invocation"
    answers: list[Answer] = []
    # Given a running invocation that the runtime took
    first = _invoke(api, {"job": 1}, answers)
    request_id, event = _next(base)
    # When someone else asks for the next invocation while it runs
    again_id, again = _next(base)
    # Then it gets the same invocation, request id included
    assert (again_id, again) == (request_id, event) == (request_id, {"job": 1})
    # And with it can answer it (a success)
    posted = httpx.post(f"{base}/{request_id}/response", json={"batchItemFailures": []})
    assert posted.status_code == 202
    first.join(5)
    assert answers == [Answer("response", {"batchItemFailures": []})]
    # And the runtime's own answer is refused afterwards
    refused = httpx.post(f"{base}/{request_id}/response", json={})
    assert refused.status_code == 403
    assert refused.json()["errorType"] == "InvalidStateTransition"
    # When the next invocation comes, whoever asks gets it; an answer for the old id is refused
    second = _invoke(api, {"job": 2}, answers)
    next_id, next_event = _next(base)
    assert next_event == {"job": 2} and next_id != request_id
    stale = httpx.post(f"{base}/{request_id}/error", content=json.dumps({"errorType": "x"}))
    assert stale.status_code == 400
    assert httpx.post(f"{base}/{next_id}/error", json={"errorType": "x"}).status_code == 202
    second.join(5)
    assert answers[-1].kind == "error"


def test_a_reset_environment_fails_its_unanswered_invocation(api: RuntimeApi) -> None:
    answers: list[Answer] = []
    running = _invoke(api, {"job": 3}, answers)
    _next(f"http://{api.address}/2018-06-01/runtime/invocation")
    api.reset()
    running.join(5)
    assert answers == [Answer("reset")]
