"""Domain errors. The API maps each to an HTTP problem in one place (claude_jobs.api.problems)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str


class ClaudeJobsError(Exception):
    """Base of every error the service raises on purpose."""

    code = "internal_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or self.code).strip()


class JobNotFoundError(ClaudeJobsError):
    """No such job."""

    code = "job_not_found"


class SessionNotFoundError(ClaudeJobsError):
    """No such session."""

    code = "session_not_found"


class SessionBusyError(ClaudeJobsError):
    """The session has a job queued or running; continue it once that job has ended."""

    code = "session_busy"


class SessionConflictError(ClaudeJobsError):
    """The session changed between its read and a write conditional on it (look again)."""

    code = "session_conflict"


class IdempotencyConflictError(ClaudeJobsError):
    """The Idempotency-Key was already used with a different request body."""

    code = "idempotency_conflict"


class PayloadTooLargeError(ClaudeJobsError):
    """The request body is larger than 256 KiB."""

    code = "payload_too_large"


class RequestValidationError(ClaudeJobsError):
    """The request is not valid."""

    code = "validation_error"

    def __init__(self, detail: str = "", errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors: list[FieldError] = errors or []


class UnauthorizedError(ClaudeJobsError):
    """Missing or invalid API key."""

    code = "unauthorized"


class DispatchError(ClaudeJobsError):
    """The job could not be queued; it was marked failed. Retry the request."""

    code = "dispatch_failed"


class TenantLimitError(ClaudeJobsError):
    """The tenant has as many pending (queued or running) jobs as its deployment allows."""

    code = "tenant_limit"

    def __init__(self, detail: str = "", retry_after_seconds: int = 5) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class ServiceUnavailableError(ClaudeJobsError):
    """A service the request needs (e.g. Secrets Manager) failed; nothing was done. Retry."""

    code = "service_unavailable"

    def __init__(self, detail: str = "", retry_after_seconds: int = 30) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class TenantAtShareError(ClaudeJobsError):
    """The tenant already runs as many jobs as its running share allows: the job waits (it is
    not claimed, and nothing about it changes)."""

    code = "tenant_at_share"


class InvalidCursorError(ValueError):
    """A listing cursor the repository did not return (forged or corrupted)."""


class EventSeqConflictError(Exception):
    """A batch of progress events was not stored: another batch already holds its first `seq`
    (another attempt of the job wrote meanwhile). Renumber after `EventStore.last_seq` and
    write again."""


class TransitionConflictError(ClaudeJobsError):
    """The job was not in a state that allows this transition."""

    code = "transition_conflict"

    def __init__(self, detail: str = "", current: object | None = None) -> None:
        super().__init__(detail)
        self.current = current


@dataclass
class ProblemDetails:
    """Fields of an RFC 9457 problem; used by the API layer and the local front."""

    status: int
    title: str
    detail: str
    type: str
    errors: list[FieldError] = field(default_factory=list)


class IdempotencyReplayError(ClaudeJobsError):
    """The Idempotency-Key is held by an earlier job."""

    code = "idempotency_replay"

    def __init__(self, job_id: str, body_hash: str) -> None:
        super().__init__(f"Idempotency-Key already used for job {job_id}")
        self.job_id = job_id
        self.body_hash = body_hash
