"""The proxy's Bedrock dialect on its own, against the fake Bedrock runtime: which requests it
forwards, how it signs them, how it meters event-stream and JSON answers, and the wire format
of the fake itself (checked with botocore's own event-stream parser)."""

from __future__ import annotations

import base64
import http.client
import json
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.eventstream import EventStreamBuffer

from claude_jobs.settings import Settings
from claude_jobs.worker.bedrock import BedrockDialect, bedrock_proxy, runtime_endpoint
from claude_jobs.worker.metering import UsageReader
from claude_jobs.worker.pricing import Tokens
from claude_jobs.worker.proxy import KeyInjectingProxy
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse, Usage, stream_events
from claude_jobs_tools.local.fake_bedrock import (
    Credentials,
    FakeBedrock,
    chunk_frame,
    signature_matches,
)

PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
OTHER_PROFILE = "us.anthropic.claude-opus-4-5-20251101-v1:0"
ROLE = Credentials("test-role-key-id", "test-role-secret-0123456789", "test-role-token-0123")
STRANGER = Credentials("test-other-key-id", "test-other-secret-0123456789")
#: Sonnet 4.5, USD per input and output token.
INPUT, OUTPUT = 3e-6, 15e-6


def _signer(credentials: Credentials) -> Any:
    return lambda: BotocoreCredentials(
        credentials.access_key, credentials.secret_key, credentials.token
    )


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock(credentials=ROLE, region="us-east-1") as server:
        yield server


def _proxy(fake: FakeBedrock, credentials: Credentials = ROLE) -> KeyInjectingProxy:
    return KeyInjectingProxy(
        fake.url,
        dialect=BedrockDialect(
            region="us-east-1", model_ids=[PROFILE], credentials=_signer(credentials)
        ),
    ).start()


@pytest.fixture
def proxy(fake: FakeBedrock) -> Iterator[KeyInjectingProxy]:
    server = _proxy(fake)
    yield server
    server.close()


def _call(
    proxy: KeyInjectingProxy,
    method: str,
    target: str,
    token: str | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, http.client.HTTPResponse]:
    parts = urlsplit(proxy.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    body = json.dumps(_invoke_body()).encode()
    sent = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        sent["x-claude-jobs-token"] = token
    connection.request(method, target, body=body, headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, response


def _invoke_body() -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }


def _stream(model: str = PROFILE) -> str:
    return f"/model/{model}/invoke-with-response-stream"


def _bedrock_error(response: http.client.HTTPResponse, data: bytes) -> str:
    """The exception name of a Bedrock-shaped error (fails on any other shape)."""
    payload = json.loads(data)
    assert set(payload) == {"message"} and isinstance(payload["message"], str)
    assert payload["message"]
    return str(response.getheader("x-amzn-errortype"))


def _events(data: bytes) -> list[dict[str, Any]]:
    """The Messages API events inside an event stream, parsed by botocore."""
    buffer: Any = EventStreamBuffer()
    buffer.add_data(data)
    events = []
    for message in buffer:
        assert message.headers[":message-type"] == "event"
        assert message.headers[":event-type"] == "chunk"
        assert message.headers[":content-type"] == "application/json"
        events.append(json.loads(base64.b64decode(json.loads(message.payload)["bytes"])))
    return events


# ------------------------------------------------------------------ the fake's wire format


def test_the_fakes_frames_are_aws_event_stream_messages_botocore_parses() -> None:
    # Given the stream events of a message with a text block and a tool call
    usage = Usage(input_tokens=31, output_tokens=4)
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": "héllo " * 50},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
    ]
    events = list(stream_events(PROFILE, blocks, "tool_use", usage, chunk_chars=64))
    # When each is written as a frame and botocore reads the bytes back
    parsed = _events(b"".join(chunk_frame(e) for e in events))
    # Then every frame passed botocore's prelude and message checksums, with Bedrock's headers,
    # and carried its event unchanged
    assert parsed == events
    assert [e["type"] for e in parsed][:2] == ["message_start", "content_block_start"]


def test_a_corrupted_frame_is_rejected_by_botocore() -> None:
    # Given a frame with one payload byte changed (so the test above can fail)
    frame = bytearray(chunk_frame({"type": "message_stop"}))
    frame[-8] ^= 0x01
    # When botocore reads it, Then its message checksum does not match
    with pytest.raises(Exception, match=r"(?i)checksum|crc"):
        _events(bytes(frame))


