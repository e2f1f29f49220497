"""The local HTTP stand-ins (the Git host, the Lambda Runtime API, the fake Messages API) and
the test servers: a client that resets its connection in the middle of its request (a git
client stopped, a hostile agent's probe) is not reported on stderr as a server error (in a
parallel test run socketserver's traceback landed in the middle of the progress line), and the
server goes on serving."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from claude_jobs_tools.githost import GitHost
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic
from claude_jobs_tools.local.runtime_api import RuntimeApi
from tests.support.servers import http_server


@contextmanager
def _githost() -> Iterator[tuple[str, str]]:
    with GitHost() as host:
        host.create_repository("acme/app")
        yield host.url, "/acme/app.git/git-receive-pack"


@contextmanager
def _runtime_api() -> Iterator[tuple[str, str]]:
    with RuntimeApi() as api:
        yield f"http://{api.address}", "/2018-06-01/runtime/invocation/x/response"


@contextmanager
def _fake_anthropic() -> Iterator[tuple[str, str]]:
    with FakeAnthropic() as fake:
        yield fake.url, "/v1/messages"


class _Echo(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


@contextmanager
def _test_server() -> Iterator[tuple[str, str]]:
    with http_server(_Echo) as server:
        yield server.url, "/echo"


@pytest.mark.parametrize(
    "serve",
    [_githost, _runtime_api, _fake_anthropic, _test_server],
    ids=["githost", "runtime-api", "fake-anthropic", "test-server"],
)
def test_a_client_resetting_mid_request_is_not_reported_and_the_server_goes_on(
    serve: Callable[[], AbstractContextManager[tuple[str, str]]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    with serve() as (url, path):
        host, port = url.removeprefix("http://").split(":")
        # When a client sends half of its request's body and resets the connection
        client = socket.create_connection((host, int(port)))
        client.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"x" * 10
        )
        time.sleep(0.2)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        time.sleep(0.3)
        # Then nothing is printed of it, by any thread of this process
        err = capfd.readouterr().err
        assert "Exception occurred" not in err and "Traceback" not in err, err
        # And the server still answers the next client
        assert httpx.get(f"{url}/next", timeout=10).status_code < 500
