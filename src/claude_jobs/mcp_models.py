"""MCP servers of a job and the tenant's vault (shared/DESIGN.md, "MCP servers and credentials").

A job names remote MCP servers (streamable HTTP) in `mcp_servers: [{name, url, credential?}]`.
Each URL must start with one of the deployment's `MCP_ALLOWED_URLS` prefixes (checked at submit,
`service/limits.py`). `credential` names an entry of the tenant's vault; the worker's loopback
broker (`worker/mcp_broker.py`) sends its value to that server as a bearer token, and the CLI
only ever sees the broker's loopback URL. The tools a job gets are exactly the
`mcp__<name>__<tool>` it names in `allowed_tools`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from .model_base import Model

#: The most MCP servers one job may name.
MAX_MCP_SERVERS = 8
#: A server's name: lower-case letters and digits, single `_` or `-` between them (it becomes
#: the middle of `mcp__<name>__<tool>`, so `__` is not allowed inside).
MCP_NAME_PATTERN = r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$"
MAX_MCP_NAME_CHARS = 32
#: A vault entry's name (also the last part of its Secrets Manager secret's name).
VAULT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: A vault value's size at most (a bearer token; Secrets Manager allows 64 KiB).
MAX_VAULT_VALUE_CHARS = 8192
#: The prefix of the tools an MCP server offers in `allowed_tools`.
MCP_TOOL_PREFIX = "mcp__"
_MCP_TOOL = re.compile(r"^mcp__(?P<server>[a-z0-9]+(?:[_-][a-z0-9]+)*)__(?P<tool>[A-Za-z0-9_-]+)$")

#: The job's error code when its credential is not in its tenant's vault.
MCP_CREDENTIAL_MISSING = "mcp_credential_missing"

McpName = Annotated[
    str, StringConstraints(pattern=MCP_NAME_PATTERN, min_length=1, max_length=MAX_MCP_NAME_CHARS)
]
VaultName = Annotated[str, StringConstraints(pattern=VAULT_NAME_PATTERN)]


class McpServer(Model):
    """One remote MCP server of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: McpName = Field(
        description="The server's name in its tools' names: `mcp__<name>__<tool>`.",
    )
    url: Annotated[str, StringConstraints(min_length=8, max_length=2048)] = Field(
        description="The server's streamable-HTTP endpoint: http(s), no user or password, no "
        "fragment; it must start with one of the deployment's `MCP_ALLOWED_URLS` prefixes.",
    )
    credential: VaultName | None = Field(
        None,
        description="The name of an entry of the tenant's vault: its value is sent to this "
        "server as `Authorization: Bearer <value>` by the worker, never shown to the agent.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        problem = url_problem(url)
        if problem:
            raise ValueError(problem)
        return url


def url_problem(url: str) -> str | None:
    """Why `url` is not an MCP server URL (or an allowlist prefix), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user or password"
    if parts.fragment or "#" in url:
        return "must not carry a fragment"
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        return "must be printable ASCII without spaces"
    return None


def url_allowed(url: str, prefixes: Iterable[str]) -> bool:
    """Whether `url` starts with one of the allowlist's prefixes. A prefix ending in neither `/`
    nor `?` matches only the whole URL, or a URL that goes on with `/` or `?` after it: the
    prefix `https://kb.example.com` never admits `https://kb.example.com.evil.net`."""
    for prefix in prefixes:
        if not prefix:
            continue
        if url == prefix:
            return True
        if url.startswith(prefix) and (prefix[-1] in "/?" or url[len(prefix)] in "/?"):
            return True
    return False


def mcp_tool(tool: str) -> tuple[str, str] | None:
    """`mcp__kb__lookup` → (`kb`, `lookup`); None for a tool that is not an MCP server's."""
    match = _MCP_TOOL.fullmatch(tool)
    return (match.group("server"), match.group("tool")) if match else None


def is_mcp_tool(tool: str) -> bool:
    return tool.startswith(MCP_TOOL_PREFIX)


def server_tools(allowed_tools: Iterable[str], server: str) -> frozenset[str]:
    """The tools of `server` a job allows (their names on the server)."""
    found = set()
    for tool in allowed_tools:
        parsed = mcp_tool(tool)
        if parsed is not None and parsed[0] == server:
            found.add(parsed[1])
    return frozenset(found)


def check_mcp(servers: list[McpServer], allowed_tools: Iterable[str]) -> None:
    """Names unique; each `mcp__…` tool names a tool of one of the job's servers (raises
    ValueError otherwise)."""
    names = [server.name for server in servers]
    if len(set(names)) != len(names):
        raise ValueError("mcp_servers: server names must be unique")
    for tool in allowed_tools:
        if not is_mcp_tool(tool):
            continue
        parsed = mcp_tool(tool)
        if parsed is None:
            raise ValueError(
                f"allowed_tools: {tool!r} must be mcp__<server>__<tool> (one tool of a server "
                "in mcp_servers; no wildcard, no rule)"
            )
        if parsed[0] not in names:
            raise ValueError(f"allowed_tools: {tool!r} names no server in mcp_servers")
