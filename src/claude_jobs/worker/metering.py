"""Metering a job's Messages API calls from the answers the proxy relays.

Each relayed answer's usage is read by a `usage_reader.UsageReader`, which charges it here.

`JobMeter` is one job's running total (tokens, cost, calls, calls in flight), shared by the
proxy's request threads; every method is thread-safe. Each forwarded call first reserves its
worst case against what is left of the budget (`JobMeter.reserve`: the input estimate plus
`max_tokens` at the output price, `max_tokens` lowered to what is left can pay, never below a
floor); the reservation is held until the call settles on the usage the upstream reports
(`Call.settle`). A caller that hangs up does not end the call: the proxy reads the answer on
and meters it. A call still open when its job ends is cut off and charged, besides the usage
already reported, the output its answer has shown since that report (`Call.shown_usd`: its
content deltas' characters, `CHARS_PER_TOKEN` a token, at most its reservation).

The spend journal (`Journal`): a job's meter lives in its worker's memory, and a worker can die
mid-job (its agent kills it, or exhausts the environment's memory) before it records what the
job spent; the retry would then start on a full budget. So before a call is forwarded, the
job's exposure (its metered cost plus the reservations of its open calls, this call's
included) is written through to the job (`JobRepository.journal_spend`); a call whose exposure
cannot be written is not forwarded. When a call settles the exposure is written again (lower:
what it cost instead of its worst case), as a best effort; and so is an exposure that grows
while a call is open (its usage passed its reservation: the input was underestimated). The
next claim of a job whose worker died adds the last exposure written to its usage
(`claims.claim`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from .ports import Journal as Journal
from .ports import Metered as Metered
from .pricing import Tokens, cost_usd
from .usage_reader import MAX_EVENT_BYTES as MAX_EVENT_BYTES
from .usage_reader import MAX_JSON_BYTES as MAX_JSON_BYTES
from .usage_reader import Charge as Charge
from .usage_reader import UsageReader as UsageReader

log = logging.getLogger("claude_jobs.worker.metering")

#: A grown exposure is written through when it passes the last figure written by more than
#: this (charges move cost from a call's reservation to its usage: sums that differ by rounding).
EXPOSURE_SLACK_USD = 1e-9

#: Characters of streamed content per output token, for an answer cut off before it reported
#: its usage (an overestimate of tokens: English text runs about four characters a token).
CHARS_PER_TOKEN = 3


# ------------------------------------------------------------------ the job's meter


@dataclass(frozen=True)
class Grant:
    """What a call may produce: `max_tokens` (lowered from the request's when the budget
    cannot pay for it), and the open call that holds its reservation."""

    max_tokens: int
    call: Call


class Call:
    """One forwarded call's share of its job's meter: what it reserved and what it has been
    charged so far. Its reader charges through `charge`; `settle` ends it."""

    def __init__(self, meter: JobMeter, reservation_usd: float) -> None:
        self._meter = meter
        self.reservation_usd = reservation_usd
        self.charged_usd = 0.0
        self.cut = False  # its job ended while it was open
        self.output_usd_per_token = 0.0
        self._shown_chars = 0  # content characters streamed since the last usage report
        self.settled = False
        self._cutters: list[Callable[[], None]] = []

    @property
    def outstanding_usd(self) -> float:
        return max(self.reservation_usd - self.charged_usd, 0.0)

    @property
    def shown_usd(self) -> float:
        """What the output streamed since the last usage report costs (estimated), at most
        what is left of the reservation: what a call cut off now is charged besides."""
        tokens = -(-self._shown_chars // CHARS_PER_TOKEN)
        return min(tokens * self.output_usd_per_token, self.outstanding_usd)

    def shown(self, chars: int) -> None:
        with self._meter._lock:
            self._shown_chars += chars

    def on_cut(self, cutter: Callable[[], None]) -> None:
        """Run `cutter` (e.g. close the upstream connection) if the job ends first."""
        with self._meter._lock:
            if not self.cut:
                self._cutters.append(cutter)
                return
        cutter()

    def charge(self, before: Tokens | None, after: Tokens) -> None:
        self._meter._charge(self, before, after)
        if self._meter._exposure_grew():
            # Its usage passed its reservation (the input was underestimated): the higher
            # figure is written now, not when the call settles (a best effort: it is forwarded).
            try:
                self._meter._write_through()
            except Exception as exc:
                log.warning("a call's grown exposure was not journaled: %s", type(exc).__name__)

    def settle(self) -> None:
        """The call is over: its reservation is given back (what it was charged stays), and
        the job's lower exposure written through (a best effort: the higher figure written
        before the call stays otherwise)."""
        self._meter._settle(self)
        try:
            self._meter._write_through()
        except Exception as exc:
            log.warning("a settled call's exposure was not journaled: %s", type(exc).__name__)


class JobMeter:
    """One job's running usage and cost, and its limit. Thread-safe."""

    def __init__(
        self,
        job_id: str,
        limit_usd: float | None,
        max_in_flight: int,
        models: frozenset[str] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.job_id = job_id
        #: The models this job's calls may name, besides the deployment's (None: any).
        self.models = models
        self._journal = journal
        self._journal_lock = threading.Lock()  # one write at a time, each of the latest figure
        self._journaled: float | None = None
        self._lock = threading.Lock()
        self._totals = Metered(limit_usd=limit_usd)
        self._in_flight = 0
        self._max_in_flight = max_in_flight
        self._open: set[Call] = set()
        self._closed = False

    def snapshot(self) -> Metered:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> Metered:
        if self._closed or not self._open:
            return self._totals
        return replace(self._totals, open_usd=sum(c.shown_usd for c in self._open))

    def reserve(
        self, *, input_usd: float, output_usd_per_token: float, max_tokens: int, floor: int
    ) -> Grant | str:
        """Hold a call's worst case against what is left of the budget, or say why not:
        "budget" (the settled cost has reached the limit), "busy" (what is left is held by
        calls still open: it may come back when they settle) or "unrecorded" (the job's
        exposure with this call could not be journaled). `max_tokens` is lowered to what
        is left can pay after the input estimate, but not below `floor` (nor raised). A call
        that does not fit even so is admitted only when no other call is open: so at most one
        call passes the limit, by at most its input misestimate and `floor` tokens."""
        grant = self._reserve(
            input_usd=input_usd,
            output_usd_per_token=output_usd_per_token,
            max_tokens=max_tokens,
            floor=floor,
        )
        if isinstance(grant, str):
            return grant
        try:
            written = self._write_through()
        except Exception as exc:
            log.warning(
                "job %s: its exposure was not journaled: %s", self.job_id, type(exc).__name__
            )
            written = False
        if not written:
            self._settle(grant.call)  # never forwarded: it holds nothing
            return "unrecorded"
        return grant

    def _write_through(self) -> bool:
        """Journal the job's exposure now (its cost and its open calls' reservations), unless
        that figure is the one last written. Writes are serialized and each writes the figure
        of its own moment, so the last one written is never below what was at risk then."""
        if self._journal is None:
            return True
        with self._journal_lock:
            exposure = self._exposure()
            if exposure == self._journaled:
                return True
            if not self._journal(exposure):
                return False
            self._journaled = exposure
            return True

    def _exposure_grew(self) -> bool:
        """Is the job's exposure now above the figure last journaled (by more than rounding)?"""
        if self._journal is None or self._journaled is None:
            return False
        return self._exposure() > self._journaled + EXPOSURE_SLACK_USD

    def _exposure(self) -> float:
        """What the job may have spent now: its metered cost and its open calls' reservations
        (what is left of each beyond its charges)."""
        with self._lock:
            return self._totals.cost_usd + sum(c.outstanding_usd for c in self._open)

    def _reserve(
        self, *, input_usd: float, output_usd_per_token: float, max_tokens: int, floor: int
    ) -> Grant | str:
        with self._lock:
            t = self._totals
            if self._closed:
                return "budget"
            if t.limit_usd is None:
                granted = max_tokens
            else:
                if t.spent:
                    self._totals = replace(t, budget_refusals=t.budget_refusals + 1)
                    return "budget"
                left = t.limit_usd - t.cost_usd - sum(c.outstanding_usd for c in self._open)
                per_token = max(output_usd_per_token, 1e-12)
                if self._open and left < input_usd + min(max_tokens, floor) * per_token:
                    return "busy"  # only a call alone may go past the limit
                affordable = int(max(left - input_usd, 0.0) / per_token)
                granted = min(max_tokens, max(affordable, floor))
            call = Call(self, input_usd + granted * max(output_usd_per_token, 0.0))
            call.output_usd_per_token = max(output_usd_per_token, 0.0)
            self._open.add(call)
            return Grant(granted, call)

    def close(self) -> Metered:
        """The job has ended: every call still open is cut off and charged the output it has
        shown beyond its last usage report; nothing is charged after this. Returns the final
        figure."""
        with self._lock:
            open_calls, self._open = list(self._open), set()
            extra = 0.0
            cutters: list[Callable[[], None]] = []
            for call in open_calls:
                extra += call.shown_usd
                call.cut = True
                cutters += call._cutters
            self._totals = replace(self._totals, cost_usd=self._totals.cost_usd + extra)
            self._closed = True
            final = self._totals
        for cutter in cutters:
            try:
                cutter()
            except Exception as exc:  # never fail the job's end over it
                log.warning("an open call could not be cut off: %s", type(exc).__name__)
        return final

    def _settle(self, call: Call) -> None:
        with self._lock:
            call.settled = True
            self._open.discard(call)

    def admit(self) -> str | None:
        """Let one call through, or say why not: "budget" (spent) or "busy" (too many calls
        of this job in flight). An admitted call must be `release`d."""
        with self._lock:
            if self._totals.spent:
                self._totals = replace(
                    self._totals, budget_refusals=self._totals.budget_refusals + 1
                )
                return "budget"
            if self._in_flight >= self._max_in_flight:
                return "busy"
            self._in_flight += 1
            return None

    def forwarded(self) -> None:
        with self._lock:
            self._totals = replace(self._totals, calls=self._totals.calls + 1)

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def charge(self, before: Tokens | None, after: Tokens) -> None:
        """Add the growth of one call's usage from `before` to `after`."""
        self._charge(None, before, after)

    def _charge(self, call: Call | None, before: Tokens | None, after: Tokens) -> None:
        base = before or Tokens(model=after.model)
        delta_cost = cost_usd(after) - cost_usd(base)
        with self._lock:
            if self._closed:
                return  # the job's figure is final (its open calls counted at their worst)
            if call is not None:
                call.charged_usd += delta_cost
                if after.output_tokens != base.output_tokens:
                    call._shown_chars = 0  # the report covers what was shown
            t = self._totals
            self._totals = replace(
                t,
                input_tokens=t.input_tokens + after.input_tokens - base.input_tokens,
                output_tokens=t.output_tokens + after.output_tokens - base.output_tokens,
                cache_read_input_tokens=t.cache_read_input_tokens
                + after.cache_read_input_tokens
                - base.cache_read_input_tokens,
                cache_creation_input_tokens=t.cache_creation_input_tokens
                + after.cache_creation_input_tokens
                - base.cache_creation_input_tokens,
                cost_usd=t.cost_usd + delta_cost,
            )
