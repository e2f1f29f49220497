"""The request and job models: defaults, bounds and unknown fields, per the contract."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from claude_jobs.job_service import webhook_url_problem
from claude_jobs.models import WEBHOOK_URL_PATTERN, JobRequest, JobStatus, tool_base_name


def test_defaults_follow_the_contract() -> None:
    request = JobRequest(prompt="hi")
    assert request.allowed_tools == ["Read", "Glob", "Grep"]
    assert request.max_turns == 25
    assert request.timeout_seconds == 300
    assert request.max_budget_usd is None and request.model is None
    assert request.metadata == {}


def test_an_empty_tool_list_means_no_tools() -> None:
    assert JobRequest(prompt="hi", allowed_tools=[]).allowed_tools == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", ""),
        ("prompt", "x" * 100_001),
        ("system_prompt", "x" * 20_001),
        ("max_turns", 0),
        ("max_turns", 101),
        ("timeout_seconds", 9),
        ("timeout_seconds", 7 * 24 * 3600 + 1),
        ("session_id", "../../etc/passwd"),
        ("session_id", "6D0F7A4E-2B1C-4E5A-9F3D-8C7B6A5E4D3C"),
        ("max_budget_usd", 0),
        ("max_budget_usd", -1),
        ("allowed_tools", ["Read", "Read"]),
        ("allowed_tools", ["rm -rf /"]),
        ("metadata", {f"k{i}": "v" for i in range(17)}),
        ("metadata", {"k": "v" * 257}),
        ("metadata", {"k": 1}),
        ("output_schema", {"type": 12}),
        ("model", "../../etc/passwd"),
        ("colour", "blue"),
    ],
)
def test_out_of_bounds_and_unknown_fields_are_rejected(field: str, value: Any) -> None:
    body = {"prompt": "hi", field: value}
    with pytest.raises(ValidationError) as error:
        JobRequest.model_validate(body)
    assert error.value.errors()[0]["loc"][0] == field


def test_upper_bounds_are_inclusive() -> None:
    request = JobRequest(
        prompt="x" * 100_000,
        system_prompt="y" * 20_000,
        max_turns=100,
        timeout_seconds=7 * 24 * 3600,
        metadata={f"k{i}": "v" * 256 for i in range(16)},
        output_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
    )
    assert request.max_turns == 100


def test_options_leave_out_the_texts() -> None:
    options = JobRequest(prompt="secret plan", metadata={"a": "b"}, max_turns=3).options()
    dumped = options.model_dump()
    assert "prompt" not in dumped and "metadata" not in dumped
    assert options.max_turns == 3


@pytest.mark.parametrize(
    ("tool", "base"),
    [("Read", "Read"), ("Bash(git status:*)", "Bash"), ("mcp__srv__tool", "mcp__srv__tool")],
)
def test_permission_rules_apply_to_their_tool(tool: str, base: str) -> None:
    assert tool_base_name(tool) == base
    # (an MCP server's tool needs its server among the job's: tests/unit/test_mcp_options.py)
    servers = [{"name": "srv", "url": "https://mcp.example.com/"}] if "__" in tool else []
    request = JobRequest(prompt="hi", allowed_tools=[tool], mcp_servers=servers)
    assert request.allowed_tools == [tool]


def test_terminal_statuses() -> None:
    assert {s for s in JobStatus if s.is_terminal} == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.TIMED_OUT,
        JobStatus.CANCELLED,
    }


# ---------------------------------------------------------------- webhook_url


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://hooks.example.com/claude-jobs?x=1#y", True),
        ("https://hooks.example.com:8443", True),
        ("http://127.0.0.1:8080/hook", True),  # the local stack only (see below)
        ("0000000000", False),  # issue 10: schema-valid before, then refused
        ("http://hooks.example.com/x", False),
        ("https://10.0.0.7/x", False),
        ("https://user:pw@hooks.example.com/", False),
        ("https://a.localhost/x", False),
        ("https://hooks.example.com:0/", False),
        ("https://hooks.example.com:65536/", False),
        ("https://hooks.example.com/a b", False),
    ],
)
def test_webhook_url_is_validated_exactly_as_the_document_states(url: str, valid: bool) -> None:
    # Given the pattern openapi.json states for webhook_url
    stated = re.fullmatch(WEBHOOK_URL_PATTERN, url) is not None
    # When a request carries the URL
    try:
        JobRequest(prompt="p", webhook_url=url)
        accepted = True
    except ValidationError:
        accepted = False
    # Then the API accepts exactly what the document states
    assert stated is accepted is valid
    # And a deployment's own check (no loopback) agrees on every https URL it states
    if valid and url.startswith("https://"):
        assert webhook_url_problem(url, allow_loopback=False) is None


def test_a_tool_name_with_a_trailing_newline_is_refused() -> None:
    # `$` in a Python pattern matches before a final newline; the API uses the whole string
    with pytest.raises(ValidationError):
        JobRequest(prompt="p", allowed_tools=["Read\n"])


def test_timeout_seconds_is_bounded_by_the_deployments_max_job_seconds() -> None:
    """Given a deployment's max_job_seconds, a longer timeout is a 422 on that field (the
    default allows 4 h; a job longer than one invocation runs in segments)."""
    from claude_jobs.errors import RequestValidationError
    from claude_jobs.job_service import JobService
    from claude_jobs.settings import Settings
    from tests.fakes.queue import InMemoryQueue
    from tests.fakes.repository import InMemoryJobRepository

    def service(**settings: Any) -> JobService:
        return JobService(InMemoryJobRepository(), InMemoryQueue(), Settings(**settings))

    assert service().parse_request({"prompt": "p", "timeout_seconds": 14_400})
    with pytest.raises(RequestValidationError) as error:
        service().parse_request({"prompt": "p", "timeout_seconds": 14_401})
    assert [e.loc for e in error.value.errors] == [("body", "timeout_seconds")]
    with pytest.raises(RequestValidationError):
        service(max_job_seconds=600).parse_request({"prompt": "p", "timeout_seconds": 601})
