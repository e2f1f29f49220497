"""The proxy's reservations on their own: a call's `max_tokens` is fitted to what is left of
the budget, calls in flight each hold their worst case, and a call still open when its job
ends is cut off and charged what its answer showed."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from claude_jobs.worker.proxy import AnthropicDialect, KeyInjectingProxy
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, Usage

REAL_KEY = "sk-ant-test-reservations-key-0123456789"
MODEL = "claude-sonnet-4-5"
OUTPUT = 15e-6  # Sonnet 4.5, USD per output token


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=REAL_KEY) as server:
        yield server


def _proxy(upstream: str) -> KeyInjectingProxy:
    return KeyInjectingProxy(upstream, dialect=AnthropicDialect(lambda: REAL_KEY, [MODEL])).start()


def _post(proxy: KeyInjectingProxy, token: str, body: dict[str, Any]) -> tuple[int, bytes]:
    parts = urlsplit(proxy.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    connection.request(
        "POST",
        "/v1/messages",
        body=json.dumps(body).encode(),
        headers={"x-api-key": token, "content-type": "application/json"},
    )
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def _body(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def test_max_tokens_is_lowered_to_what_the_budget_can_pay_for(fake: FakeAnthropic) -> None:
    # Given a job with $0.05 left and a request the CLI would send (32,000 tokens, thinking)
    proxy = _proxy(fake.url)
    try:
        token = proxy.issue("job-fit", limit_usd=0.05)
        thinking = {"type": "enabled", "budget_tokens": 31_999}
        # When it calls
        status, _ = _post(proxy, token, _body(32_000, thinking=thinking))
        # Then the upstream was asked for what $0.05 pays, the thinking budget below it
        assert status == 200
        sent = fake.message_requests[-1].body
        assert 2048 <= sent["max_tokens"] <= 0.05 / OUTPUT
        assert 1024 <= sent["thinking"]["budget_tokens"] < sent["max_tokens"]
        # And a request within the budget is forwarded byte for byte
        status, _ = _post(proxy, token, _body(100))
        assert fake.message_requests[-1].raw == json.dumps(_body(100)).encode()
    finally:
        proxy.close()


def test_calls_in_flight_each_hold_their_worst_case(fake: FakeAnthropic) -> None:
    # Given a $0.05 job whose first call (worth all of it) is still being answered
    proxy = _proxy(fake.url)
    try:
        token = proxy.issue("job-parallel", limit_usd=0.05)
        fake.script(Text("slow", usage=Usage(12, 3), delay=1.5))
        first: list[int] = []
        thread = threading.Thread(target=lambda: first.append(_post(proxy, token, _body(8000))[0]))
        thread.start()
        deadline = time.monotonic() + 5
        while not fake.message_requests and time.monotonic() < deadline:
            time.sleep(0.02)
        # When another call comes meanwhile
        status, data = _post(proxy, token, _body(8000))
        # Then it is told to wait (what is left is held), and never reaches the upstream
        assert status == 429 and b"rate_limit_error" in data
        assert len(fake.message_requests) == 1
        thread.join(10)
        assert first == [200]
        # And once the first has settled (it cost little), calls go through again
        status, _ = _post(proxy, token, _body(8000))
        assert status == 200 and len(fake.message_requests) == 2
    finally:
        proxy.close()


class _Stalling:
    """An upstream that starts a streamed answer, shows `chars` characters of text, then
    stalls (as a model still generating) until its connection is closed."""

    def __init__(self, chars: int, headers: bytes = b"", input_tokens: int = 1000) -> None:
        self.chars = chars
        self.headers = headers
        self.input_tokens = input_tokens
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        connection, _ = self.sock.accept()
        connection.recv(65536)

        def event(data: dict[str, Any]) -> bytes:
            payload = f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()
            return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"

        start = {
            "type": "message_start",
            "message": {
                "model": MODEL,
                "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
            },
        }
        answer = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n" + self.headers + b"\r\n" + event(start)
        )
        for _ in range(self.chars // 300):
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
            delta["delta"]["text"] = "x" * 300  # type: ignore[index]
            answer += event(delta)
        connection.sendall(answer)
        while connection.recv(1024):  # until the proxy cuts it
            pass
        self.closed.set()
        connection.close()


@pytest.mark.parametrize(
    "headers",
    [b"", b"connection: close\r\n"],
    ids=["keep-alive", "upstream-will-close"],  # http.client then drops the connection's socket
)
def test_a_call_open_when_its_job_ends_is_cut_and_charged_what_it_showed(headers: bytes) -> None:
    # Given a call whose caller hung up after the first bytes, its answer still being read
    # (from an upstream that keeps its connection, or one that says it will close it)
    upstream = _Stalling(chars=30_000, headers=headers)
    proxy = _proxy(upstream.url)
    try:
        token = proxy.issue("job-cut", limit_usd=5.0)
        parts = urlsplit(proxy.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as client:
            body = json.dumps(_body(32_000, stream=True)).encode()
            client.sendall(
                b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                + f"x-api-key: {token}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            client.recv(1024)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            metered = proxy.metered(token)
            if metered is not None and metered.open_usd >= 10_000 * OUTPUT:
                break
            time.sleep(0.05)
        # When its job ends
        final = proxy.revoke(token)
        # Then the call is charged its input and the output it showed (30,000 characters:
        # at least 10,000 tokens), and the upstream answer is cut off
        assert final is not None
        assert final.cost_usd >= 1000 * 3e-6 + 10_000 * OUTPUT
        assert final.cost_usd <= 1000 * 3e-6 + 32_000 * OUTPUT  # never past its reservation
        assert upstream.closed.wait(5)
    finally:
        proxy.close()


def test_a_call_is_forwarded_only_once_its_exposure_is_journaled(fake: FakeAnthropic) -> None:
    # Given a $0.05 job whose spend journal notes each figure and what the upstream had seen
    proxy = _proxy(fake.url)
    written: list[tuple[float, int]] = []

    def journal(usd: float) -> bool:
        written.append((usd, len(fake.message_requests)))
        return True

    try:
        token = proxy.issue("job-journal", limit_usd=0.05, journal=journal)
        fake.script(Text("ok", usage=Usage(1000, 200)))
        # When it calls
        status, _ = _post(proxy, token, _body(8000))
        # Then its worst case was written before the upstream saw the call
        assert status == 200
        (reserved, seen_before), (settled, _) = written
        assert seen_before == 0
        sent = fake.message_requests[-1].body["max_tokens"]
        assert reserved >= sent * OUTPUT
        # And what it cost was written once it settled, in place of its worst case
        metered = proxy.metered(token)
        assert metered is not None
        assert settled == pytest.approx(metered.cost_usd) and 0 < settled < reserved
    finally:
        proxy.close()


@pytest.mark.parametrize("fault", ["taken over", "storage fault"])
def test_a_call_whose_exposure_cannot_be_journaled_is_not_forwarded(
    fake: FakeAnthropic, fault: str
) -> None:
    # Given a job whose spend journal cannot be written (the job is no longer this worker's,
    # or the table fails)
    def journal(usd: float) -> bool:
        if fault == "storage fault":
            raise OSError("the table is unreachable")
        return False

    proxy = _proxy(fake.url)
    try:
        token = proxy.issue("job-unjournaled", limit_usd=0.05, journal=journal)
        # When it calls
        status, data = _post(proxy, token, _body(8000))
        # Then it is told to try again, the upstream saw nothing and the meter holds nothing
        assert status == 503 and b"could not be recorded" in data
        assert fake.message_requests == []
        metered = proxy.metered(token)
        assert metered is not None and metered.cost_usd == 0 and metered.calls == 0
    finally:
        proxy.close()


def test_a_call_whose_usage_passes_its_reservation_is_journaled_while_it_is_open() -> None:
    # Given a call whose input the proxy underestimated: a small body the upstream reports as
    # 200,000 input tokens ($0.60 at Sonnet's $3/M) before its answer stalls, the job's spend
    # journal noting each figure
    upstream = _Stalling(chars=0, input_tokens=200_000)
    proxy = _proxy(upstream.url)
    written: list[float] = []

    def journal(usd: float) -> bool:
        written.append(usd)
        return True

    try:
        token = proxy.issue("job-grown", limit_usd=5.0, journal=journal)
        results: list[object] = []

        def call() -> None:
            try:
                results.append(_post(proxy, token, _body(100, stream=True))[0])
            except (OSError, http.client.HTTPException) as exc:  # cut off when its job ends
                results.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        # When the upstream has reported that usage, its answer still open
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (written and written[-1] >= 0.6):
            time.sleep(0.02)
        # Then the grown exposure was written while the call is open (a worker that died now
        # would leave it for the next attempt), not only its small reservation
        assert not upstream.closed.is_set() and not results
        (reserved, *grown) = written
        assert reserved < 0.01
        assert grown and grown[-1] >= 200_000 * 3e-6
        # And once the job ends, that is what it was charged
        final = proxy.revoke(token)
        assert final is not None and final.cost_usd >= 200_000 * 3e-6
        caller.join(10)
    finally:
        proxy.close()
