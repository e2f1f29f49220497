"""What the key proxy lets through to the model, and at what size: an allowlist of the
Messages API's request, and the fitting of a call's `max_tokens` to the job's budget.

The allowlist is what the bundled CLI needs for the Messages API features it uses (recorded
against the fake upstream with and without tools, thinking, a model of another family, and
count_tokens; see docs/worker.md, "What the proxy forwards"). Anything else is refused with a
400 `invalid_request_error` before it reaches the upstream, in particular what changes the
price the meter cannot see or reaches state the whole workspace shares:

- body fields: only `REQUEST_FIELDS` (Bedrock adds `anthropic_version`, `anthropic_beta`).
  `speed`, `inference_geo`, `service_tier` (price multipliers), `container` (code-execution
  containers, shared by the workspace), `mcp_servers` (server-side MCP connections) are
  refused by name, and so is every field not on the list;
- content blocks whose `source` is a Files API `file`, and `container_upload` blocks (files of
  the workspace);
- tools: client tools, and the server tools `web_search_*` (priced by the meter) and
  `tool_search_tool_*` (the CLI's deferred tool loading); no other server tool;
- `anthropic-beta` values: only `ALLOWED_BETAS`;
- models: the job's model and the deployment's (the proxy's `models`); anything else;
- headers (Anthropic): only `FORWARDED_HEADERS` and the SDK's `x-stainless-*` telemetry; any
  other header is dropped (not refused: it never reaches the upstream either way).

`fit_max_tokens` lowers a request's `max_tokens` (and a thinking budget with it) to what the
meter granted, rewriting the body only when something changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .pricing import canonical_model, price_of

#: Top-level fields of a Messages request that are forwarded.
REQUEST_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "context_management",
        "output_config",
        "output_format",
    }
)
#: Bedrock's body carries the API version and the betas itself.
BEDROCK_FIELDS = REQUEST_FIELDS | {"anthropic_version", "anthropic_beta"}
#: Fields refused with their own reason (they are not on the list either).
REFUSED_FIELDS = {
    "speed": "it changes the price (fast mode)",
    "inference_geo": "it changes the price (data residency)",
    "service_tier": "it changes the price (priority tier)",
    "container": "code-execution containers are shared by the workspace",
    "mcp_servers": "server-side MCP connections are not allowed",
}
#: Keys allowed inside `output_config` and `metadata`.
OUTPUT_CONFIG_KEYS = frozenset({"effort", "format"})
METADATA_KEYS = frozenset({"user_id"})
#: `anthropic-beta` values forwarded: what the CLI sends for the features it uses.
ALLOWED_BETAS = frozenset(
    {
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
        "per-turn-control-2026-07-01",
        "mid-conversation-tool-changes-2026-07-01",
        "thinking-token-count-2026-05-13",
        "advanced-tool-use-2025-11-20",
        "effort-2025-11-24",
        "tool-search-tool-2025-10-19",
        "structured-outputs-2025-12-15",
        "web-search-2025-03-05",
        "extended-cache-ttl-2025-04-11",
        "fine-grained-tool-streaming-2025-05-14",
        "token-counting-2024-11-01",
        "redact-thinking-2026-02-12",
    }
)
#: Request headers forwarded to the Anthropic upstream (besides `x-stainless-*`).
FORWARDED_HEADERS = frozenset(
    {
        "accept",
        "content-type",
        "anthropic-version",
        "anthropic-beta",
        "user-agent",
        "x-app",
        "x-claude-code-session-id",
    }
)
_STAINLESS = re.compile(r"x-stainless-[a-z0-9-]{1,40}")
#: Server tools the CLI may offer (by the prefix of their `type`).
SERVER_TOOLS = ("web_search_", "tool_search_tool_")
_MODEL_ALIASES = frozenset({"sonnet", "opus", "haiku", "default", "best"})

#: The fewest output tokens a call is lowered to (the last call of a budget gets this many).
MIN_MAX_TOKENS = 1024
#: With extended thinking (a `budget_tokens`), at least this many: the API wants
#: 1,024 <= budget_tokens < max_tokens.
MIN_THINKING_MAX_TOKENS = 2048
MIN_THINKING_BUDGET = 1024
#: Bytes of a request per input token, for the reservation's input estimate; base64 sources
#: (images, documents) count one token per `BASE64_BYTES_PER_TOKEN` bytes.
BYTES_PER_TOKEN = 4
BASE64_BYTES_PER_TOKEN = 400


class Refused(Exception):
    """A request the proxy does not forward; the message says why."""


def header_forwarded(name: str) -> bool:
    name = name.lower()
    return name in FORWARDED_HEADERS or _STAINLESS.fullmatch(name) is not None


def parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise Refused("the request body is not JSON") from None
    if not isinstance(payload, dict):
        raise Refused("the request body is not a JSON object")
    return payload


def check_betas(values: Iterable[str]) -> None:
    for value in values:
        beta = value.strip()
        if beta and beta not in ALLOWED_BETAS:
            raise Refused(f"the beta {beta[:80]!r} is not forwarded by this deployment")


def header_betas(raw: str | None) -> list[str]:
    return [b.strip() for b in (raw or "").split(",") if b.strip()]


def check_model(model: Any, allowed: frozenset[str] | None) -> str:
    """The request's model, if the job may use it."""
    if not isinstance(model, str) or not model:
        raise Refused("the request names no model")
    if allowed is None or model_allowed(model, allowed):
        return model
    raise Refused(f"the model {model[:100]!r} is not available to this job")


