"""`mcp_servers` (shared/DESIGN.md, "MCP servers and credentials"): names, URLs on the
deployment's allowlist, credentials' names, and the `mcp__<name>__<tool>` tools they allow."""

from __future__ import annotations

from typing import Any

import pytest

from claude_jobs.errors import RequestValidationError
from claude_jobs.job_options import JobOptions, sdk_arguments
from claude_jobs.job_service import JobService
from claude_jobs.mcp_models import server_tools, url_allowed
from claude_jobs.settings import Settings
from tests.fakes.queue import InMemoryQueue
from tests.fakes.repository import InMemoryJobRepository

ALLOWED = "https://mcp.example.com/kb,https://tools.example.org/"


def service(allowed: str = ALLOWED) -> JobService:
    settings = Settings.model_validate({"MCP_ALLOWED_URLS": allowed})
    return JobService(InMemoryJobRepository(), InMemoryQueue(), settings)


def submit(**body: Any) -> Any:
    return service().parse_request({"prompt": "p", **body})


def errors_of(**body: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(RequestValidationError) as error:
        submit(**body)
    return [(e.loc, e.msg) for e in error.value.errors]


def test_a_server_on_the_allowlist_with_its_tools_is_accepted() -> None:
    # Given a job naming a server on the allowlist, one of its tools and an approval on it
    request = submit(
        mcp_servers=[{"name": "kb", "url": "https://mcp.example.com/kb/v1", "credential": "kb"}],
        allowed_tools=["Read", "mcp__kb__lookup", "mcp__kb__search"],
        approvals=["mcp__kb__search"],
    )
    # Then it is valid; the CLI's own tools do not list the server's (the broker offers them)
    options = request.options()
    assert options.mcp_servers[0].credential == "kb"
    arguments = sdk_arguments(options)
    assert arguments["tools"] == ["Read"]
    assert "mcp__kb__lookup" in arguments["allowed_tools"]
    assert server_tools(options.allowed_tools, "kb") == {"lookup", "search"}


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.net/kb",
        "https://mcp.example.com/kbx",  # the prefix is a path: a sibling is not under it
        "https://mcp.example.com.evil.net/kb",
        "http://mcp.example.com/kb",
    ],
)
def test_a_server_off_the_allowlist_is_a_422_naming_it(url: str) -> None:
    errors = errors_of(mcp_servers=[{"name": "kb", "url": url}])
    assert [loc for loc, _ in errors] == [("body", "mcp_servers", 0, "url")]
    assert "'kb'" in errors[0][1] and "allowlist" in errors[0][1]


def test_no_allowlist_means_no_server() -> None:
    with pytest.raises(RequestValidationError) as error:
        service("").parse_request(
            {"prompt": "p", "mcp_servers": [{"name": "kb", "url": "https://mcp.example.com/kb"}]}
        )
    assert "no MCP server is allowed here" in error.value.errors[0].msg


@pytest.mark.parametrize(
    ("server", "field"),
    [
        ({"name": "KB", "url": "https://mcp.example.com/kb"}, "name"),
        ({"name": "k__b", "url": "https://mcp.example.com/kb"}, "name"),
        ({"name": "a" * 33, "url": "https://mcp.example.com/kb"}, "name"),
        ({"name": "kb", "url": "https://u:p@mcp.example.com/kb"}, "url"),
        ({"name": "kb", "url": "https://mcp.example.com/kb#x"}, "url"),
        ({"name": "kb", "url": "ftp://mcp.example.com/kb"}, "url"),
        ({"name": "kb", "url": "https://mcp.example.com/kb", "credential": "../x"}, "credential"),
        ({"name": "kb", "url": "https://mcp.example.com/kb", "credential": ""}, "credential"),
        ({"name": "kb", "url": "https://mcp.example.com/kb", "headers": {}}, "headers"),
    ],
)
def test_bad_server_fields_are_422s(server: dict[str, Any], field: str) -> None:
    errors = errors_of(mcp_servers=[server])
    assert ("body", "mcp_servers", 0, field) in [loc for loc, _ in errors]


def test_names_are_unique_and_the_count_is_capped() -> None:
    same = {"name": "kb", "url": "https://mcp.example.com/kb"}
    assert "unique" in errors_of(mcp_servers=[same, same])[0][1]
    many = [{"name": f"s{i}", "url": "https://tools.example.org/x"} for i in range(9)]
    assert [loc for loc, _ in errors_of(mcp_servers=many)] == [("body", "mcp_servers")]


@pytest.mark.parametrize(
    "tool",
    ["mcp__kb__lookup", "mcp__kb", "mcp__kb__*", "mcp__other__lookup", "mcp__kb__lookup(x)"],
)
def test_an_mcp_tool_must_be_one_tool_of_a_named_server(tool: str) -> None:
    # Given no server `kb`, or a tool that is not one plain tool of a named server
    body: dict[str, Any] = {"allowed_tools": [tool]}
    if tool != "mcp__kb__lookup":
        body["mcp_servers"] = [{"name": "kb", "url": "https://mcp.example.com/kb"}]
    # Then it is a 422
    assert errors_of(**body)


def test_the_defaults_name_no_server() -> None:
    assert JobOptions().mcp_servers == []


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://a.example/mcp", True),
        ("https://a.example/mcp/x", True),
        ("https://a.example/mcp?x=1", True),
        ("https://a.example/mcpx", False),
        ("https://a.example.evil/mcp", False),
        ("https://b.example/anything", True),
        ("https://b.example", False),
    ],
)
def test_an_allowlist_prefix_matches_at_a_boundary(url: str, allowed: bool) -> None:
    assert url_allowed(url, ["https://a.example/mcp", "https://b.example/"]) is allowed
