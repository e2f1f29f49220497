"""The MCP broker against hostile requests (the agent can reach it with its job token) and a
scripted server: what is forwarded, with which credential, and its limits."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from claude_jobs.worker.mcp_broker import BrokeredServer, McpBroker
from tests.support.servers import BackgroundServer, http_server

TOKEN = "cj-job-broker-test-token"
OTHER_TOKEN = "cj-job-broker-other-token"
CREDENTIAL = "demo-broker-credential-0001"


class Upstream:
    """A scripted MCP server: records each request; answers by the JSON-RPC method."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.release.set()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                upstream.seen.append({"method": "GET", "path": self.path, **self._headers()})
                self._send(405, b"", "application/json")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                message = json.loads(body)
                upstream.seen.append(
                    {"method": "POST", "path": self.path, "rpc": message, **self._headers()}
                )
                kind = message.get("params", {}).get("name") if "params" in message else None
                if message.get("method") == "tools/list":
                    result = {"tools": [{"name": "lookup"}, {"name": "admin_reset"}]}
                    data = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
                    self._send(
                        200, f"event: message\ndata: {data}\n\n".encode(), "text/event-stream"
                    )
                elif kind == "stream":  # two events, the second only once released
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("www-authenticate", "Bearer realm=upstream")
                    self.send_header("location", "http://elsewhere.example/")
                    self.send_header("set-cookie", "session=upstream")
                    self.end_headers()
                    self.wfile.write(b'event: message\ndata: {"first": true}\n\n')
                    self.wfile.flush()
                    upstream.release.wait(30)
                    self.wfile.write(b'event: message\ndata: {"second": true}\n\n')
                    self.wfile.flush()
                    self.close_connection = True
                elif kind == "huge":
                    self._send(200, b"x" * (2 * 1024 * 1024), "application/json")
                elif kind == "redirect":
                    self.send_response(307)
                    self.send_header("location", "http://127.0.0.1:1/steal")
                    self.send_header("content-length", "0")
                    self.end_headers()
                else:
                    data = json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": {}})
                    self._send(200, data.encode(), "application/json")

            def _headers(self) -> dict[str, Any]:
                return {"headers": {k.lower(): v for k, v in self.headers.items()}}

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, BackgroundServer]]:
    scripted = Upstream()
    with http_server(scripted.handler()) as server:
        yield scripted, server
        scripted.release.set()


@pytest.fixture
def broker(upstream: tuple[Upstream, BackgroundServer]) -> Iterator[McpBroker]:
    _, server = upstream
    broker = McpBroker(max_answer_bytes=1024 * 1024, max_request_bytes=64 * 1024).start()
    broker.open_job(
        TOKEN,
        [BrokeredServer("kb", f"{server.url}/mcp?team=a", CREDENTIAL, frozenset({"lookup"}))],
    )
    broker.open_job(OTHER_TOKEN, [BrokeredServer("other", f"{server.url}/other")])
    yield broker
    broker.close()


def call(
    broker: McpBroker,
    body: Any = None,
    *,
    path: str = "/mcp/kb",
    token: str | None = TOKEN,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    host, port = broker.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    sent = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers=sent)
    return connection.getresponse()


def rpc(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}


def test_a_call_goes_to_the_configured_url_with_the_credential_only(
    broker: McpBroker, upstream: tuple[Upstream, BackgroundServer]
) -> None:
    scripted, _ = upstream
    # When the agent calls its tool with its own Authorization and extra headers
    answer = call(
        broker,
        rpc("tools/call", name="lookup", arguments={}),
        headers={"x-forwarded-host": "evil.example", "cookie": "a=b", "mcp-session-id": "s1"},
    )
    assert answer.status == 200
    # Then the server got it at its configured URL, with the credential and MCP headers only
    (seen,) = scripted.seen
    assert seen["path"] == "/mcp?team=a"
    assert seen["headers"]["authorization"] == f"Bearer {CREDENTIAL}"
    assert seen["headers"]["mcp-session-id"] == "s1"
    assert "cookie" not in seen["headers"] and "x-forwarded-host" not in seen["headers"]
    assert TOKEN not in json.dumps(seen)


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/mcp/kb", None, 401),
        ("/mcp/kb", "cj-job-forged", 401),
        ("/mcp/other", TOKEN, 404),  # another job's server
        ("/mcp/kb", OTHER_TOKEN, 404),  # another job's token
        ("/mcp/kb/../other", TOKEN, 404),
        ("/mcp/kb?x=1", TOKEN, 404),
        ("/mcp/%6bb", TOKEN, 404),
        ("http://127.0.0.1:1/mcp/kb", TOKEN, 404),
        ("/v1/messages", TOKEN, 404),
    ],
)
def test_only_a_live_token_reaches_its_own_servers(
    broker: McpBroker,
    upstream: tuple[Upstream, BackgroundServer],
    path: str,
    token: str | None,
    status: int,
) -> None:
    scripted, _ = upstream
    answer = call(broker, rpc("tools/call", name="lookup"), path=path, token=token)
    assert answer.status == status
    assert scripted.seen == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (rpc("tools/call", name="admin_reset"), "not allowed"),
        (rpc("resources/read", uri="file:///etc/passwd"), "not available"),
        (rpc("prompts/get", name="x"), "not available"),
        (rpc("sampling/createMessage"), "not available"),
    ],
)
def test_nothing_else_of_the_server_is_reached(
    broker: McpBroker, upstream: tuple[Upstream, BackgroundServer], message: Any, expected: str
) -> None:
    scripted, _ = upstream
    answer = call(broker, message)
    assert expected in answer.read().decode()
    assert scripted.seen == []


