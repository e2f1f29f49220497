"""The local stack's WSGI servers keep connections open (`keep_alive.py`), and a kept-alive
connection carries each request whole: a body the app did not read never becomes the start of
the next request, a HEAD answer keeps the app's length, a chunked request is answered and the
connection closed."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from claude_jobs_tools.local.keep_alive import KeepAlive
from tests.support.servers import serving


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Echoes the method, path and body, except under /ignore, whose body it never reads."""
    path = environ["PATH_INFO"]
    body = b"" if path == "/ignore" else environ["wsgi.input"].read()
    answer = f"{environ['REQUEST_METHOD']} {path} {body.decode()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


@pytest.fixture
def server() -> Iterator[BaseWSGIServer]:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=KeepAlive)
    server.daemon_threads = True  # type: ignore[attr-defined]
    with serving(server):
        yield server


def _connection(server: BaseWSGIServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)


def test_requests_share_one_connection_and_a_body_left_unread_does_not_leak(
    server: BaseWSGIServer,
) -> None:
    # Given one client connection
    connection = _connection(server)
    answers = []
    # When it sends a request whose body the app ignores, then two more
    for method, path, body in (
        ("POST", "/ignore", b"GET /smuggled HTTP/1.1\r\n\r\n"),
        ("POST", "/echo", b"second"),
        ("GET", "/third", None),
    ):
        connection.request(method, path, body=body)
        response = connection.getresponse()
        answers.append(response.read().decode())
        # Then every answer leaves the connection open
        assert not response.will_close
    # and each request was read whole, on the same socket: the ignored body was skipped
    assert answers == ["POST /ignore ", "POST /echo second", "GET /third "]
    assert connection.sock is not None


def test_a_head_answer_keeps_the_apps_length(server: BaseWSGIServer) -> None:
    connection = _connection(server)
    connection.request("HEAD", "/object")
    response = connection.getresponse()
    assert response.getheader("Content-Length") == str(len(b"HEAD /object "))
    assert response.read() == b""
    # and the connection still serves the next request
    connection.request("GET", "/next")
    assert connection.getresponse().read() == b"GET /next "


def test_a_chunked_request_is_answered_and_its_connection_closed(server: BaseWSGIServer) -> None:
    connection = _connection(server)
    connection.request("POST", "/echo", body=iter([b"in ", b"chunks"]), encode_chunked=True)
    response = connection.getresponse()
    assert response.read() == b"POST /echo in chunks"
    assert response.will_close


def test_a_client_that_asks_to_close_is_closed(server: BaseWSGIServer) -> None:
    connection = _connection(server)
    connection.request("GET", "/bye", headers={"Connection": "close"})
    response = connection.getresponse()
    assert response.read() == b"GET /bye "
    assert response.will_close


def test_the_emulator_serves_a_clients_calls_over_one_connection() -> None:
    import uuid

    import boto3
    import urllib3

    from claude_jobs_tools.local.emulator import Emulator

    # Given the AWS emulator and one S3 client with the stack's key
    emulator = Emulator().start()
    opened: list[object] = []
    original = urllib3.connection.HTTPConnection._new_conn

    def counting(self: Any) -> Any:
        opened.append(self)
        return original(self)

    try:
        credentials = emulator.credentials
        s3 = boto3.client(
            "s3",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
        )
        bucket = f"keep-alive-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        body = b"a large body " * 50_000
        urllib3.connection.HTTPConnection._new_conn = counting  # type: ignore[method-assign]
        # When it makes twenty calls one after another: writes, heads, reads, a missing key
        for index in range(5):
            s3.put_object(Bucket=bucket, Key=f"k{index}", Body=body)
            assert s3.head_object(Bucket=bucket, Key=f"k{index}")["ContentLength"] == len(body)
            assert s3.get_object(Bucket=bucket, Key=f"k{index}")["Body"].read() == body
            with pytest.raises(s3.exceptions.ClientError):
                s3.head_object(Bucket=bucket, Key="missing")
    finally:
        urllib3.connection.HTTPConnection._new_conn = original  # type: ignore[method-assign]
        emulator.stop()
    # Then they all went over one connection (werkzeug's server closed each after one answer)
    assert len(opened) <= 1
