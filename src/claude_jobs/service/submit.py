"""Submitting a job: its item, its take of its session, its idempotency key, its message."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from ..clock import epoch
from ..errors import (
    DispatchError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyReplayError,
    RequestValidationError,
    SessionBusyError,
    SessionConflictError,
    SessionNotFoundError,
    TenantLimitError,
)
from ..models import InputObject, Job, JobRequest, JobStatus, WebhookDelivery
from ..ports import IdempotencyClaim, SessionClaim
from ..repository_models import pull_request_to_update
from .context import ServiceContext
from .limits import check_limits
from .sessions import SESSION_TRIES, check_idle, find_session

IDEMPOTENCY_KEY_MAX = 128
#: Retry-After of a 429 tenant_limit: about the time a short job takes to free a slot.
TENANT_LIMIT_RETRY_SECONDS = 10
#: A session held by no job that can match: the claim made to let an idempotent replay answer
#: before a session's refusal (its condition always fails otherwise).
_REFUSED = "\x00refused"


def request_hash(request: JobRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False when an idempotent replay returned an earlier job


def submit(
    ctx: ServiceContext,
    tenant_id: str,
    request: JobRequest,
    idempotency_key: str | None = None,
    source: str = "api",
    inputs: Sequence[InputObject] = (),
    *,
    pending_cap: bool = True,
    updates_pull_request_of: str | None = None,
) -> Submission:
    """Queue a job. `pending_cap`: refuse it (TenantLimitError) when the tenant already has
    `tenant_max_pending` pending jobs; the trigger path turns it off (its sources are the
    deployment's own configuration, and an event refused would be retried and then
    dead-lettered instead of run), the job still counts and waits for its running share.
    `updates_pull_request_of` (GitHub events only, never a caller's field): the job whose pull
    request this one updates; kept only when that stored job is the tenant's, in the session
    the request continues, on the same repository (`pull_request_to_update`)."""
    settings = ctx.settings
    check_limits(settings, request)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
        raise RequestValidationError(
            "Idempotency-Key must be 1-128 characters.",
            [FieldError(("header", "Idempotency-Key"), "must be 1-128 characters")],
        )
    now = ctx.clock()
    options = request.options()
    if options.model is None:
        options.model = settings.default_model
    job = Job(
        job_id=ctx.new_id(),
        tenant_id=tenant_id,
        status=JobStatus.QUEUED,
        created_at=now,
        prompt=request.prompt,
        system_prompt=request.system_prompt,
        options=options,
        metadata=request.metadata,
        source=source,
        updates_pull_request_of=pull_request_to_update(
            ctx.repo.get(updates_pull_request_of) if updates_pull_request_of else None,
            tenant_id,
            request.session_id,
            options.repository.url if options.repository else None,
        ),
        inputs=list(inputs),
        webhook=WebhookDelivery(url=request.webhook_url) if request.webhook_url else None,
        version=1,
    )
    # Large documents go to the store before the item that names them is written.
    job = ctx.documents.place_request(job)
    body_hash = request_hash(request)
    claim = (
        IdempotencyClaim(
            tenant_id=tenant_id,
            key=idempotency_key,
            body_hash=body_hash,
            expires_at=epoch(now + timedelta(seconds=settings.idempotency_ttl_seconds)),
        )
        if idempotency_key
        else None
    )
    try:
        _create(ctx, job, claim, request.session_id, pending_cap=pending_cap)
    except TenantLimitError as limit:
        ctx.documents.discard_prompts(job)  # nothing will read them
        limit.retry_after_seconds = TENANT_LIMIT_RETRY_SECONDS
        raise
    except IdempotencyReplayError as replay:
        ctx.documents.discard_prompts(job)
        if replay.body_hash != body_hash:
            raise IdempotencyConflictError(
                "This Idempotency-Key was already used with a different request body."
            ) from None
        earlier = ctx.repo.get(replay.job_id)
        if earlier is None:  # its job expired: the key is effectively free again
            raise
        return Submission(earlier, created=False)
    except (SessionNotFoundError, SessionBusyError):
        ctx.documents.discard_prompts(job)
        raise
    try:
        ctx.queue.send(job)
    except Exception as exc:
        # The job must not sit in `queued` forever: fail it now, and free the key so the
        # caller's retry with the same Idempotency-Key makes a fresh job.
        message = f"the job could not be queued ({type(exc).__name__}); submit it again"
        ctx.repo.fail_dispatch(job.job_id, claim, message, ctx.clock())
        ctx.documents.discard_prompts(job)
        raise DispatchError(message) from exc
    return Submission(job, created=True)


def _create(
    ctx: ServiceContext,
    job: Job,
    claim: IdempotencyClaim | None,
    session_id: str | None,
    *,
    pending_cap: bool = True,
) -> None:
    """Create the job with its take of its session (a new one, or `session_id`), retrying
    when the session changed between its read and the write; `pending_cap`: see submit."""
    for _ in range(SESSION_TRIES):
        refusal: Exception | None = None
        try:
            session = _session_claim(ctx, job, session_id)
        except (SessionNotFoundError, SessionBusyError) as refused:
            if claim is None:
                raise
            # A replay of an earlier submission (whose job holds this session) must still
            # answer with that job: try the create with a claim that cannot succeed, so
            # that the idempotency record answers first.
            refusal = refused
            session = SessionClaim(
                session_id=session_id or "",
                tenant_id=job.tenant_id,
                job_id=job.job_id,
                at=job.created_at,
                expires_at=0,
                new=False,
                expected_active=_REFUSED,
            )
        job.session_id = session.session_id
        try:
            cap = ctx.settings.tenant_max_pending if pending_cap else None
            ctx.repo.create(job, claim, max_pending=cap, session=session)
            return
        except SessionConflictError:
            if refusal is not None:
                raise refusal from None
            continue  # it changed since it was read: look again
    raise SessionBusyError("The session is being continued by another request.")


def _session_claim(ctx: ServiceContext, job: Job, session_id: str | None) -> SessionClaim:
    expires_at = epoch(job.created_at + timedelta(days=ctx.settings.session_retention_days))
    if session_id is None:
        return SessionClaim(
            session_id=str(uuid.uuid4()),
            tenant_id=job.tenant_id,
            job_id=job.job_id,
            at=job.created_at,
            expires_at=expires_at,
            new=True,
        )
    record = find_session(ctx, job.tenant_id, session_id)
    check_idle(ctx, record)
    return SessionClaim(
        session_id=session_id,
        tenant_id=job.tenant_id,
        job_id=job.job_id,
        at=job.created_at,
        expires_at=expires_at,
        new=False,
        expected_active=record.active_job,
    )
