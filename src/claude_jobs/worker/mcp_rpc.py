"""What the MCP broker lets through to a server, at the JSON-RPC level (`mcp_relay.py` applies it).

A job gets exactly the tools it names (`mcp__<server>__<tool>` in `allowed_tools`) and nothing
else of the server:

- A client message is one JSON-RPC 2.0 object (no batch). Requests and notifications are
  forwarded only for the methods in `FORWARDED` (`initialize`, `ping`, `tools/list`,
  `tools/call`, discovery and notifications); `tools/call` only for an allowed tool. Any other
  request is answered by the broker itself and never reaches the server: an empty list for the
  list methods of resources and prompts (so a client's start-up goes on), a "method not found"
  error otherwise. A response (to a request of the server) is forwarded.
- Answers to `tools/list` (and any answer whose result lists `tools`) are rewritten to list
  only the allowed tools, so the model is never offered another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Client requests forwarded to the server (notifications: every `notifications/…` too).
FORWARDED = frozenset(
    {"initialize", "ping", "tools/list", "tools/call", "server/discover", "subscriptions/listen"}
)
#: Requests the broker answers itself, with an empty list (the server's own is never offered).
EMPTY_LISTS: dict[str, dict[str, list[Any]]] = {
    "resources/list": {"resources": []},
    "resources/templates/list": {"resourceTemplates": []},
    "prompts/list": {"prompts": []},
}
METHOD_NOT_FOUND = -32601
INVALID_REQUEST = -32600


@dataclass(frozen=True)
class Verdict:
    """What to do with one client message: forward it (`forward`), or answer it with `answer`
    (a JSON-RPC message, or None for a notification: 202 and no body). `method`: its method."""

    forward: bool
    method: str | None = None
    answer: dict[str, Any] | None = None
    status: int = 200


def check(body: bytes, tools: frozenset[str]) -> Verdict:
    """The verdict on a POSTed message, for a job allowed `tools` of this server."""
    try:
        message = json.loads(body)
    except ValueError:
        return _refused(None, INVALID_REQUEST, "not JSON", status=400)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return _refused(None, INVALID_REQUEST, "one JSON-RPC 2.0 message per request", status=400)
    method = message.get("method")
    ident = message.get("id")
    if method is None:  # a response to the server's own request
        return Verdict(True)
    if not isinstance(method, str):
        return _refused(ident, INVALID_REQUEST, "method must be a string", status=400)
    notification = "id" not in message
    if notification:
        if method.startswith("notifications/"):
            return Verdict(True, method)
        return Verdict(False, method, None, status=202)  # dropped
    if method in EMPTY_LISTS:
        return Verdict(
            False, method, {"jsonrpc": "2.0", "id": ident, "result": EMPTY_LISTS[method]}
        )
    if method not in FORWARDED:
        return _refused(ident, METHOD_NOT_FOUND, f"{method} is not available to this job", method)
    if method == "tools/call":
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or name not in tools:
            return _refused(
                ident,
                METHOD_NOT_FOUND,
                f"tool {name!r} is not allowed for this job (allowed_tools names the tools of "
                "an MCP server a job may call)",
                method,
            )
    return Verdict(True, method)


def _refused(
    ident: Any, code: int, message: str, method: str | None = None, *, status: int = 200
) -> Verdict:
    answer = {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}
    return Verdict(False, method, answer, status)


def filter_tools(body: bytes, content_type: str, tools: frozenset[str]) -> bytes:
    """An answer (JSON, or server-sent events carrying JSON) with every listed tool that is not
    in `tools` removed."""
    if content_type.lower().startswith("text/event-stream"):
        return _filter_events(body, tools)
    try:
        message = json.loads(body)
    except ValueError:
        return body
    return json.dumps(_filtered(message, tools)).encode()


def _filter_events(body: bytes, tools: frozenset[str]) -> bytes:
    lines = body.split(b"\n")
    out: list[bytes] = []
    for line in lines:
        stripped = line.rstrip(b"\r")
        if stripped.startswith(b"data:"):
            payload = stripped[5:].strip()
            try:
                message = json.loads(payload)
            except ValueError:
                out.append(line)
                continue
            out.append(b"data: " + json.dumps(_filtered(message, tools)).encode())
        else:
            out.append(line)
    return b"\n".join(out)


def _filtered(message: Any, tools: frozenset[str]) -> Any:
    if isinstance(message, list):
        return [_filtered(item, tools) for item in message]
    if not isinstance(message, dict):
        return message
    result = message.get("result")
    if isinstance(result, dict) and isinstance(result.get("tools"), list):
        kept = [t for t in result["tools"] if isinstance(t, dict) and t.get("name") in tools]
        message = {**message, "result": {**result, "tools": kept}}
    return message
