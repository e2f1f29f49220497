"""The key proxy's rules on their own, against the fake Messages API: which requests it
forwards, how it meters them, and how it enforces a job's budget."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from claude_jobs.worker import pricing
from claude_jobs.worker.metering import UsageReader
from claude_jobs.worker.pricing import Tokens
from claude_jobs.worker.proxy import MAX_BODY_BYTES, KeyInjectingProxy
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, Text, ToolUse, Usage

REAL_KEY = "sk-ant-test-proxy-rules-key-0123456789"
MODEL = "claude-sonnet-4-5"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=REAL_KEY) as server:
        yield server


@pytest.fixture
def proxy(fake: FakeAnthropic) -> Iterator[KeyInjectingProxy]:
    server = KeyInjectingProxy(fake.url, lambda: REAL_KEY, max_body_bytes=4096).start()
    yield server
    server.close()


def _connection(proxy: KeyInjectingProxy, timeout: float = 10) -> http.client.HTTPConnection:
    parts = urlsplit(proxy.url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)


def _call(
    proxy: KeyInjectingProxy,
    method: str,
    target: str,
    token: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, http.client.HTTPResponse]:
    connection = _connection(proxy)
    payload = json.dumps(body if body is not None else _message_body()).encode()
    connection.request(
        method, target, body=payload, headers={"x-api-key": token, **(headers or {})}
    )
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, response


def _raw(proxy: KeyInjectingProxy, request: bytes) -> bytes:
    """Send raw bytes; everything answered until the proxy closes the connection."""
    parts = urlsplit(proxy.url)
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _message_body(stream: bool = False, model: str = MODEL) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }


def _error_type(data: bytes) -> str:
    """The error type of an Anthropic-shaped error body (fails on any other shape)."""
    payload = json.loads(data)
    assert payload["type"] == "error" and set(payload["error"]) == {"type", "message"}
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    return str(payload["error"]["type"])


# ------------------------------------------------------------------ what is forwarded

FORBIDDEN = [
    # other methods on the allowed paths
    ("GET", "/v1/messages", 405, "invalid_request_error"),
    ("PUT", "/v1/messages", 405, "invalid_request_error"),
    ("DELETE", "/v1/messages", 405, "invalid_request_error"),
    ("PATCH", "/v1/messages?beta=true", 405, "invalid_request_error"),
    ("OPTIONS", "/v1/messages", 405, "invalid_request_error"),
    ("GET", "/v1/messages/count_tokens", 405, "invalid_request_error"),
    # other paths
    ("POST", "/v1/messages/batches", 404, "not_found_error"),
    ("GET", "/v1/messages/batches", 404, "not_found_error"),
    ("POST", "/v1/messages/batches?beta=true", 404, "not_found_error"),
    ("POST", "/v1/files", 404, "not_found_error"),
    ("GET", "/v1/files", 404, "not_found_error"),
    ("DELETE", "/v1/files/file_011", 404, "not_found_error"),
    ("GET", "/v1/models", 404, "not_found_error"),
    ("POST", "/v1/complete", 404, "not_found_error"),
    ("POST", "/v1/MESSAGES", 404, "not_found_error"),
    ("POST", "/v1", 404, "not_found_error"),
    ("POST", "/admin", 404, "not_found_error"),
    # paths not in normal form: dot segments, encodings, empty segments
    ("POST", "/v1/messages/../files", 400, "invalid_request_error"),
    ("POST", "/v1/x/../messages", 400, "invalid_request_error"),
    ("POST", "/v1/./messages", 400, "invalid_request_error"),
    ("POST", "/v1/messages/%2e%2e/files", 400, "invalid_request_error"),
    ("POST", "/v1/messages/%2E%2E/batches", 400, "invalid_request_error"),
    ("POST", "/v1/mess%61ges", 400, "invalid_request_error"),
    ("POST", "/v1%2fmessages", 400, "invalid_request_error"),
    ("POST", "/v1/messages%2Fbatches", 400, "invalid_request_error"),
    ("POST", "/v1/messages%5c..%5cfiles", 400, "invalid_request_error"),
    ("POST", "/v1/messages\\..\\files", 400, "invalid_request_error"),
    ("POST", "//v1/messages", 400, "invalid_request_error"),
    ("POST", "/v1//messages", 400, "invalid_request_error"),
    ("POST", "/v1/messages/", 400, "invalid_request_error"),
    ("POST", "/v1/messages;x=1", 400, "invalid_request_error"),
    # request targets that are not an origin-form path, or odd queries
    ("POST", "http://evil.example/v1/messages", 400, "invalid_request_error"),
    ("POST", "http://127.0.0.1:1/v1/messages", 400, "invalid_request_error"),
    ("POST", "*", 400, "invalid_request_error"),
    ("POST", "/v1/messages#frag", 400, "invalid_request_error"),
    ("POST", "/v1/messages?beta=true&x=../../v1/files", 400, "invalid_request_error"),
    ("POST", "/v1/messages?" + "a" * 2000, 400, "invalid_request_error"),
]


@pytest.mark.parametrize(("method", "target", "status", "kind"), FORBIDDEN)
def test_anything_but_post_to_the_two_messages_paths_is_refused_and_never_forwarded(
    proxy: KeyInjectingProxy, fake: FakeAnthropic, method: str, target: str, status: int, kind: str
) -> None:
    # Given a live job token
    token = proxy.issue("job-paths")
    # When the agent sends a request the proxy must not forward
    answer, data, _ = _call(proxy, method, target, token)
    # Then it gets an Anthropic-shaped error with a fitting status, and the upstream saw nothing
    assert (answer, _error_type(data)) == (status, kind)
    assert fake.requests == []


def test_an_unknown_method_or_a_head_request_is_refused_too(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    token = proxy.issue("job-methods")
    status, data, _ = _call(proxy, "BREW", "/v1/messages", token)
    assert status in (405, 501) and _error_type(data)
    connection = _connection(proxy)
    connection.request("HEAD", "/v1/messages", headers={"x-api-key": token})
    assert connection.getresponse().status == 405
    assert fake.requests == []


def test_the_two_allowed_calls_reach_the_upstream_at_exactly_their_path(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    # Given a live job token
    token = proxy.issue("job-allowed")
    # When the agent posts a message (with the CLI's query string) and counts tokens
    message, _, _ = _call(proxy, "POST", "/v1/messages?beta=true", token)
    counted, data, _ = _call(proxy, "POST", "/v1/messages/count_tokens?beta=true", token)
    # Then both are forwarded, at exactly those paths, with the real key
    assert (message, counted) == (200, 200) and json.loads(data) == {"input_tokens": 10}
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/v1/messages?beta=true"),
        ("POST", "/v1/messages/count_tokens?beta=true"),
    ]
    assert {r.headers["x-api-key"] for r in fake.requests} == {REAL_KEY}


def test_the_upstream_is_asked_for_an_uncompressed_answer(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    # Given an agent that asks for a compressed answer (which the meter could not read)
    token = proxy.issue("job-encoding")
    # When it posts a message
    _call(proxy, "POST", "/v1/messages", token, headers={"accept-encoding": "gzip, br"})
    # Then the upstream was asked for the identity encoding
    (request,) = fake.requests
    assert request.headers["accept-encoding"] == "identity"


def test_a_body_over_the_cap_is_refused_before_it_is_read(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    # Given a proxy whose body cap is 4 KiB, and a job token
    token = proxy.issue("job-size")
    # When a request announces a larger body but sends none of it
    answer = _raw(
        proxy,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"x-api-key: {token}\r\nContent-Length: 5000\r\n\r\n".encode(),
    )
    # Then it answers 413 at once (it did not wait for the body), and forwards nothing
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert _error_type(answer.split(b"\r\n\r\n", 1)[1]) == "request_too_large"
    # And a chunked body that grows past the cap is refused as well
    connection = _connection(proxy)
    chunks = iter([b"{" + b" " * 3000, b" " * 3000 + b"}"])
    connection.request(
        "POST",
        "/v1/messages",
        body=chunks,
        headers={"x-api-key": token},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413 and _error_type(response.read()) == "request_too_large"
    assert fake.requests == []
    # The deployment's default cap is the Messages API's own request limit
    assert MAX_BODY_BYTES == 32 * 1024 * 1024


def test_a_request_with_both_a_length_and_chunked_encoding_is_refused(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    token = proxy.issue("job-smuggle")
    answer = _raw(
        proxy,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + f"x-api-key: {token}\r\nContent-Length: 4\r\n\r\n0\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert fake.requests == []


# ------------------------------------------------------------------ metering


def test_streamed_and_plain_answers_are_metered_and_priced(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    # Given a job and an upstream answering with known usage, streamed then as one JSON
    token = proxy.issue("job-meter")
    streamed = Usage(
        input_tokens=1200, output_tokens=300, cache_read_input_tokens=5000,
        cache_creation_input_tokens=700,
    )  # fmt: skip
    plain = Usage(input_tokens=40, output_tokens=9)
    fake.script(
        ToolUse("Bash", {"command": "ls"}, usage=streamed),
        Text("done", usage=plain),
    )
    # When the agent calls the API once streaming and once not
    first, stream_bytes, response = _call(
        proxy, "POST", "/v1/messages?beta=true", token, _message_body(stream=True)
    )
    second, _, _ = _call(proxy, "POST", "/v1/messages", token, _message_body(stream=False))
    # Then the answers came through intact
    assert (first, second) == (200, 200)
    assert response.getheader("content-type") == "text/event-stream"
    assert b"event: message_stop" in stream_bytes and b'"output_tokens":300' in stream_bytes
    # And the job's meter holds the tokens of both, priced with the price table
    metered = proxy.metered(token)
    assert metered is not None
    assert (metered.input_tokens, metered.output_tokens) == (1240, 309)
    assert (metered.cache_read_input_tokens, metered.cache_creation_input_tokens) == (5000, 700)
    assert metered.calls == 2
    expected = (1240 * 3 + 309 * 15 + 5000 * 0.30 + 700 * 3.75) / 1_000_000
    assert metered.cost_usd == pytest.approx(expected)
    # Another job's meter is untouched
    other = proxy.issue("job-other")
    assert proxy.metered(other) is not None and proxy.metered(other).cost_usd == 0  # type: ignore[union-attr]


def test_a_refused_or_unauthorized_call_costs_nothing(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    token = proxy.issue("job-free")
    _call(proxy, "POST", "/v1/messages/batches", token)
    metered = proxy.metered(token)
    assert metered is not None and metered.cost_usd == 0 and metered.calls == 0


def test_the_usage_reader_handles_events_split_anywhere() -> None:
    # Given an SSE stream with CRLF separators, fed one byte at a time
    events = [
        ("message_start", {"type": "message_start", "message": {
            "model": "claude-haiku-4-5-20251001",
            "usage": {"input_tokens": 100, "output_tokens": 1, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 1000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 400,
                                         "ephemeral_1h_input_tokens": 600}}}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"text": "x" * 5000}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 50}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 80}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    stream = b"".join(
        f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode() for name, data in events
    )
    seen: list[tuple[Tokens | None, Tokens]] = []
    reader = UsageReader(streaming=True, model="fallback", charge=lambda a, b: seen.append((a, b)))
    for index in range(len(stream)):
        reader.feed(stream[index : index + 1])
    reader.finish()
    # Then the last usage is the cumulative one: output tokens replaced, not added
    final = seen[-1][1]
    assert final.model == "claude-haiku-4-5-20251001"
    assert (final.input_tokens, final.output_tokens) == (100, 80)
    assert (final.cache_creation_input_tokens, final.cache_creation_1h_input_tokens) == (1000, 600)
    # And each charge starts where the previous ended
    assert [before for before, _ in seen] == [None, *[after for _, after in seen[:-1]]]
    expected = (100 * 1 + 80 * 5 + 400 * 1.25 + 600 * 2) / 1_000_000
    assert pricing.cost_usd(final) == pytest.approx(expected)


def test_a_compressed_plain_answer_is_metered_too() -> None:
    # Given a plain JSON answer that an upstream compressed despite being asked not to
    message = {"model": "claude-opus-4-5", "usage": {"input_tokens": 1000, "output_tokens": 10}}
    body = gzip.compress(json.dumps(message).encode())
    seen: list[Tokens] = []
    reader = UsageReader(
        streaming=False, model="", charge=lambda _, after: seen.append(after),
        content_encoding="gzip",
    )  # fmt: skip
    # When it is fed in two pieces
    reader.feed(body[:10])
    reader.feed(body[10:])
    reader.finish()
    reader.finish()
    # Then its usage is charged once, at the model's price
    (tokens,) = seen
    assert pricing.cost_usd(tokens) == pytest.approx((1000 * 5 + 10 * 25) / 1e6)


# ------------------------------------------------------------------ budget


def test_calls_are_refused_once_the_jobs_budget_is_spent(
    proxy: KeyInjectingProxy, fake: FakeAnthropic
) -> None:
    # Given a job with a $0.05 limit, and answers costing $0.03 each
    token = proxy.issue("job-budget", limit_usd=0.05)
    fake.default = Text("costly", usage=Usage(input_tokens=10_000, output_tokens=0))
    # When it calls five times
    answers = [_call(proxy, "POST", "/v1/messages", token) for _ in range(5)]
    # Then two calls went through (the second crossed the limit) and the rest were refused
    # with a clear, non-retryable error
    assert [status for status, _, _ in answers] == [200, 200, 402, 402, 402]
    refusal = json.loads(answers[2][1])
    assert refusal["error"]["type"] == "billing_error"
    assert "budget" in refusal["error"]["message"]
    assert len(fake.requests) == 2
    metered = proxy.metered(token)
    assert metered is not None and metered.cost_usd == pytest.approx(0.06)
    assert metered.budget_refusals == 3
    # And count_tokens is refused as well once the budget is spent
    status, _, _ = _call(proxy, "POST", "/v1/messages/count_tokens", token)
    assert status == 402 and len(fake.requests) == 2
    # While a job without a limit is not affected
    free = proxy.issue("job-unlimited")
    assert _call(proxy, "POST", "/v1/messages", free)[0] == 200


def test_a_job_cannot_outrun_its_budget_with_parallel_calls(fake: FakeAnthropic) -> None:
    # Given a proxy allowing 2 calls in flight per job, and a slow upstream
    proxy = KeyInjectingProxy(fake.url, lambda: REAL_KEY, max_calls_in_flight=2).start()
    try:
        token = proxy.issue("job-parallel", limit_usd=0.01)
        fake.default = Text("slow", delay=1.5, usage=Usage(input_tokens=10_000))
        statuses: list[int] = []

        def call() -> None:
            statuses.append(_call(proxy, "POST", "/v1/messages", token)[0])

        # When the agent fires six calls at once
        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=30)
        # Then only two reached the upstream; the others were told to slow down
        assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
        assert len(fake.requests) == 2
        # And once those two are metered, the budget is spent for good
        assert _call(proxy, "POST", "/v1/messages", token)[0] == 402
    finally:
        proxy.close()


def test_a_revoked_token_keeps_its_final_meter(proxy: KeyInjectingProxy) -> None:
    token = proxy.issue("job-revoke", limit_usd=1.0)
    metered = proxy.revoke(token)
    assert metered is not None and metered.cost_usd == 0 and metered.limit_usd == 1.0
    assert proxy.metered(token) is None


# ------------------------------------------------------------------ prices


def test_prices_come_from_one_table_by_model_family_and_version() -> None:
    # (100k tokens: under every long-prompt tier; prices are per million)
    million = Tokens(model="", input_tokens=100_000)
    out = Tokens(model="", output_tokens=100_000)
    cases = {
        "claude-sonnet-4-5": (3, 15),
        "claude-sonnet-4-5-20250929": (3, 15),
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0": (3, 15),
        "claude-opus-4-5": (5, 25),
        "claude-opus-4-1-20250805": (15, 75),
        "claude-haiku-4-5": (1, 5),
        "claude-3-5-haiku-20241022": (0.8, 4),
        "claude-sonnet-5": (2, 10),
    }
    for model, (per_input, per_output) in cases.items():
        assert pricing.cost_usd(_with(million, model)) * 10 == pytest.approx(per_input), model
        assert pricing.cost_usd(_with(out, model)) * 10 == pytest.approx(per_output), model
    # Unknown models are priced like the most expensive model in the table
    top = max(p.output for p in pricing.PRICES.values())
    assert pricing.cost_usd(_with(out, "claude-nova-9")) * 10 == pytest.approx(top)
    assert pricing.cost_usd(_with(out, "")) * 10 == pytest.approx(top)
    # Web searches are priced per request
    searches = Tokens(model="claude-sonnet-4-5", web_search_requests=1000)
    assert pricing.cost_usd(searches) == pytest.approx(10.0)


def test_a_long_prompt_is_priced_at_its_tier() -> None:
    short = Tokens(model="claude-sonnet-4-5", input_tokens=200_000, output_tokens=1000)
    long = Tokens(model="claude-sonnet-4-5", input_tokens=200_001, output_tokens=1000)
    assert pricing.cost_usd(short) == pytest.approx((200_000 * 3 + 1000 * 15) / 1e6)
    assert pricing.cost_usd(long) == pytest.approx((200_001 * 6 + 1000 * 22.5) / 1e6)


def _with(tokens: Tokens, model: str) -> Tokens:
    from dataclasses import replace

    return replace(tokens, model=model)