# ------------------------------------------------------------------ what is forwarded

FORBIDDEN = [
    # the CLI's control-plane call, and other operations
    ("GET", "/inference-profiles?type=SYSTEM_DEFINED", 400, "ValidationException"),
    ("GET", "/inference-profiles", 404, "UnknownOperationException"),
    ("GET", "/foundation-models", 404, "UnknownOperationException"),
    ("POST", f"/model/{PROFILE}/converse", 404, "UnknownOperationException"),
    ("POST", f"/model/{PROFILE}/converse-stream", 404, "UnknownOperationException"),
    ("POST", f"/model/{PROFILE}/count-tokens", 404, "UnknownOperationException"),
    ("POST", "/async-invoke", 404, "UnknownOperationException"),
    ("POST", "/guardrail/g1/version/1/apply", 404, "UnknownOperationException"),
    ("POST", f"/model/{PROFILE}", 404, "UnknownOperationException"),
    ("POST", "/v1/messages", 404, "UnknownOperationException"),
    # other models and profiles
    ("POST", _stream(OTHER_PROFILE), 403, "AccessDeniedException"),
    ("POST", f"/model/{OTHER_PROFILE}/invoke", 403, "AccessDeniedException"),
    ("POST", _stream("anthropic.claude-sonnet-4-5-20250929-v1:0"), 403, "AccessDeniedException"),
    ("POST", _stream(PROFILE.upper()), 403, "AccessDeniedException"),
    ("POST", _stream(PROFILE + "x"), 403, "AccessDeniedException"),
    # other methods on the allowed paths
    ("GET", _stream(), 405, "ValidationException"),
    ("PUT", f"/model/{PROFILE}/invoke", 405, "ValidationException"),
    ("DELETE", _stream(), 405, "ValidationException"),
    # paths not in normal form, encoded tricks, odd targets
    ("POST", f"/model/{PROFILE}/../{OTHER_PROFILE}/invoke", 404, "UnknownOperationException"),
    ("POST", "/model/../invoke", 400, "ValidationException"),
    ("POST", "/model/./invoke", 400, "ValidationException"),
    ("POST", "/model/%2e%2e/invoke", 400, "ValidationException"),
    ("POST", f"/model/{PROFILE}%2F..%2F{OTHER_PROFILE}/invoke", 400, "ValidationException"),
    ("POST", f"/model/{PROFILE.replace('claude', 'cl%61ude')}/invoke", 400, "ValidationException"),
    ("POST", f"/model/{PROFILE}%00/invoke", 400, "ValidationException"),
    ("POST", f"//model/{PROFILE}/invoke", 404, "UnknownOperationException"),
    ("POST", f"/model//{PROFILE}/invoke", 404, "UnknownOperationException"),
    ("POST", f"/model/{PROFILE}/invoke/", 404, "UnknownOperationException"),
    ("POST", f"/model/{PROFILE}/invoke;x=1", 404, "UnknownOperationException"),
    ("POST", f"/model/{PROFILE}/invoke?x=1", 400, "ValidationException"),
    ("POST", f"/model/{PROFILE}/invoke#frag", 400, "ValidationException"),
    ("POST", f"http://evil.example/model/{PROFILE}/invoke", 400, "ValidationException"),
    ("POST", "*", 400, "ValidationException"),
]


@pytest.mark.parametrize(("method", "target", "status", "exception"), FORBIDDEN)
def test_anything_but_invoking_an_allowed_model_is_refused_in_bedrocks_shape(
    fake: FakeBedrock,
    proxy: KeyInjectingProxy,
    method: str,
    target: str,
    status: int,
    exception: str,
) -> None:
    # Given a job's live token
    token = proxy.issue("job-1")
    # When it asks for something that is not InvokeModel(WithResponseStream) on its models
    answer, data, response = _call(proxy, method, target, token)
    # Then the proxy refuses it in Bedrock's error shape, and the runtime never hears of it
    assert (answer, _bedrock_error(response, data)) == (status, exception)
    assert fake.requests == []


