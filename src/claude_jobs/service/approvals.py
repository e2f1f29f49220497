"""Approvals, the API side: a person's decision on a job's pending call, and the tenant's list
of pending approvals (shared/DESIGN.md, "Approvals")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..approval_models import (
    ASK_USER_QUESTION,
    ApprovalDecision,
    ApprovalList,
    DecisionRequest,
    PendingApprovalItem,
    PendingApprovalView,
)
from ..errors import (
    ClaudeJobsError,
    FieldError,
    InvalidCursorError,
    RequestValidationError,
    TransitionConflictError,
)
from ..models import Job, JobStatus
from ..observability import get_logger
from ..ports import Transition
from .context import ServiceContext
from .cursors import decode_token, encode_token, token_error
from .queries import MAX_PAGE_SIZE, get


class ApprovalConflictError(ClaudeJobsError):
    """The job does not wait for this decision (it was decided already, or the approval is
    not its pending one)."""

    code = "approval_conflict"


def parse_decision(body: Any) -> DecisionRequest:
    """A decision body as a DecisionRequest; RequestValidationError listing every problem."""
    from pydantic import ValidationError

    try:
        return DecisionRequest.model_validate(body)
    except ValidationError as exc:
        errors = [
            FieldError(("body", *err["loc"]), err["msg"])
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError("The decision is not valid.", errors) from None


def decide(
    ctx: ServiceContext, tenant_id: str, job_id: str, approval_id: str, request: DecisionRequest
) -> Job:
    """Record the decision and queue the job again: one conditional write
    `awaiting_approval → queued` on the version read, then the job's message.

    JobNotFoundError for another tenant's job; ApprovalConflictError when the job does not
    wait for `approval_id` (any more); RequestValidationError when the body does not fit the
    call (answers are for `AskUserQuestion` only, and an allowed question needs them)."""
    job = get(ctx, tenant_id, job_id)
    pending = job.pending_approval
    if job.status is not JobStatus.AWAITING_APPROVAL or pending is None:
        raise ApprovalConflictError(
            f"Job {job_id} is {job.status.value}: it waits for no decision."
        )
    if pending.approval_id != approval_id:
        raise ApprovalConflictError(
            f"Approval {approval_id} is not the one job {job_id} waits for "
            f"(it waits for {pending.approval_id})."
        )
    now = ctx.clock()
    if now >= pending.expires_at:
        raise ApprovalConflictError(
            f"Approval {approval_id} expired at {pending.expires_at.isoformat()}."
        )
    _check_fits(request, pending.tool)
    decision = ApprovalDecision(
        approval_id=pending.approval_id,
        tool_use_id=pending.tool_use_id,
        tool=pending.tool,
        decision=request.decision,
        message=request.message,
        answers=request.answers,
        decided_at=now,
    )
    fields: dict[str, Any] = {"approval_decision": decision, "continuing": True}
    if job.deadline_at is not None:
        # The wait does not count against timeout_seconds: the deadline moves by it.
        fields["deadline_at"] = job.deadline_at + max(now - pending.requested_at, timedelta(0))
    try:
        queued = ctx.repo.transition(
            Transition(
                job_id=job_id,
                to=JobStatus.QUEUED,
                from_=[JobStatus.AWAITING_APPROVAL],
                set_fields=fields,
                remove_fields=["pending_approval"],
                expected_version=job.version,
                # A message lost below is re-driven by the reconciler once this is past.
                message_due=now,
            )
        )
    except TransitionConflictError as conflict:
        current = conflict.current if isinstance(conflict.current, Job) else None
        status = current.status.value if current else "gone"
        raise ApprovalConflictError(
            f"Job {job_id} changed meanwhile (it is {status}): approval {approval_id} "
            "was decided or cancelled by another request."
        ) from None
    try:
        ctx.queue.send(queued)
    except Exception as exc:  # the job is queued and due: the reconciler sends it again
        get_logger().warning(
            "the decided job's message was not sent; the reconciler re-drives it",
            extra={"job_id": job_id, "error": type(exc).__name__},
        )
    return queued


def _check_fits(request: DecisionRequest, tool: str) -> None:
    question = tool == ASK_USER_QUESTION
    if request.answers is not None and not question:
        raise RequestValidationError(
            f"answers are for AskUserQuestion only; this call uses {tool}.",
            [FieldError(("body", "answers"), f"not allowed for a {tool} call")],
        )
    if question and request.decision == "allow" and not request.answers:
        raise RequestValidationError(
            "An allowed AskUserQuestion needs answers (each question's text → its answer).",
            [FieldError(("body", "answers"), "required to allow an AskUserQuestion call")],
        )
    if question and request.decision == "deny" and request.answers is not None:
        raise RequestValidationError(
            "A denied question takes no answers.",
            [FieldError(("body", "answers"), "not allowed with decision deny")],
        )


def list_approvals(
    ctx: ServiceContext, tenant_id: str, limit: int = 20, next_token: str | None = None
) -> ApprovalList:
    """The tenant's pending approvals, oldest first, one page (page tokens as the job list's)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise RequestValidationError(
            "limit is out of range.",
            [FieldError(("query", "limit"), f"must be between 1 and {MAX_PAGE_SIZE}")],
        )
    secret = ctx.settings.page_token_secret
    cursor: Mapping[str, Any] | None = (
        _approvals_cursor(decode_token(next_token, tenant_id, secret)) if next_token else None
    )
    try:
        page = ctx.repo.list_awaiting_approval(tenant_id, limit, cursor)
    except InvalidCursorError:
        raise token_error() from None
    items = [
        PendingApprovalItem(
            job_id=job.job_id,
            session_id=job.session_id,
            metadata=job.metadata,
            pending_approval=PendingApprovalView.of(job.pending_approval),
        )
        for job in page.jobs
        if job.pending_approval is not None
    ]
    token = encode_token({"approvals": page.cursor}, tenant_id, secret) if page.cursor else None
    return ApprovalList(items=items, next_token=token)


def _approvals_cursor(token: Mapping[str, Any]) -> Mapping[str, Any]:
    """The repository's cursor of an approvals page token (a job list's token is refused)."""
    cursor = token.get("approvals") if set(token) == {"approvals"} else None
    if not isinstance(cursor, dict):
        raise token_error()
    return cursor
