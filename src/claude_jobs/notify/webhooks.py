"""Signed webhooks: a POST of the job summary when a job ends (and of the pending approval
when a call of it waits for a person, `job.awaiting_approval`).

Each attempt has a total deadline (`deadline_post`); the webhook function makes one attempt
per queue message and the queue brings failed ones back after a backoff
(:mod:`claude_jobs.notify.delivery`).

Signature: `X-Claude-Jobs-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>` with
`X-Claude-Jobs-Timestamp: <unix seconds>`. The secret is per tenant, derived from the
deployment's master signing key (`tenant_secret`), so none is ever stored with a job. Receivers
call `verify_signature`, which also rejects a timestamp outside the tolerance (a replay).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..job_service import webhook_url_problem
from ..resources import WEBHOOK_DEADLINE_SECONDS

TIMESTAMP_HEADER = "X-Claude-Jobs-Timestamp"
SIGNATURE_HEADER = "X-Claude-Jobs-Signature"
EVENT_HEADER = "X-Claude-Jobs-Event"
JOB_HEADER = "X-Claude-Jobs-Job-Id"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
USER_AGENT = "claude-jobs-webhooks/1"


def tenant_secret(master_key: str, tenant_id: str) -> str:
    """The tenant's webhook signing secret: HMAC-SHA256(master, "webhook:" + tenant), hex."""
    return hmac.new(
        master_key.encode(), f"webhook:{tenant_id}".encode(), hashlib.sha256
    ).hexdigest()


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    message = f"{timestamp}.".encode() + _as_bytes(body)
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(
    secret: str,
    timestamp: int | str | None,
    body: bytes | str,
    signature: str | None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when `signature` (a header value; several `v1=` entries may be comma-separated)
    signs `timestamp` + `body` with `secret`, and the timestamp is within `tolerance_s` of now.
    """
    if not timestamp or not signature:
        return False
    try:
        stamp = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance_s:
        return False
    expected = sign(secret, stamp, body)
    candidates = [part.strip() for part in signature.split(",")]
    return any(hmac.compare_digest(expected, c) for c in candidates)


# ---------------------------------------------------------------- delivery

#: POST (url, body, headers, deadline) → HTTP status; raises OSError when there is no answer
#: within the deadline (the whole exchange's, not one read's).
PostFn = Callable[[str, bytes, Mapping[str, str], float], int]
ResolveFn = Callable[[str], list[str]]


class DeadlineExceededError(TimeoutError):
    """The receiver did not answer within the delivery's total deadline."""


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """Called by the deadline's timer: end the exchange, wherever it is."""
    expired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def deadline_post(url: str, body: bytes, headers: Mapping[str, str], deadline_s: float) -> int:
    """POST `body` and return the answer's status, all within `deadline_s` seconds in total.

    A per-read timeout lets a receiver that drips a byte at a time hold a delivery for ever;
    here a timer shuts the connection down when the deadline passes, whatever it is waiting
    for. Redirects are not followed (a 3xx is the answer). The body of the answer is not read.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=deadline_s, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=deadline_s)
    expired = threading.Event()
    timer = threading.Timer(deadline_s, _cut, (connection, expired))
    timer.daemon = True
    timer.start()
    try:
        connection.request("POST", target, body=body, headers=dict(headers))
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise DeadlineExceededError(f"no answer within {deadline_s:g} s") from None
        if isinstance(exc, OSError):
            raise
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
    finally:
        timer.cancel()
        connection.close()
    if expired.is_set():  # answered, but only as the deadline passed
        raise DeadlineExceededError(f"no answer within {deadline_s:g} s")
    return status


def resolve_host(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def address_problem(url: str, *, allow_loopback: bool, resolve: ResolveFn) -> str | None:
    """Why the URL may not be called now: its form, or where its host name resolves to."""
    problem = webhook_url_problem(url, allow_loopback=allow_loopback)
    if problem:
        return problem
    host = urlsplit(url).hostname or ""
    try:
        addresses = resolve(host)
    except OSError as exc:
        return f"cannot resolve the host ({type(exc).__name__})"
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
        if address.is_loopback and allow_loopback:
            continue
        if not address.is_global:
            return "the host resolves to a private or reserved address"
    return None


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt's outcome."""

    delivered: bool
    error: str | None = None
    #: The URL may not be called (its form, or where it resolves): no POST was made.
    refused: bool = False


class WebhookSender:
    """Signed POSTs, one attempt at a time; retries are the webhook queue's (see
    :mod:`claude_jobs.notify.delivery`)."""

    def __init__(
        self,
        *,
        post: PostFn = deadline_post,
        clock: Callable[[], float] = time.time,
        allow_loopback: bool = False,
        resolve: ResolveFn = resolve_host,
        deadline_s: float = WEBHOOK_DEADLINE_SECONDS,
    ) -> None:
        self._post = post
        self._clock = clock
        self._allow_loopback = allow_loopback
        self._resolve = resolve
        self._deadline_s = deadline_s

    def attempt(
        self, url: str, body: bytes, secret: str, *, event_type: str, job_id: str
    ) -> Attempt:
        """POST `body` to `url`, signed now, within the delivery deadline."""
        problem = address_problem(url, allow_loopback=self._allow_loopback, resolve=self._resolve)
        if problem:
            return Attempt(False, f"refused: {problem}", refused=True)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            EVENT_HEADER: event_type,
            JOB_HEADER: job_id,
        }
        try:
            status = self._post(url, body, headers, self._deadline_s)
        except (OSError, ValueError) as exc:  # refused, reset, the deadline, a bad answer
            reason = getattr(exc, "reason", None) or exc
            return Attempt(False, f"{type(exc).__name__}: {reason}"[:500])
        if 200 <= status < 300:
            return Attempt(True)
        return Attempt(False, f"HTTP {status}")