def model_allowed(model: str, allowed: frozenset[str]) -> bool:
    if model in allowed:
        return True
    name = canonical_model(model)
    for permitted in allowed:
        if permitted.lower() in _MODEL_ALIASES:  # `sonnet`: the CLI sends the family's id
            if f"-{permitted.lower()}-" in f"{name}-":
                return True
        elif canonical_model(permitted) == name:
            return True
    return False


def check_request(payload: Mapping[str, Any], *, bedrock: bool = False) -> None:
    """Refuse what is not on the allowlist (fields, content sources, tools, options)."""
    fields = BEDROCK_FIELDS if bedrock else REQUEST_FIELDS
    for name in payload:
        if name in REFUSED_FIELDS:
            raise Refused(f"the field {name!r} is not forwarded: {REFUSED_FIELDS[name]}")
        if name not in fields:
            raise Refused(f"the field {str(name)[:80]!r} is not forwarded by this deployment")
    _keys_within(payload.get("output_config"), OUTPUT_CONFIG_KEYS, "output_config")
    _keys_within(payload.get("metadata"), METADATA_KEYS, "metadata")
    for block in _blocks(payload):
        kind = block.get("type")
        if kind == "container_upload":
            raise Refused("container_upload blocks (Files API) are not forwarded")
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "file":
            raise Refused("Files API sources (`source.type: file`) are not forwarded")
    tools = payload.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind in (None, "custom"):
                continue
            if not (isinstance(kind, str) and kind.startswith(SERVER_TOOLS)):
                raise Refused(f"the tool type {str(kind)[:80]!r} is not forwarded")


def _keys_within(value: Any, allowed: frozenset[str], field: str) -> None:
    if isinstance(value, dict):
        extra = sorted(str(k) for k in value if k not in allowed)
        if extra:
            raise Refused(f"{field}.{extra[0][:80]} is not forwarded by this deployment")


def _blocks(payload: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every content block of the request, nested ones (tool results) included."""
    stack: list[Any] = [payload.get("system"), payload.get("messages")]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "type" in item or "source" in item:
                yield item
            content = item.get("content")
            if isinstance(content, list):
                stack.append(content)


# ------------------------------------------------------------------ the budget's share


def input_tokens_estimate(body: bytes, payload: Mapping[str, Any]) -> int:
    """About how many input tokens `body` is (for the reservation only: the input is charged
    on the usage the upstream reports, the first event of its answer)."""
    base64_bytes = 0
    for block in _blocks(payload):
        source = block.get("source")
        if isinstance(source, dict) and isinstance(source.get("data"), str):
            base64_bytes += len(source["data"])
    text_bytes = max(len(body) - base64_bytes, 0)
    return text_bytes // BYTES_PER_TOKEN + base64_bytes // BASE64_BYTES_PER_TOKEN


def call_prices(model: str, input_tokens: int) -> tuple[float, float]:
    """(USD for the input estimate, USD per output token) of a call to `model`."""
    price = price_of(model, input_tokens)
    return input_tokens * price.input / 1_000_000, price.output / 1_000_000


def requested_max_tokens(payload: Mapping[str, Any]) -> int:
    value = payload.get("max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Refused("max_tokens must be a positive integer")
    return value


def floor_tokens(payload: Mapping[str, Any]) -> int:
    thinking = payload.get("thinking")
    if isinstance(thinking, dict) and "budget_tokens" in thinking:
        return MIN_THINKING_MAX_TOKENS
    return MIN_MAX_TOKENS


def fit_max_tokens(body: bytes, payload: dict[str, Any], max_tokens: int) -> bytes:
    """The body with `max_tokens` lowered to `max_tokens` (and a thinking budget below it);
    the original bytes when nothing changes."""
    if payload.get("max_tokens") == max_tokens:
        return body
    payload = dict(payload, max_tokens=max_tokens)
    thinking = payload.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        budget = thinking["budget_tokens"]
        if budget >= max_tokens:
            lowered = max(MIN_THINKING_BUDGET, max_tokens // 2)
            payload["thinking"] = dict(thinking, budget_tokens=min(budget, lowered))
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
