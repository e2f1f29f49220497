"""A fault-injecting HTTP front for the AWS emulator: AWS calls that fail or are throttled.

    faults = AwsFaultProxy(emulator_url, FaultPlan(rate=0.05, seed=7)).start()
    ...                      # point AWS_ENDPOINT_URL at faults.url
    faults.enabled = True    # faults from now on (off while resources are provisioned)
    faults.stats()           # what was injected, by service and kind
    faults.close()

Every request is forwarded byte for byte (Host header, raw path and query, body), so SigV4
signatures made for the proxy's URL verify at the emulator, which then serves them as before.
While `enabled`, each request draws from one seeded random sequence whether to fail, and how:

- `throttle`: not forwarded; 400 with the service's throttling error (DynamoDB:
  `ProvisionedThroughputExceededException` or `ThrottlingException`; SQS, EventBridge, Secrets
  Manager: `ThrottlingException`; S3: 503 `SlowDown`).
- `internal`: not forwarded; 500 `InternalServerError` (DynamoDB) / `InternalError` /
  `InternalFailure`, in the service's error shape.
- `internal_after`: forwarded and applied, then answered 500 as above: the caller cannot know
  that its call took effect (AWS documents that a 500 may or may not have been applied), so a
  retried write meets its own earlier effect.

DynamoDB's `ClientRequestToken` is honoured as DynamoDB does (the emulator ignores it): a
`TransactWriteItems` repeated with the token of one that succeeded answers as the first did and
is not applied again, so the SDK's retry after an `internal_after` fault behaves as on AWS.

The SDK's own retries absorb most single faults; those that outlast them reach the code. The
shapes are what botocore parses into its error codes (`__type` for the JSON protocols, the XML
`Error` element for S3 and the query protocol), so the code under test sees what it would see
from AWS. Deterministic by seed for a given order of requests (threads interleave, so a run's
exact order is not).
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FAULT_KINDS", "AwsFaultProxy", "FaultPlan", "fault_response"]

FAULT_KINDS = ("throttle", "internal", "internal_after")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
    | {"proxy-connection"}
)
_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/")
_QUERY_CREDENTIAL = re.compile(r"X-Amz-Credential=[^&]*?%2F\d{8}%2F[^%&]+%2F([^%&]+)%2F")


@dataclass
class FaultPlan:
    """How often calls fail, and how. `rate` is the chance that one call gets a fault; the
    `weights` split the faults among FAULT_KINDS. `services` limits the faults to those
    (credential-scope names: `dynamodb`, `sqs`, `s3`, `events`, `secretsmanager`…)."""

    rate: float = 0.05
    seed: int = 0
    weights: dict[str, float] = field(
        default_factory=lambda: {"throttle": 0.4, "internal": 0.4, "internal_after": 0.2}
    )
    services: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError("rate is a probability: 0 to 1")
        unknown = set(self.weights) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
        if self.rate and not any(w > 0 for w in self.weights.values()):
            raise ValueError("a positive rate needs a positive weight")


@dataclass(frozen=True)
class Call:
    """What the proxy knows of one request: the service (from the signature's credential
    scope), the action (`X-Amz-Target`, `Action=`, or the HTTP method for REST) and the
    protocol its errors take."""

    service: str
    action: str
    protocol: str  # "json", "query" or "rest"
    json_version: str = "1.0"


def describe(headers: dict[str, str], query: str, body: bytes) -> Call:
    """Classify a request by its headers (lower-case names), raw query and body."""
    authorization = headers.get("authorization", "")
    found = _CREDENTIAL.search(authorization) or _QUERY_CREDENTIAL.search(query)
    service = found.group(1) if found else "unknown"
    target = headers.get("x-amz-target", "")
    if target:
        content_type = headers.get("content-type", "")
        version = "1.1" if "1.1" in content_type else "1.0"
        return Call(service, target.rpartition(".")[2] or target, "json", version)
    form = (
        body.decode("latin-1")
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        else ""
    )
    action = re.search(r"(?:^|&)Action=([A-Za-z]+)", f"{query}&{form}")
    if action:
        return Call(service, action.group(1), "query")
    return Call(service, "", "rest")


def _error_code(call: Call, kind: str, rng: random.Random) -> tuple[int, str]:
    if kind == "throttle":
        if call.service == "dynamodb":
            codes = ("ProvisionedThroughputExceededException", "ThrottlingException")
            return 400, rng.choice(codes)
        if call.protocol == "rest":
            return 503, "SlowDown"
        return 400, "ThrottlingException"
    if call.service == "dynamodb":
        return 500, "InternalServerError"
    if call.protocol == "json" and call.service not in ("sqs",):
        return 500, "InternalFailure"
    return 500, "InternalError"


_MESSAGES = {
    "ThrottlingException": "Rate exceeded",
    "ProvisionedThroughputExceededException": "The level of configured provisioned throughput "
    "for the table was exceeded. Consider increasing your provisioning level with the "
    "UpdateTable API.",
    "SlowDown": "Please reduce your request rate.",
}


def fault_response(
    call: Call, kind: str, rng: random.Random | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The status, headers and body AWS answers `call` with for a fault of `kind`."""
    status, code = _error_code(call, kind, rng or random.Random(0))  # noqa: S311
    message = _MESSAGES.get(code, "We encountered an internal error. Please try again.")
    request_id = str(uuid.uuid4())
    if call.protocol == "json":
        prefix = {
            "dynamodb": "com.amazonaws.dynamodb.v20120810#",
            "sqs": "com.amazonaws.sqs#",
        }.get(call.service, "")
        body = json.dumps({"__type": f"{prefix}{code}", "message": message}).encode()
        headers = [
            ("Content-Type", f"application/x-amz-json-{call.json_version}"),
            ("x-amzn-RequestId", request_id),
        ]
        if call.service == "sqs":  # SQS's JSON protocol keeps its query-era error codes here
            fault = "Sender" if status < 500 else "Receiver"
            headers.append(("x-amzn-query-error", f"{code};{fault}"))
        return status, headers, body
    if call.protocol == "query":
        fault = "Sender" if status < 500 else "Receiver"
        body = (
            f"<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        ).encode()
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
    return status, [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body


class AwsFaultProxy:
    """The fault-injecting front: a threaded HTTP server on loopback forwarding to `target`."""

    def __init__(self, target: str, plan: FaultPlan | None = None, host: str = "127.0.0.1"):
        from werkzeug.serving import make_server

        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"{target!r} is not an http://host:port URL")
        self._target = (parts.hostname, parts.port)
        self.plan = plan or FaultPlan(rate=0.0)
        #: Faults are injected only while this is set.
        self.enabled = False
        self._rng = random.Random(self.plan.seed)  # noqa: S311 - a fault schedule, not a secret
        self._lock = threading.Lock()
        self._injected: Counter[tuple[str, str, str]] = Counter()
        self._forwarded: Counter[str] = Counter()
        #: ClientRequestToken → the answer of the transaction that succeeded with it.
        self._tokens: dict[str, tuple[int, str, list[tuple[str, str]], bytes]] = {}
        self.token_replays = 0
        self._server = make_server(host, 0, self._app, threaded=True)
        self._server.socket.listen(128)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> AwsFaultProxy:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="aws-faults",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> AwsFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ accounting

    def stats(self) -> dict[str, Any]:
        """`{"calls": n, "injected": {kind: n}, "by_service": {service: {kind: n}},
        "by_action": {"service:Action": n}}` over the proxy's life."""
        with self._lock:
            injected: Counter[str] = Counter()
            by_service: dict[str, Counter[str]] = {}
            by_action: Counter[str] = Counter()
            for (service, action, kind), n in self._injected.items():
                injected[kind] += n
                by_service.setdefault(service, Counter())[kind] += n
                by_action[f"{service}:{action}"] += n
            return {
                "calls": sum(self._forwarded.values())
                + sum(n for (_, _, k), n in self._injected.items() if k != "internal_after"),
                "injected": dict(injected),
                "by_service": {s: dict(c) for s, c in by_service.items()},
                "by_action": dict(by_action),
                "forwarded": dict(self._forwarded),
            }

    def _draw(self, call: Call) -> str | None:
        plan = self.plan
        with self._lock:
            if not self.enabled or plan.rate <= 0:
                return None
            if plan.services is not None and call.service not in plan.services:
                return None
            if self._rng.random() >= plan.rate:
                return None
            kinds = [k for k in FAULT_KINDS if plan.weights.get(k, 0) > 0]
            kind = self._rng.choices(kinds, [plan.weights[k] for k in kinds])[0]
            self._injected[(call.service, call.action, kind)] += 1
            return kind

    # ------------------------------------------------------------ the WSGI app

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = _read_body(environ)
        headers = _request_headers(environ)
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ["PATH_INFO"]
        query = raw_uri.partition("?")[2]
        call = describe({k.lower(): v for k, v in headers}, query, body)
        kind = self._draw(call)
        if kind in ("throttle", "internal"):
            return _answer(start_response, *fault_response(call, kind, self._rng))
        token = _transaction_token(call, body)
        with self._lock:
            replay = self._tokens.get(token) if token else None
            if replay is not None:
                self.token_replays += 1
        if replay is not None:
            status, reason, answer_headers, answer = replay
        else:
            status, reason, answer_headers, answer = self._forward(
                environ["REQUEST_METHOD"], raw_uri, headers, body
            )
            if token and status == 200:
                with self._lock:
                    self._tokens[token] = (status, reason, answer_headers, answer)
        if kind == "internal_after":  # applied, yet reported as failed
            return _answer(start_response, *fault_response(call, "internal", self._rng))
        with self._lock:
            self._forwarded[f"{call.service}:{call.action}"] += 1
        start_response(f"{status} {reason}", answer_headers)
        return [answer]

    def _forward(
        self, method: str, raw_uri: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._target, timeout=120)
        try:
            connection.putrequest(method, raw_uri, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.putheader("Connection", "close")
            connection.endheaders(body)
            response = connection.getresponse()
            answer = response.read()
            kept = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
            ]
            kept.append(("Content-Length", str(len(answer))))
            return response.status, response.reason, kept, answer
        finally:
            connection.close()


def _transaction_token(call: Call, body: bytes) -> str | None:
    if call.service != "dynamodb" or call.action != "TransactWriteItems":
        return None
    try:
        token = json.loads(body).get("ClientRequestToken")
    except (ValueError, AttributeError):
        return None
    return str(token) if token else None


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    if environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream
        return bytes(stream.read())
    return b""


def _request_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's headers as received (Host included: the signature covers it), without
    hop-by-hop ones and the framing (the body is sent with its length)."""
    headers: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key == "CONTENT_TYPE" and value:
            name = "content-type"
        else:
            continue
        if name in _HOP_BY_HOP or name in ("content-length", "expect"):
            continue
        headers.append((name, value))
    return headers


def _answer(
    start_response: Any, status: int, headers: list[tuple[str, str]], body: bytes
) -> list[bytes]:
    reason = http.client.responses.get(status, "Error")
    start_response(f"{status} {reason}", [*headers, ("Content-Length", str(len(body)))])
    return [body]
