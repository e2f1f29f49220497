"""One request through the MCP broker (`mcp_broker.py`): the job token, the path of one of the
job's servers, the method and body limits, the JSON-RPC rules (`mcp_rpc`), then the call to the
server's configured URL with the job's credential, and the answer relayed as it comes."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from ..observability import deferred_logger
from . import mcp_rpc

if TYPE_CHECKING:
    from .mcp_broker import BrokeredServer, JobServers, McpBroker

log = deferred_logger()  # Powertools' structured logger

#: Request headers passed on to the server (every other one, the agent's `Authorization`
#: included, is dropped).
FORWARDED_REQUEST_HEADERS = (
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
)
#: Answer headers relayed to the CLI.
RELAYED_RESPONSE_HEADERS = frozenset(
    {"content-type", "mcp-session-id", "mcp-protocol-version", "cache-control", "retry-after"}
)
_PATH = re.compile(r"^/mcp/([a-z0-9]+(?:[_-][a-z0-9]+)*)$")
#: Answers rewritten to list only the job's tools are read whole first (small).
_FILTERED_METHODS = frozenset({"tools/list", "server/discover"})


def handler_for(broker: McpBroker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "claude-jobs-mcp-broker"

        def log_message(self, format: str, *args: Any) -> None:
            return  # requests are not logged: their bodies are the job's data

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            self._answer(code, {"error": message or "malformed request"}, drain=False)

        def _answer(
            self,
            status: int,
            payload: dict[str, Any] | None,
            *,
            drain: bool = True,
            headers: tuple[tuple[str, str], ...] = (),
        ) -> None:
            """Answer without forwarding, and close the connection (a body within the cap is
            read first, so that the answer is not lost to a reset)."""
            self.close_connection = True
            if drain:
                with contextlib.suppress(OSError, ValueError):
                    length = int(self.headers.get("content-length") or 0)
                    if 0 < length <= broker.max_request_bytes:
                        self.rfile.read(length)
            body = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            if payload is not None:
                self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("connection", "close")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _raw_target(self) -> str:
            words = self.requestline.split()
            return words[1] if len(words) == 3 else ""

        def _handle(self) -> None:
            auth = str(self.headers.get("authorization", ""))
            presented = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            job = broker.job_for(presented)
            if job is None:
                self._answer(401, {"error": "invalid or expired job token"})
                return
            match = _PATH.fullmatch(self._raw_target())
            server = job.servers.get(match.group(1)) if match else None
            if server is None:
                self._answer(404, {"error": "no such MCP server for this job"})
                return
            if self.command not in ("POST", "GET", "DELETE"):
                self._answer(405, {"error": "POST, GET or DELETE"}, headers=(("allow", "POST"),))
                return
            if self.headers.get("transfer-encoding") is not None:
                self._answer(411, {"error": "a Content-Length body only"}, drain=False)
                return
            raw_length = str(self.headers.get("content-length") or "0").strip()
            if not raw_length.isdigit():
                self._answer(400, {"error": "invalid content-length"}, drain=False)
                return
            length = int(raw_length)
            if length > broker.max_request_bytes:
                self._answer(413, {"error": "the request body is too large"}, drain=False)
                return
            body = self.rfile.read(length) if length else b""
            method = None
            if self.command == "POST":
                verdict = mcp_rpc.check(body, server.tools)
                if not verdict.forward:
                    self._answer(verdict.status, verdict.answer, drain=False)
                    return
                method = verdict.method
            elif body:
                self._answer(400, {"error": "no body on GET or DELETE"}, drain=False)
                return
            self._forward(job, server, body, method)

        def _forward(
            self, job: JobServers, server: BrokeredServer, body: bytes, method: str | None
        ) -> None:
            connection, target, host = broker.connection(server.url)
            try:
                connection.connect()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                log.warning("MCP server %s unreachable: %s", server.name, type(exc).__name__)
                self._answer(
                    502,
                    {"error": f"the MCP server is unreachable ({type(exc).__name__})"},
                    drain=False,
                )
                return
            upstream_socket = connection.sock
            if not job.admit(upstream_socket):
                connection.close()
                self._answer(429, {"error": "too many MCP calls of this job at once"}, drain=False)
                return
            try:
                headers = {"host": host, "user-agent": "claude-jobs-mcp-broker"}
                for name in FORWARDED_REQUEST_HEADERS:
                    value = self.headers.get(name)
                    if value is not None:
                        headers[name] = str(value)
                if server.credential is not None:
                    headers["authorization"] = f"Bearer {server.credential}"
                if self.command == "POST":
                    headers["content-length"] = str(len(body))
                try:
                    connection.request(self.command, target, body=body or None, headers=headers)
                    upstream = connection.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    log.warning("MCP server %s unreachable: %s", server.name, type(exc).__name__)
                    self._answer(
                        502,
                        {"error": f"the MCP server is unreachable ({type(exc).__name__})"},
                        drain=False,
                    )
                    return
                if method in _FILTERED_METHODS and 200 <= upstream.status < 300:
                    self._relay_filtered(upstream, server.tools)
                else:
                    self._relay(upstream, job)
            finally:
                job.release(upstream_socket)
                connection.close()

        def _start(self, upstream: http.client.HTTPResponse, length: int | None) -> None:
            self.send_response_only(upstream.status, upstream.reason)
            for name, value in upstream.getheaders():
                if name.lower() in RELAYED_RESPONSE_HEADERS:
                    self.send_header(name, value)
            if length is None:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("content-length", str(length))
            self.end_headers()

        def _relay_filtered(
            self, upstream: http.client.HTTPResponse, tools: frozenset[str]
        ) -> None:
            """A tool listing: read whole (within the cap), rewritten to the job's tools."""
            data = bytearray()
            try:
                while len(data) <= broker.max_answer_bytes:
                    piece = upstream.read1(65536)
                    if not piece:
                        break
                    data += piece
            except (OSError, http.client.HTTPException):
                self._answer(502, {"error": "the MCP server broke off its answer"}, drain=False)
                return
            if len(data) > broker.max_answer_bytes:
                self._answer(502, {"error": "the MCP server's answer is too large"}, drain=False)
                return
            kept = mcp_rpc.filter_tools(
                bytes(data), upstream.getheader("content-type") or "", tools
            )
            with contextlib.suppress(OSError):
                self._start(upstream, len(kept))
                self.wfile.write(kept)
                self.wfile.flush()

        def _relay(self, upstream: http.client.HTTPResponse, job: JobServers) -> None:
            """The answer as it comes (server-sent events chunk by chunk), cut at the cap, or
            when the job ends (its end shuts the upstream connection: the client sees the
            answer broken off, never a complete one)."""
            length = upstream.getheader("content-length")
            known = int(length) if length and length.isdigit() else None
            if known is not None and known > broker.max_answer_bytes:
                self._answer(502, {"error": "the MCP server's answer is too large"}, drain=False)
                return
            chunked = known is None
            try:
                self._start(upstream, known)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return
            sent = 0
            while True:
                try:
                    data = upstream.read1(65536)
                except (OSError, http.client.HTTPException):
                    self.close_connection = True  # cut (the job ended) or broken off
                    return
                if not data:
                    if job.closed:
                        self.close_connection = True
                        return
                    break
                sent += len(data)
                if sent > broker.max_answer_bytes:
                    log.warning("an MCP answer went over %d bytes: cut", broker.max_answer_bytes)
                    self.close_connection = True
                    return
                if not self._write(data, chunked):
                    return
            if chunked:
                self._write(b"", chunked)

        def _write(self, data: bytes, chunked: bool) -> bool:
            try:
                if chunked:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                else:
                    self.wfile.write(data)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return False
            return True

        do_POST = _handle
        do_GET = _handle
        do_DELETE = _handle
        do_PUT = _handle
        do_PATCH = _handle
        do_HEAD = _handle
        do_OPTIONS = _handle

    return Handler
