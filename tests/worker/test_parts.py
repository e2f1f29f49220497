"""The worker's parts on their own: the key proxy, the CLI's spawn, the sandbox, the scrubber."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from claude_jobs.worker.isolation import (
    AgentIdentity,
    IdentityPool,
    IsolationError,
    resolve_identity,
    shared_pool,
)
from claude_jobs.worker.proxy import KeyInjectingProxy
from claude_jobs.worker.sandbox import Sandbox
from claude_jobs.worker.scrub import Scrubber
from tests.support.network import socket_port
from tests.support.servers import http_server

REAL_KEY = "sk-ant-test-proxy-real-key-123456"
SSE_EVENTS = [
    b'event: message_start\ndata: {"type":"message_start"}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","x":"\xc3\xa9"}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


class Upstream:
    """A recording upstream that streams fixed SSE bytes, the middle ones only once the test
    has read the first through the proxy (so a buffering proxy would never get them)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.first_read = threading.Event()
        self.waited_for_reader = False
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                upstream.received.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                if self.path.startswith("/gateway/v1/messages"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("request-id", "req_upstream_1")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for index, event in enumerate(SSE_EVENTS):
                        if index == 1:
                            upstream.waited_for_reader = upstream.first_read.wait(10)
                        self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    payload = b'{"type":"error","error":{"type":"not_found_error"}}'
                    self.send_response(404)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self.server = http_server(Handler).start()
        self.url = f"{self.server.url}/gateway"

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[KeyInjectingProxy]:
    server = KeyInjectingProxy(upstream.url, lambda: REAL_KEY).start()
    yield server
    server.close()


#: A Messages call the forwarding allowlist lets through as it is.
MESSAGES_BODY = (
    b'{"model":"claude-sonnet-4-5","max_tokens":1024,'
    b'"messages":[{"role":"user","content":"hi"}],"stream":true}'
)


def _post(proxy: KeyInjectingProxy, path: str, headers: dict[str, str]) -> Any:
    parts = urlsplit(proxy.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    connection.request("POST", path, body=MESSAGES_BODY, headers=headers)
    return connection.getresponse()


def test_the_proxy_swaps_the_job_token_for_the_key_and_streams_the_answer_unchanged(
    proxy: KeyInjectingProxy, upstream: Upstream
) -> None:
    # Given a job token
    token = proxy.issue("job-1")
    # When the CLI posts a streaming Messages call with it
    response = _post(
        proxy,
        "/v1/messages?beta=true",
        {"x-api-key": token, "anthropic-version": "2023-06-01", "x-extra": "dropped"},
    )
    first = response.read1(len(SSE_EVENTS[0]))
    upstream.first_read.set()
    rest = response.read()
    # Then the answer streams through as it comes, byte for byte, with its headers
    assert upstream.waited_for_reader
    assert first + rest == b"".join(SSE_EVENTS)
    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream"
    assert response.getheader("request-id") == "req_upstream_1"
    # And the upstream got the real key (never the token) under its own path prefix
    (call,) = upstream.received
    assert call["path"] == "/gateway/v1/messages?beta=true"
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert headers["x-api-key"] == REAL_KEY
    assert token not in str(call["headers"]) and headers["anthropic-version"] == "2023-06-01"
    assert "x-extra" not in headers  # not on the forwarding allowlist
    assert call["body"] == MESSAGES_BODY


def test_the_proxy_refuses_unknown_or_revoked_tokens_and_other_paths(
    proxy: KeyInjectingProxy, upstream: Upstream
) -> None:
    # Given a token that was revoked, one never issued, and a live one used off /v1/
    revoked = proxy.issue("job-2")
    proxy.revoke(revoked)
    live = proxy.issue("job-3")
    # When each is used
    answers = [
        _post(proxy, "/v1/messages", {"x-api-key": revoked}),
        _post(proxy, "/v1/messages", {"authorization": "Bearer not-a-token"}),
        _post(proxy, "/v1/messages", {}),
        _post(proxy, "/admin", {"x-api-key": live}),
    ]
    # Then none reaches the upstream
    assert [a.status for a in answers] == [401, 401, 401, 404]
    assert upstream.received == []


def test_the_proxy_answers_502_when_the_upstream_is_unreachable() -> None:
    # Given a proxy whose upstream port is closed
    with socket_port() as port:
        pass
    proxy = KeyInjectingProxy(f"http://127.0.0.1:{port}", lambda: REAL_KEY).start()
    try:
        # When a job calls it
        response = _post(proxy, "/v1/messages", {"x-api-key": proxy.issue("job-4")})
        # Then it answers with an API-shaped 502
        assert response.status == 502
        assert b'"api_error"' in response.read()
    finally:
        proxy.close()


#: A stand-in for the CLI: records the environment it was exec'd with and who it runs as.
RECORDER = """#!/bin/sh
tr '\\0' '\\n' < /proc/$$/environ > environ.txt
id > id.txt
ps -o sid= -p $$ > sid.txt
"""


def _spawn_recorder(identity: AgentIdentity) -> dict[str, str]:
    """Start the recorder through the worker's transport; return what it recorded."""
    import asyncio
    import shutil
    import tempfile

    from claude_jobs.models import JobOptions
    from claude_jobs.worker.agent import AgentRequest, _clean_transport, sdk_options

    tmp_path = Path(tempfile.mkdtemp(prefix="cj-spawn-"))  # reachable by the agent's uid
    cli = tmp_path / "claude"
    cli.write_text(RECORDER)
    cli.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(tmp_path, 0o755)  # noqa: S103 - the recorder may run as another uid
    os.chmod(work, 0o777)  # noqa: S103 - the recorder may run as another uid
    request = AgentRequest(
        job_id="job-x",
        prompt="hi",
        system_prompt=None,
        options=JobOptions(),
        model="claude-test",
        cli=cli,
        cwd=work,
        env={"HOME": "/tmp/h", "ANTHROPIC_API_KEY": "cj-job-token", "PATH": "/usr/bin:/bin"},
        deadline_seconds=10,
        identity=identity,
    )

    async def run() -> None:
        transport = _clean_transport(request, sdk_options(request))
        await transport.connect()
        await transport._process.wait()
        await transport.close()

    try:
        asyncio.run(run())
        return {name: (work / f"{name}.txt").read_text() for name in ("environ", "id", "sid")}
    finally:
        shutil.rmtree(tmp_path)


def test_the_cli_is_execd_with_only_the_allowlist_and_in_a_session_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker process whose environment holds Lambda's variables and credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-sentinel")
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    monkeypatch.setenv("_HANDLER", "handler.lambda_handler")
    # When the worker's transport starts the CLI
    recorded = _spawn_recorder(AgentIdentity())
    # Then the environment the CLI was exec'd with (not one it filtered later) holds the
    # allowlist and the SDK's own variables, nothing inherited
    names = {line.split("=", 1)[0] for line in recorded["environ"].splitlines()}
    assert names == {
        "HOME",
        "ANTHROPIC_API_KEY",
        "PATH",
        "PWD",
        "CLAUDE_CODE_ENTRYPOINT",
        "CLAUDE_AGENT_SDK_VERSION",
        "CLAUDE_CODE_SDK_READS_SESSION_STATE",
    }
    assert "aws-secret-sentinel" not in recorded["environ"]
    # And it leads a session of its own (the worker kills that group when it stops it)
    assert int(recorded["sid"]) != os.getsid(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_as_root_the_cli_runs_as_the_agent_user_with_no_groups() -> None:
    # Given a worker running as root and the agent user `nobody`
    identity = resolve_identity("nobody")
    assert identity.uid not in (None, 0)
    # When the worker's transport starts the CLI
    recorded = _spawn_recorder(identity)
    # Then the CLI runs as that user, in its own group only
    assert recorded["id"].startswith(f"uid={identity.uid}(nobody) gid={identity.gid}")
    assert "(root)" not in recorded["id"]


def test_the_agent_identity_is_the_worker_unless_root() -> None:
    assert resolve_identity("nobody", euid=1000) == AgentIdentity()
    with pytest.raises(IsolationError):
        resolve_identity("", euid=0)
    with pytest.raises(IsolationError):
        resolve_identity("root", euid=0)
    with pytest.raises(IsolationError):
        resolve_identity("no-such-user-here", euid=0)


def test_the_sandbox_is_removed_even_where_the_agent_locked_it_down() -> None:
    # Given a sandbox whose agent left an unwritable, unsearchable directory with files
    sandbox = Sandbox("job-x", AgentIdentity()).create()
    assert sandbox.root is not None
    root = sandbox.root
    locked = sandbox.work_dir / "locked" / "deeper"
    locked.mkdir(parents=True)
    (locked / "file").write_text("data")
    os.chmod(locked, 0)
    os.chmod(locked.parent, 0o500)
    # When it is removed
    sandbox.remove()
    # Then nothing is left
    assert not root.exists()


def test_the_scrubber_hides_known_secrets_and_key_shapes() -> None:
    scrubber = Scrubber(["short", "a-known-secret-value"])
    text = "x a-known-secret-value y sk-ant-api03-AAAAAAAAAAAA z AKIAABCDEFGHIJKLMNOP short"
    assert scrubber.text(text) == "x [REDACTED] y [REDACTED] z [REDACTED] short"
    assert scrubber.value({"k": ["a-known-secret-value", 1]}) == {"k": ["[REDACTED]", 1]}


def test_the_scrubber_hides_values_named_like_aws_secrets_and_keeps_the_names() -> None:
    # Given text with AWS secrets as a shell, an ini file and JSON name them
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    text = (
        f"export AWS_SECRET_ACCESS_KEY={secret}\n"
        f"aws_session_token = IQoJb3JpZ2luX2VjEJr{secret}\n"
        f'{{"SecretAccessKey": "{secret}", "SessionToken":"{secret}"}}'
    )
    # When it is scrubbed
    scrubbed = Scrubber().text(text)
    # Then no value is left, every name is, and ordinary text is untouched
    assert secret not in scrubbed and "IQoJb3" not in scrubbed
    assert scrubbed.count("[REDACTED]") == 4
    assert (
        "AWS_SECRET_ACCESS_KEY=[REDACTED]" in scrubbed and '"SessionToken":"[REDACTED]"' in scrubbed
    )
    assert Scrubber().text("the secret access key rotation is monthly") == (
        "the secret access key rotation is monthly"
    )


def test_the_identity_pool_leases_distinct_uids_to_concurrent_jobs_as_root() -> None:
    base = AgentIdentity(uid=65534, gid=65534, name="nobody")
    pool = IdentityPool(base, "61000-61001", in_use=set)
    with pool.lease() as first, pool.lease() as second:
        assert {first.uid, second.uid} == {61000, 61001}
        assert first.gid == first.uid
        # More jobs at once than uids in the range: refused, not shared
        with pytest.raises(IsolationError), pool.lease():
            pass
    with pool.lease() as again:
        assert again.uid == 61001  # given back when its job ended; least recently used first
    # Not root (no user switch), or no range: every job is the base identity
    assert _lease(IdentityPool(AgentIdentity(), "61000-61001")) == AgentIdentity()
    assert _lease(IdentityPool(base, "")) == base
    with pytest.raises(IsolationError):
        IdentityPool(base, "62000-61000")


def _lease(pool: IdentityPool) -> AgentIdentity:
    with pool.lease() as identity:
        return identity


def test_every_worker_environment_of_a_process_leases_from_one_pool() -> None:
    # Given two worker environments of one process (the local stack runs several at once)
    base = AgentIdentity(uid=65534, gid=65534, name="nobody")
    first, second = shared_pool(base, "63990-63991"), shared_pool(base, "63990-63991")
    # When each leases a uid while the other holds one
    with first.lease() as one, second.lease() as two:
        # Then they are different uids: one pool, not two that both hand out the first uid
        assert first is second and one.uid != two.uid
