"""The function objects' Powertools instrumentation: context on every log line, no state
carried from one invocation to the next, metrics flushed however the invocation ends."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from claude_jobs.observability import count, get_logger, instrumented
from tests.lambda_context import lambda_context


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line[:1] == "{"]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """What the process's logger writes, from now on (its handler may predate this test's
    output capture)."""
    handler = get_logger().registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_each_invocation_logs_its_own_context_and_nothing_of_the_previous_one(
    log_stream: io.StringIO,
) -> None:
    # Given a handler that adds a key of its request to the logger
    def handle(event: dict[str, Any], context: Any) -> str:
        if event.get("tenant"):
            get_logger().append_keys(tenant_id=event["tenant"])
        get_logger().info("handled")
        return "ok"

    handler = instrumented(handle)
    first, second = lambda_context("submit"), lambda_context("submit")
    # When it is invoked for one tenant, then without one
    assert handler({"tenant": "t1"}, first) == "ok"
    assert handler({}, second) == "ok"
    # Then each log line carries its own invocation's context, and the second not the tenant
    # of the first
    one, two = (line for line in _lines(log_stream.getvalue()) if line["message"] == "handled")
    assert one["function_request_id"] == first.aws_request_id
    assert one["function_name"] == first.function_name and one["tenant_id"] == "t1"
    assert two["function_request_id"] == second.aws_request_id
    assert "tenant_id" not in two


def test_what_an_invocation_counted_is_flushed_even_when_it_raises(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)

    # Given a handler that counts, then fails
    def handle(event: dict[str, Any], context: Any) -> None:
        count("Attempted")
        raise RuntimeError("boom")

    handler = instrumented(handle)
    # When it is invoked
    with pytest.raises(RuntimeError, match="boom"):
        handler({}, lambda_context("trigger"))
    # Then its metric was emitted anyway, once
    metrics = [line for line in _lines(capsys.readouterr().out) if "Attempted" in line]
    assert len(metrics) == 1 and metrics[0]["Attempted"] == [1.0]


@pytest.mark.parametrize("traced", [False, True])
def test_keyword_arguments_reach_the_handler(traced: bool) -> None:
    # Given a handler taking more than (event, context), as the worker's does
    seen: list[list[str]] = []

    def handle(event: dict[str, Any], context: Any, *, retiring: list[str]) -> None:
        retiring.append("pid 1")
        seen.append(retiring)

    # When it is invoked with a list of its own (traced or not)
    retiring: list[str] = []
    instrumented(handle, traced=traced)({}, lambda_context("worker"), retiring=retiring)
    # Then the handler got that very list
    assert seen == [["pid 1"]] and seen[0] is retiring