@pytest.mark.parametrize(
    "body", [b"[" + json.dumps(rpc("tools/call", name="admin_reset")).encode() + b"]", b"{"]
)
def test_a_batch_or_garbage_is_refused(
    broker: McpBroker, upstream: tuple[Upstream, BackgroundServer], body: bytes
) -> None:
    scripted, _ = upstream
    assert call(broker, body).status == 400
    assert scripted.seen == []


def test_the_listing_names_only_the_jobs_tools(broker: McpBroker) -> None:
    answer = call(broker, rpc("tools/list"))
    text = answer.read().decode()
    assert answer.status == 200 and '"lookup"' in text and "admin_reset" not in text
    # And resources and prompts are empty without asking the server
    listed = json.loads(call(broker, rpc("resources/list")).read())
    assert listed["result"] == {"resources": []}


def test_answers_stream_and_keep_only_mcp_headers(
    broker: McpBroker, upstream: tuple[Upstream, BackgroundServer]
) -> None:
    # Given a job allowed the scripted server's streaming, huge and redirecting tools
    scripted, server = upstream
    tools = frozenset({"stream", "huge", "redirect"})
    broker.open_job(TOKEN, [BrokeredServer("kb", f"{server.url}/mcp", CREDENTIAL, tools)])
    scripted.release.clear()
    # When the server sends one event and holds the next
    answer = call(broker, rpc("tools/call", name="stream"))
    # Then the first event arrives before the server has finished
    assert answer.status == 200
    assert b'"first"' in answer.read1(65536)
    scripted.release.set()
    assert b'"second"' in answer.read()
    # And no upstream authentication challenge, redirect or cookie is relayed
    assert answer.getheader("www-authenticate") is None
    assert answer.getheader("location") is None and answer.getheader("set-cookie") is None
    # And a redirect is not followed
    redirected = call(broker, rpc("tools/call", name="redirect"))
    assert redirected.status == 307 and redirected.getheader("location") is None
    # And an answer over the cap is not relayed
    assert call(broker, rpc("tools/call", name="huge")).status == 502


def test_size_and_framing_limits(
    broker: McpBroker, upstream: tuple[Upstream, BackgroundServer]
) -> None:
    scripted, _ = upstream
    big = {**rpc("tools/call", name="lookup"), "pad": "x" * (65 * 1024)}
    assert call(broker, big).status == 413
    chunked = call(broker, b"{}", headers={"transfer-encoding": "chunked", "content-length": ""})
    assert chunked.status in (400, 411)
    assert scripted.seen == []


def test_a_closed_job_is_refused_and_its_calls_in_flight_are_cut(
    broker: McpBroker, upstream: tuple[Upstream, BackgroundServer]
) -> None:
    scripted, server = upstream
    broker.open_job(
        TOKEN,
        [BrokeredServer("kb", f"{server.url}/mcp", CREDENTIAL, frozenset({"stream"}))],
    )
    scripted.release.clear()
    answer = call(broker, rpc("tools/call", name="stream"))
    assert b'"first"' in answer.read1(65536)
    # When the job ends while its call is still streaming
    started = time.monotonic()
    broker.close_job(TOKEN)
    # Then the stream ends at once (without the second event), and its token is refused
    with pytest.raises((http.client.IncompleteRead, OSError)):
        answer.read()
    assert time.monotonic() - started < 10
    assert call(broker, rpc("tools/call", name="stream")).status == 401


def test_a_slow_loris_does_not_hold_the_broker(broker: McpBroker) -> None:
    # Given a client that opens a connection and sends half a request line
    host, port = broker.url.removeprefix("http://").split(":")
    idle = socket.create_connection((host, int(port)))
    idle.sendall(b"POST /mcp/kb HTTP/1.1\r\n")
    try:
        # Then other requests are still served
        assert call(broker, rpc("ping")).status == 200
    finally:
        idle.close()