def test_a_call_without_a_live_token_is_refused(
    fake: FakeBedrock, proxy: KeyInjectingProxy
) -> None:
    # Given no token, a made-up one, a revoked one, and the token in the Anthropic header
    revoked = proxy.issue("job-1")
    proxy.revoke(revoked)
    live = proxy.issue("job-2")
    for token, headers in [
        (None, {}),
        ("cj-job-made-up", {}),
        (revoked, {}),
        (None, {"x-api-key": live}),
        (None, {"authorization": f"Bearer {live}"}),
    ]:
        # When each calls an allowed model
        status, data, response = _call(proxy, "POST", _stream(), token, headers)
        # Then it is refused as an unknown client, and nothing reaches the runtime
        assert (status, _bedrock_error(response, data)) == (401, "UnrecognizedClientException")
    assert fake.requests == []


@pytest.mark.parametrize("colon", [":", "%3A", "%3a"])
def test_an_allowed_call_is_signed_with_the_worker_role_and_carries_only_safe_headers(
    fake: FakeBedrock, proxy: KeyInjectingProxy, colon: str
) -> None:
    # Given a job's token, and a client that adds headers of its own (a costlier service
    # tier, a credential of its own, the job token)
    token = proxy.issue("job-1")
    fake.script(Text("signed"))
    extra = {
        "x-amzn-bedrock-service-tier": "priority",
        "authorization": "AWS4-HMAC-SHA256 Credential=forged",
        "x-amz-security-token": "forged",
        "x-api-key": "forged",
    }
    # When it invokes the allowed profile, its colon spelled raw (as the CLI does) or encoded
    status, data, _ = _call(proxy, "POST", _stream(PROFILE.replace(":", colon)), token, extra)
    # Then the runtime answered it: the signature verified with the worker role's credentials
    assert status == 200, data
    (received,) = fake.requests
    assert signature_matches(received, ROLE, "us-east-1")
    # at the path rebuilt from the allowed id, spelled as the AWS SDKs spell it
    assert received.path == _stream(PROFILE.replace(":", "%3A"))
    # And none of the client's own headers (nor its token) went upstream
    assert set(received.headers) == {
        "accept-encoding",
        "authorization",
        "content-length",
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
    }
    assert received.headers["x-amz-security-token"] == ROLE.token
    assert token not in json.dumps(received.headers)
    # And what came back is the runtime's event stream, relayed unchanged
    assert [e["type"] for e in _events(data)][-1] == "message_stop"


def test_a_signature_made_with_other_credentials_is_refused_by_the_runtime(
    fake: FakeBedrock,
) -> None:
    # Given a proxy that signs with credentials the runtime does not know
    proxy = _proxy(fake, STRANGER)
    try:
        token = proxy.issue("job-1")
        # When it forwards an allowed call
        status, data, response = _call(proxy, "POST", _stream(), token)
    finally:
        proxy.close()
    # Then the fake's signature check refuses it (the check above can fail)
    assert (status, _bedrock_error(response, data)) == (403, "InvalidSignatureException")
    (received,) = fake.requests
    assert not signature_matches(received, ROLE, "us-east-1")
    assert signature_matches(received, STRANGER, "us-east-1")
    assert not signature_matches(received, STRANGER, "us-west-2")


def test_without_credentials_the_proxy_answers_503_and_forwards_nothing(
    fake: FakeBedrock,
) -> None:
    # Given a worker with no AWS credentials at all
    proxy = KeyInjectingProxy(
        fake.url,
        dialect=BedrockDialect(region="us-east-1", model_ids=[PROFILE], credentials=lambda: None),
    ).start()
    try:
        # When a job calls its model
        status, data, response = _call(proxy, "POST", _stream(), proxy.issue("job-1"))
    finally:
        proxy.close()
    # Then the call fails as an infrastructure fault, and the runtime saw nothing
    assert (status, _bedrock_error(response, data)) == (503, "InternalServerException")
    assert fake.requests == []


def test_the_runtime_endpoint_is_the_regions_unless_overridden() -> None:
    # Given a Bedrock deployment's settings, with and without the service-specific override
    plain = Settings.from_env({"MODEL_PROVIDER": "bedrock", "AWS_REGION": "eu-west-3"})
    overridden = plain.model_copy(update={"bedrock_endpoint_url": "http://127.0.0.1:9"})
    # Then the proxy forwards to the region's endpoint, or to the override
    assert runtime_endpoint("eu-west-3") == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert bedrock_proxy(plain)._upstream_host == "bedrock-runtime.eu-west-3.amazonaws.com"
    assert bedrock_proxy(overridden)._upstream_host == "127.0.0.1"
    with pytest.raises(ValueError, match="region"):
        runtime_endpoint("eu-west-3/../x")


