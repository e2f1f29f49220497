"""The loopback servers' one lifecycle (`worker/loopback.py`): a client that hangs up before its
answer is written (a CLI stopped mid-request, a hostile agent's probe) is not reported as a
server error, and the server goes on serving."""

from __future__ import annotations

import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from claude_jobs.worker.loopback import LoopbackServer

#: Large enough that writing it to a peer that is gone fails (the kernel's buffers fill).
BODY = b"x" * (8 << 20)


class SlowAnswer(LoopbackServer):
    """Answers every request with BODY once `answer_now` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_now = threading.Event()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                server.answer_now.wait(10)
                self.send_response(200)
                self.send_header("content-length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

        return Handler


def test_a_client_hanging_up_is_not_reported_and_the_server_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a loopback server whose answer is still to come
    server = SlowAnswer().start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        # When a client sends a request and resets the connection before the answer
        client = socket.create_connection((host, int(port)))
        client.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        server.answer_now.set()
        time.sleep(0.5)
        # Then nothing is printed of it
        assert "Traceback" not in capsys.readouterr().err
        # And the server still answers the next client
        assert httpx.get(f"{server.url}/next", timeout=10).status_code == 200
    finally:
        server.close()
