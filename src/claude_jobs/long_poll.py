"""The schedule of the `?wait=` long-polls (`GET /v1/jobs/{id}` and `/events`): reads that back
off while a job stays quiet, so that what a waiting caller costs grows with the job's changes,
not with the time it waits.

A long-poll sleeps, then makes one cheap read (`JobRepository.control`: three attributes,
eventually consistent; the events route adds a probe of the events table, one query), and answers
as soon as that read shows what it waits for. The pause before each read is a fraction of how
long the job has been *quiet* (since it was created, since it started, since the poll saw its
status change): `QUIET_FRACTION` of that age, never under `MIN_PAUSE` nor over `MAX_PAUSE`.

- A short job is seen ending fast: a job that started under 0.33 s ago is read every 100 ms,
  one that started 1 s ago every 300 ms.
- A job that has not changed for a while is read every `MAX_PAUSE` s: its end is seen
  `MAX_PAUSE / 2` late on average, and a waiting minute costs at most ~60 reads.
- The age comes from the job's own timestamps, so a caller who asks again after a 20 s wait
  goes on at the slow pace (the ramp is paid once per change of the job, not per request).

`reads_per_waiting_minute` is the figure the README and the cost model quote; `make bench`
measures it on the local stack.
"""

from __future__ import annotations

from collections.abc import Iterator

#: The shortest pause between two reads of one long-poll (a job that just changed). 100 ms, not
#: 50: a job's end is seen as soon on average for jobs of 0.3 s and longer (the pause is 30 % of
#: its age from then on), and each change of a job costs ~3 reads fewer (its queued and running
#: ramps: ~20 % fewer reads a job in a drain with a caller per job).
MIN_PAUSE = 0.1
#: The pause as a fraction of the job's quiet age: the end of a job is seen, on average, about
#: QUIET_FRACTION / 2 of its run late (15 % of a 1 s run: 150 ms at most, ~75 ms on average).
QUIET_FRACTION = 0.3
#: The longest pause: a job that has been quiet for ~8 s and longer is read every 2.5 s.
MAX_PAUSE = 2.5
#: The events long-poll reads the job's status (terminal without a newer event: cancelled while
#: queued, a run that no worker ended) on every STATUS_EVERY-th step; each step probes the events.
STATUS_EVERY = 4
#: The longest `?wait=` a request may ask for (the contract's 0 - 20 s).
MAX_WAIT_SECONDS = 20


def pause_for(quiet_seconds: float) -> float:
    """The pause before the next read of a job that has been quiet for `quiet_seconds`."""
    return min(max(quiet_seconds * QUIET_FRACTION, MIN_PAUSE), MAX_PAUSE)


def pauses(quiet_seconds: float = 0.0) -> Iterator[float]:
    """The pauses of one long-poll of a job quiet for `quiet_seconds` when it begins, in
    order, while the job does not change (the caller stops at its deadline)."""
    quiet = max(quiet_seconds, 0.0)
    while True:
        pause = pause_for(quiet)
        yield pause
        quiet += pause


def reads_in(seconds: float, quiet_seconds: float = 0.0) -> int:
    """How many polls one long-poll of `seconds` makes on a job that stays unfinished (its
    reads at either end not counted)."""
    waited = 0.0
    for count, pause in enumerate(pauses(quiet_seconds)):
        waited += pause
        if waited > seconds + 1e-9:
            return count
    raise AssertionError("unreachable")


def reads_per_waiting_minute(*, events: bool = False) -> float:
    """DynamoDB read requests a caller makes in its first minute of waiting for a job that
    changed as it began and does not change again, asking again with `?wait=20` each time an
    answer comes back: every request's reads at its ends included (the status route: the job
    in full, first and last; the events route: the job and its events first, its last look
    only when a poll saw something) plus the polls in between."""
    total = 0.0
    start = 0.0
    while start < 60 - 1e-9:
        seconds = min(MAX_WAIT_SECONDS, 60 - start)
        polls = reads_in(seconds, start)
        if events:
            total += 2 + polls + polls // STATUS_EVERY
        else:
            total += 2 + polls
        start += seconds
    return total
