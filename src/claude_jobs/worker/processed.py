"""What happened to one jobs-queue message, and what then happens to the message.

`HANDLING` is the one table the worker function acts on. An infrastructure fault is no
`Processed`: it raises (`WorkerFault`) and the message is retried after a backoff.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..models import JobStatus


class Action(enum.StrEnum):
    RAN = "ran"
    #: The job is unknown (or gone).
    SKIPPED_UNKNOWN = "skipped:unknown"
    #: The job had already ended.
    SKIPPED_TERMINAL = "skipped:terminal"
    #: The job runs under another worker's live lease.
    SKIPPED_LEASED = "skipped:leased"
    #: The job changed between its read and its claim (or its segment's record).
    SKIPPED_CONFLICT = "skipped:conflict"
    #: The job used its attempts and was ended `failed` (`attempts_exhausted`).
    EXHAUSTED = "exhausted"
    #: The message is not a job message.
    MALFORMED = "malformed"
    #: Its tenant runs its share of jobs: the job waits, unchanged.
    DEFERRED = "deferred"
    #: A long job re-queued at its segment's end.
    SEGMENTED = "segmented"
    #: A call of the job waits for a person's decision: the job is `awaiting_approval`.
    AWAITING = "awaiting"
    #: The job waits for a decision: nothing to run (the decision queues it again).
    SKIPPED_AWAITING = "skipped:awaiting"


class Handling(enum.Enum):
    #: Done: the message is deleted (the batch reports it processed).
    DELETE = "delete"
    #: Offered again once the job's lease has lapsed (`Processed.retry_in`): if the worker that
    #: holds it dies, this message is the one that takes the job over.
    COME_BACK = "come back later"
    #: Sent again with a growing delay (a fresh receive count); this one is deleted.
    DEFER = "defer"
    #: The message of the job's next segment is sent; this one is deleted.
    NEXT_SEGMENT = "next segment"


HANDLING: dict[Action, Handling] = {
    Action.RAN: Handling.DELETE,
    Action.SKIPPED_UNKNOWN: Handling.DELETE,
    Action.SKIPPED_TERMINAL: Handling.DELETE,
    Action.SKIPPED_LEASED: Handling.COME_BACK,
    Action.SKIPPED_CONFLICT: Handling.DELETE,
    Action.EXHAUSTED: Handling.DELETE,
    Action.MALFORMED: Handling.DELETE,
    Action.DEFERRED: Handling.DEFER,
    Action.SEGMENTED: Handling.NEXT_SEGMENT,
    Action.AWAITING: Handling.DELETE,
    Action.SKIPPED_AWAITING: Handling.DELETE,
}


class WorkerFault(RuntimeError):
    """An infrastructure fault: the job was released (or ended) and the message must be
    retried."""

    def __init__(self, message: str, *, retire: str | None = None) -> None:
        super().__init__(message)
        self.retire = retire


@dataclass(frozen=True)
class Processed:
    """What happened to one message (for logs and tests)."""

    job_id: str | None
    action: Action
    status: JobStatus | None = None
    #: Why the execution environment must not serve another job (a process of this one could
    #: not be ended), or None.
    retire: str | None = None
    #: Seconds after which this message is to be offered again rather than deleted: the job
    #: runs under another worker's live lease (`skipped:leased`).
    retry_in: float | None = None

    @property
    def handling(self) -> Handling:
        return HANDLING[self.action]


def skipped(why: str) -> Action:
    """The `skipped:<why>` action."""
    return Action(f"skipped:{why}")
