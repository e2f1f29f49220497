"""Signed webhooks: a POST of the job summary when a job ends.

Signature: `X-Claude-Jobs-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>` with
`X-Claude-Jobs-Timestamp: <unix seconds>`. The secret is per tenant, derived from the
deployment's master signing key (`tenant_secret`), so none is ever stored with a job. Receivers
call `verify_signature`, which also rejects a timestamp outside the tolerance (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..job_service import webhook_url_problem
from ..models import WebhookDelivery

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

#: POST (url, body, headers, timeout) → HTTP status; raises OSError when there is no answer.
PostFn = Callable[[str, bytes, Mapping[str, str], float], int]
ResolveFn = Callable[[str], list[str]]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is an answer (3xx), not a new target


_opener = urllib.request.build_opener(_NoRedirect)


def urllib_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


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
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.5
    timeout_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """Pause after failed attempt `attempt` (1-based): 0.5, 1, 2, … seconds."""
        return float(self.base_delay_s * (2 ** (attempt - 1)))


class WebhookSender:
    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        post: PostFn = urllib_post,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        allow_loopback: bool = False,
        resolve: ResolveFn = resolve_host,
    ) -> None:
        self._policy = policy or RetryPolicy()
        self._post = post
        self._sleep = sleep
        self._clock = clock
        self._allow_loopback = allow_loopback
        self._resolve = resolve

    def deliver(
        self, url: str, body: bytes, secret: str, *, event_type: str, job_id: str
    ) -> WebhookDelivery:
        """POST `body` to `url`, signed, retrying with exponential backoff; the outcome."""
        delivery = WebhookDelivery(url=url)
        problem = address_problem(url, allow_loopback=self._allow_loopback, resolve=self._resolve)
        if problem:
            delivery.last_error = f"refused: {problem}"
            return delivery
        for attempt in range(1, self._policy.max_attempts + 1):
            if attempt > 1:
                self._sleep(self._policy.delay(attempt - 1))
            timestamp = int(self._clock())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(secret, timestamp, body),
                EVENT_HEADER: event_type,
                JOB_HEADER: job_id,
            }
            delivery.attempts = attempt
            try:
                status = self._post(url, body, headers, self._policy.timeout_s)
            except (OSError, ValueError) as exc:  # URLError, timeouts, resets
                reason = getattr(exc, "reason", None) or exc
                delivery.last_error = f"{type(exc).__name__}: {reason}"[:500]
                continue
            if 200 <= status < 300:
                delivery.delivered = True
                delivery.last_error = None
                delivery.delivered_at = datetime.fromtimestamp(self._clock(), UTC)
                return delivery
            delivery.last_error = f"HTTP {status}"
        return delivery
