"""A small remote MCP server (streamable HTTP) that requires a bearer token: the stand-in for a
team's tool server in tests and in `make dev` (`python -m claude_jobs_tools.local.demo_mcp`).

Tools: `lookup(query)` answers `kb: <query>` (with the caller's tenant label when its token is
known), `admin_reset()` is a tool a job is never meant to reach (tests check that nothing calls
it). Every HTTP request is recorded: method, path, the `Authorization` header it carried and the
JSON-RPC method(s), so that tests can see what reached the server and with which credential.
A request without one of the accepted tokens gets 401 and never reaches the MCP layer.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The path the server answers on.
MCP_PATH = "/mcp"
#: The label of the token of the request being served.
_LABEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("label", default=None)


@dataclass(frozen=True)
class Seen:
    """One HTTP request that reached the demo server."""

    method: str
    path: str
    authorization: str | None
    rpc_methods: tuple[str, ...]
    tool: str | None  # the tool a `tools/call` named
    accepted: bool  # its token was one of the server's


class DemoMcpServer:
    """The server under uvicorn in a thread. `tokens`: accepted bearer tokens → a label that
    the `lookup` answer carries (so a test can tell whose credential reached it)."""

    def __init__(
        self,
        tokens: dict[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sse: bool = True,
    ) -> None:
        self.tokens = dict(tokens)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._host = host
        self._port = port
        self._sse = sse
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the app

    def _app(self) -> Any:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.transport_security import TransportSecuritySettings

        server = MCPServer("claude-jobs-demo")

        @server.tool()
        def lookup(query: str) -> str:
            """Look a term up in the team's knowledge base."""
            label = _LABEL.get() or "anonymous"
            return f"kb[{label}]: {query}"

        @server.tool()
        def admin_reset() -> str:
            """Reset the knowledge base (never offered to jobs)."""
            return "reset done"

        app = server.streamable_http_app(
            stateless_http=True,
            json_response=not self._sse,
            streamable_http_path=MCP_PATH,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        return _Guard(app, self)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> DemoMcpServer:
        import socket

        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="demo-mcp"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the demo MCP server did not start")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> DemoMcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The MCP endpoint's URL."""
        return f"http://{self._host}:{self._port}{MCP_PATH}"

    # ------------------------------------------------------------ what it saw

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def tool_calls(self) -> list[Seen]:
        return [s for s in self.requests() if s.tool is not None]

    def authorizations(self) -> set[str | None]:
        return {s.authorization for s in self.requests()}


class _Guard:
    """ASGI middleware: the bearer check and the record of each request."""

    def __init__(self, app: Any, owner: DemoMcpServer) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        auth = headers.get("authorization")
        token = auth[7:] if auth and auth.lower().startswith("bearer ") else None
        label = self.owner.tokens.get(token or "")
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        methods, tool = _rpc_of(body)
        self.owner.record(
            Seen(scope["method"], scope["path"], auth, methods, tool, label is not None)
        )
        if label is None:
            await _answer(send, 401, b'{"error":"invalid_token"}', bearer=True)
            return
        _LABEL.set(label)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return dict(await receive())  # the client's disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _answer(send: Any, status: int, body: bytes, *, bearer: bool = False) -> None:
    headers = [(b"content-type", b"application/json")]
    if bearer:
        headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _rpc_of(body: bytes) -> tuple[tuple[str, ...], str | None]:
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        return (), None
    items: Iterable[Any] = payload if isinstance(payload, list) else [payload]
    methods: list[str] = []
    tool = None
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("method"), str):
            methods.append(item["method"])
            if item["method"] == "tools/call" and isinstance(item.get("params"), dict):
                tool = str(item["params"].get("name"))
    return tuple(methods), tool


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", required=True, help="the bearer token the server accepts")
    args = parser.parse_args(argv)
    with DemoMcpServer({args.token: "demo"}, port=args.port) as server:
        print(f"demo MCP server on {server.url} (needs Authorization: Bearer <token>)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