# ------------------------------------------------------------------ metering and budgets


def test_streamed_and_plain_answers_are_metered_at_the_models_price(
    fake: FakeBedrock, proxy: KeyInjectingProxy
) -> None:
    # Given one streamed answer and one plain answer with known usage
    token = proxy.issue("job-1")
    fake.script(
        ToolUse("Bash", {"command": "ls"}, usage=Usage(input_tokens=1000, output_tokens=50)),
        Text("plain", usage=Usage(input_tokens=200, output_tokens=10)),
    )
    # When the job makes both calls
    streamed = _call(proxy, "POST", _stream(), token)
    plain = _call(proxy, "POST", f"/model/{PROFILE}/invoke", token)
    # Then both reached the runtime and the meter holds their sum, priced as Sonnet 4.5
    assert (streamed[0], plain[0]) == (200, 200)
    assert json.loads(plain[1])["usage"]["input_tokens"] == 200
    metered = proxy.metered(token)
    assert metered is not None
    assert (metered.input_tokens, metered.output_tokens, metered.calls) == (1200, 60, 2)
    assert metered.cost_usd == pytest.approx(1200 * INPUT + 60 * OUTPUT)


def test_the_meter_reads_event_stream_frames_split_anywhere() -> None:
    # Given an event stream of two frames' worth of usage (start and final delta) among others
    usage = Usage(input_tokens=500, output_tokens=40, cache_read_input_tokens=100)
    blocks = [{"type": "text", "text": "x" * 3000}]
    data = b"".join(chunk_frame(e) for e in stream_events(PROFILE, blocks, "end_turn", usage, 7))
    charges: list[tuple[Tokens | None, Tokens]] = []
    reader = UsageReader(
        streaming=True,
        event_stream=True,
        model=PROFILE,
        charge=lambda before, after: charges.append((before, after)),
    )
    # When it arrives cut at random places
    cuts = sorted(random.Random(7).sample(range(1, len(data)), 40))
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        reader.feed(data[start:end])
    reader.finish()
    # Then the reader saw the usage grow from the message start to the final delta
    final = charges[-1][1]
    assert (final.input_tokens, final.output_tokens, final.cache_read_input_tokens) == (
        500,
        40,
        100,
    )
    assert charges[0][1].output_tokens == 1  # the start's usage, charged as it arrived


def test_calls_are_refused_once_the_jobs_budget_is_spent(
    fake: FakeBedrock, proxy: KeyInjectingProxy
) -> None:
    # Given a job whose limit is $0.01 and answers that cost $0.006 each
    token = proxy.issue("job-1", limit_usd=0.01)
    fake.default = Text("spent", usage=Usage(input_tokens=2000, output_tokens=0))
    # When it calls three times
    statuses = [_call(proxy, "POST", _stream(), token) for _ in range(3)]
    # Then the second call (which crossed the limit) was the last one forwarded, the third
    # was refused in Bedrock's shape, and the meter kept count
    assert [s[0] for s in statuses[:2]] == [200, 200]
    status, data, response = statuses[2]
    assert (status, _bedrock_error(response, data)) == (402, "AccessDeniedException")
    assert len(fake.requests) == 2
    metered = proxy.metered(token)
    assert metered is not None and metered.budget_refusals == 1 and metered.spent


def test_a_corrupted_event_stream_stops_the_meter_without_breaking_the_relay() -> None:
    # Given a stream whose first frame (the message start, with usage) fails its checksum
    usage = Usage(input_tokens=500, output_tokens=40)
    frames = [chunk_frame(e) for e in stream_events(PROFILE, [], "end_turn", usage)]
    corrupted = bytearray(frames[0])
    corrupted[-6] ^= 0x01
    charges: list[Tokens] = []
    reader = UsageReader(
        streaming=True,
        event_stream=True,
        model=PROFILE,
        charge=lambda before, after: charges.append(after),
    )
    # When it is fed (as the relay does, never raising), Then nothing read from it is charged:
    # a frame that fails its checksum is not trusted, nor anything after it
    reader.feed(bytes(corrupted) + b"".join(frames[1:]))
    reader.finish()
    assert charges == []
