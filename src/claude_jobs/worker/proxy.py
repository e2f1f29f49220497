"""The key-injecting loopback proxy between the CLI and the Messages API.

The CLI is started with `ANTHROPIC_BASE_URL` pointing here and `ANTHROPIC_API_KEY` set to a
per-job token. For each request that carries a live token (as `x-api-key` or a bearer
`Authorization`), the proxy swaps the token for the real key, forwards the request to the
upstream (`ANTHROPIC_BASE_URL` of the deployment, the public API by default) and streams the
answer back unchanged, byte for byte (server-sent events included).

What is forwarded, exactly (everything else gets an Anthropic-shaped error and never reaches
the upstream):

- `POST /v1/messages` and `POST /v1/messages/count_tokens`, with an optional query string
  (`?beta=true`, which the CLI sends) of plain characters. The path must already be in normal
  form: no empty, `.` or `..` segment, no percent-encoding, no backslash, no `;` parameters —
  otherwise 400. Another path → 404, another method on these paths → 405. The path sent
  upstream is the allowlist's own string, never the client's bytes.
- A request target that is not a path (absolute-form `http://…`, `*`) or carries a fragment
  → 400. A body over `MAX_BODY_BYTES` (32 MiB, the Messages API's own request limit) → 413,
  refused on its `Content-Length` before any of it is read (a chunked body, as soon as it grows
  past the cap); `Content-Length` together with `Transfer-Encoding` → 400.
- No live token → 401. The agent's `Accept-Encoding` is replaced by `identity`, so that the
  meter can read every answer.

Metering and budgets: each token has a `JobMeter`. The usage in every relayed answer of
`/v1/messages` (streamed or not) is read from a copy as it passes (`usage_reader.UsageReader`),
priced with `pricing`, and added to the job's meter. A token is issued with the job's limit
(min of its `max_budget_usd` and the deployment cap); once the metered cost reaches it, every
further call gets 402 `billing_error` — which the CLI does not retry — and the call that
crossed the limit is the last one forwarded. At most `MAX_CALLS_IN_FLIGHT` calls of one job
are forwarded at once (429 `rate_limit_error` beyond), so parallel calls cannot outrun the
meter by more than that many answers.

One proxy serves every job of the process; tokens are issued per job and revoked when it ends.

What differs between model providers is a `Dialect`: which requests are forwarded, how a refusal
looks, how the request is authorized upstream and how its answer is metered. `AnthropicDialect`
(`proxy_dialect.py`) is the Messages API's: the key as `x-api-key`. `bedrock.BedrockDialect`
is Amazon Bedrock's: model invocation only, each request signed with the worker role's
credentials.
Everything else (tokens, framing and body limits, budgets, calls in flight, the relay) is the
same for both: this module holds the tokens and their meters, `proxy_relay.py` handles each
request.
"""

from __future__ import annotations

import hmac
import http.client
import secrets
import ssl
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from .loopback import LoopbackServer
from .metering import JobMeter, Journal, Metered
from .proxy_dialect import ALLOWED_PATHS as ALLOWED_PATHS
from .proxy_dialect import HOP_BY_HOP as HOP_BY_HOP
from .proxy_dialect import METERED_PATHS as METERED_PATHS
from .proxy_dialect import AnthropicDialect as AnthropicDialect
from .proxy_dialect import Dialect as Dialect
from .proxy_dialect import Forward as Forward
from .proxy_dialect import Refusal as Refusal
from .proxy_dialect import UpstreamAuthError as UpstreamAuthError
from .proxy_dialect import route as route
from .proxy_relay import MAX_BODY_BYTES as MAX_BODY_BYTES
from .proxy_relay import MAX_HELD_BYTES as MAX_HELD_BYTES
from .proxy_relay import handler_for

#: Seconds the upstream may stay silent (connect, or between two reads of a stream).
UPSTREAM_TIMEOUT_SECONDS = 600
#: Calls of one job forwarded at the same time.
MAX_CALLS_IN_FLIGHT = 8


