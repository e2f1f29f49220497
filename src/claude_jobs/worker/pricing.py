"""What a Messages API call costs: the one price table of the deployment.

Source: Anthropic's public pricing page, https://platform.claude.com/docs/en/about-claude/pricing
("Model pricing": base input, 5-minute and 1-hour cache writes, cache hits, output; "Long
context pricing"; "Web search": $10 per 1,000 searches), and the model overview pages for the
models released since, as published in November 2026 (read on 2026-11-22). Prices are USD per
million tokens (MTok), standard tier. Not modelled: Batch API discounts (batches are never
forwarded), data-residency (`inference_geo`) and fast-mode multipliers, and tool charges other
than web search; a deployment that uses them should extend this table.

Models not in the table (a new release, a typo, an alias the API resolved to something else)
are priced at the most expensive rate of every column in the table — deliberately
conservative: a job on an unknown model reaches its budget early rather than late.

The CLI computes its own `total_cost_usd` from its own table; the worker's meter uses this one
(see `docs/worker.md`, "Metering and budgets").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: USD per web search request (server tool `web_search`).
WEB_SEARCH_USD = 10.0 / 1000


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


@dataclass(frozen=True)
class Tier:
    """A model whose prompts over `threshold` tokens (input + cache writes + cache reads) are
    billed at `price` for every token of that request, output included."""

    threshold: int
    price: Price


@dataclass(frozen=True)
class Tokens:
    """The usage of one Messages API call (one assistant message), as the API reports it."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0  # all cache writes
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0  # the part of the cache writes with a 1 h TTL
    web_search_requests: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


def _price(input: float, output: float, cache_read: float) -> Price:
    """A row of the pricing page: cache writes cost 1.25 times (5 min) or 2 times (1 h)
    the input price."""
    return Price(input, output, input * 1.25, input * 2, cache_read)


_OPUS_4 = _price(15, 75, 1.50)  # Opus 4, 4.1 and 3
_OPUS_45 = _price(5, 25, 0.50)  # Opus 4.5 to 4.8, and 5
_SONNET_4 = _price(3, 15, 0.30)  # Sonnet 3.5 to 4.6
_SONNET_5 = _price(2, 10, 0.20)
_FABLE_5 = _price(10, 50, 1.00)  # Fable 5 and Mythos 5
_FABLE_51 = _price(10, 50, 0.25)  # Fable 5.1 and Mythos 5.1

#: Model id (without date, platform prefix or suffix) → price. Keep the rows in the page's
#: order, newest first within a family.
PRICES: dict[str, Price] = {
    # Fable and Mythos
    "claude-fable-5-1": _FABLE_51,
    "claude-mythos-5-1": _FABLE_51,
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    # Opus
    "claude-opus-5-5": _price(4, 20, 0.20),
    "claude-opus-5": _OPUS_45,
    "claude-opus-4-8": _OPUS_45,
    "claude-opus-4-7": _OPUS_45,
    "claude-opus-4-6": _OPUS_45,
    "claude-opus-4-5": _OPUS_45,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-3-opus": _OPUS_4,
    # Sonnet
    "claude-sonnet-5-5": _price(2, 10, 0.10),  # cache hits cut to $0.10 on 2026-10-07
    "claude-sonnet-5": _SONNET_5,
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,
    "claude-sonnet-4-0": _SONNET_4,
    "claude-3-7-sonnet": _SONNET_4,
    "claude-3-5-sonnet": _SONNET_4,
    # Haiku
    "claude-haiku-5-5": _price(0.10, 0.50, 0.01),
    "claude-haiku-4-5": _price(1, 5, 0.10),
    "claude-3-5-haiku": Price(0.80, 4, 1.00, 1.60, 0.08),
    "claude-3-haiku": Price(0.25, 1.25, 0.30, 0.50, 0.03),
}

#: Long-prompt pricing of the models that have it.
TIERS: dict[str, Tier] = {
    "claude-sonnet-4-5": Tier(200_000, _price(6, 22.50, 0.60)),
    "claude-sonnet-4": Tier(200_000, _price(6, 22.50, 0.60)),
    "claude-sonnet-4-0": Tier(200_000, _price(6, 22.50, 0.60)),
    "claude-haiku-5-5": Tier(100_000, _price(0.50, 2.50, 0.05)),
}

#: What a model that is not in the table costs: the highest price of each column.
UNKNOWN_MODEL = Price(
    *(
        max(getattr(p, name) for p in [*PRICES.values(), *(t.price for t in TIERS.values())])
        for name in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
    )
)

_SUFFIXES = re.compile(r"(\[[^\]]*\]|@.*|-v\d+(:\d+)?|-\d{8}|-latest)$")


def canonical_model(model: str) -> str:
    """`us.anthropic.claude-sonnet-4-5-20250929-v1:0` → `claude-sonnet-4-5` (table key)."""
    name = model.strip().lower()
    start = name.find("claude-")
    if start > 0:
        name = name[start:]  # Bedrock's `anthropic.` and inference-profile prefixes
    previous = None
    while previous != name:
        previous, name = name, _SUFFIXES.sub("", name)
    return name


def price_of(model: str, prompt_tokens: int = 0) -> Price:
    key = canonical_model(model)
    tier = TIERS.get(key)
    if tier is not None and prompt_tokens > tier.threshold:
        return tier.price
    return PRICES.get(key, UNKNOWN_MODEL)


def cost_usd(tokens: Tokens) -> float:
    price = price_of(tokens.model, tokens.prompt_tokens)
    one_hour = min(
        max(tokens.cache_creation_1h_input_tokens, 0), tokens.cache_creation_input_tokens
    )
    per_million = (
        tokens.input_tokens * price.input
        + tokens.output_tokens * price.output
        + (tokens.cache_creation_input_tokens - one_hour) * price.cache_write_5m
        + one_hour * price.cache_write_1h
        + tokens.cache_read_input_tokens * price.cache_read
    )
    return per_million / 1_000_000 + tokens.web_search_requests * WEB_SEARCH_USD