class KeyInjectingProxy(LoopbackServer):
    thread_name = "claude-jobs-key-proxy"
    what = "the proxy"

    def __init__(
        self,
        upstream: str,
        key: Callable[[], str] | None = None,
        *,
        dialect: Dialect | None = None,
        host: str = "127.0.0.1",
        timeout: float = UPSTREAM_TIMEOUT_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_calls_in_flight: int = MAX_CALLS_IN_FLIGHT,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) upstream URL: {upstream!r}")
        self._scheme = parts.scheme
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port
        self._upstream_prefix = parts.path.rstrip("/")
        if dialect is None:
            if key is None:
                raise ValueError("the Anthropic dialect needs a key")
            dialect = AnthropicDialect(key)
        self.dialect = dialect
        super().__init__(host)
        self._timeout = timeout
        self.max_body_bytes = max_body_bytes
        self._max_in_flight = max_calls_in_flight
        self._tokens: dict[str, JobMeter] = {}  # token → the job's meter
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.forwarded = 0  # requests forwarded upstream, all jobs

    # ------------------------------------------------------------ lifecycle (LoopbackServer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return handler_for(self)

    # ------------------------------------------------------------ tokens

    def issue(
        self,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
        journal: Journal | None = None,
    ) -> str:
        """A fresh token for one job, valid until revoked. Once the job's metered cost reaches
        `limit_usd`, its calls are refused. `models`: the job's own model(s), which its calls
        may name besides the deployment's. `journal`: the job's spend journal (a metered call
        is forwarded only once the job's exposure with it is written through)."""
        token = "cj-job-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self._meter(job_id, limit_usd, models, journal)
        return token

    def assign(
        self,
        token: str,
        job_id: str,
        *,
        limit_usd: float | None = None,
        models: Iterable[str] | None = None,
        journal: Journal | None = None,
    ) -> None:
        """Bind a token issued ahead of its job (a warm start's, issued with a limit of 0: it
        could spend nothing meanwhile) to `job_id`, with a fresh meter, the job's limit and
        its spend journal."""
        with self._lock:
            if token not in self._tokens:
                raise KeyError("the token is not live")
            previous = self._tokens[token]
            self._tokens[token] = self._meter(job_id, limit_usd, models, journal)
        previous.close()

    def _meter(
        self,
        job_id: str,
        limit_usd: float | None,
        models: Iterable[str] | None,
        journal: Journal | None = None,
    ) -> JobMeter:
        job_models = frozenset(m for m in models or () if m)
        return JobMeter(job_id, limit_usd, self._max_in_flight, job_models, journal)

    def revoke(self, token: str) -> Metered | None:
        """End a token; returns the job's final meter: its calls still open (an answer still
        read after its caller went away) are charged their reservation and cut off."""
        with self._lock:
            meter = self._tokens.pop(token, None)
        return meter.close() if meter is not None else None

    def metered(self, token: str) -> Metered | None:
        """The job's usage and cost metered so far (None for an unknown token)."""
        with self._lock:
            meter = self._tokens.get(token)
        return meter.snapshot() if meter is not None else None

    def meter_for(self, presented: str | None) -> JobMeter | None:
        if not presented:
            return None
        with self._lock:
            items = list(self._tokens.items())
        found = None
        for token, meter in items:  # constant-time comparison with every live token
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = meter
        return found

    # ------------------------------------------------------------ forwarding

    def _connection(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                self._upstream_host,
                self._upstream_port,
                timeout=self._timeout,
                context=self._ssl,
            )
        return http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=self._timeout
        )

    def _upstream_host_header(self) -> str:
        default = 443 if self._scheme == "https" else 80
        port = self._upstream_port
        return self._upstream_host if port in (None, default) else f"{self._upstream_host}:{port}"

    def _upstream_url(self, target: str) -> str:
        return f"{self._scheme}://{self._upstream_host_header()}{target}"
