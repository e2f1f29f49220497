"""Approvals (shared/DESIGN.md, "Approvals"): a tool call that waits for a person's decision.

A job whose agent makes a call matching one of its `approvals` rules (or asks the caller a
question through `AskUserQuestion`, when it allows that tool) is stopped before the call runs
and becomes `awaiting_approval` with a `PendingApproval`; a decision (`DecisionRequest`) is
recorded on the job as its `ApprovalDecision` and the job is queued again: the worker carries
the decision out on the job's session (worker/approvals.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from .model_base import Model

#: A job's approval timeout when it names none (a day), and the most it may name (7 days).
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 86_400
MAX_APPROVAL_TIMEOUT_SECONDS = 7 * 86_400
#: The fewest seconds a job may give a person to decide.
MIN_APPROVAL_TIMEOUT_SECONDS = 10
#: A job's calls may wait for a decision at most this many times.
MAX_APPROVAL_WAITS = 50
#: The most approval rules a job may name.
MAX_APPROVAL_RULES = 64
#: The longest message a decision may carry (shown to the agent with a denial).
MAX_DECISION_MESSAGE_CHARS = 4000
#: `AskUserQuestion` answers: at most this many, each at most this long.
MAX_ANSWERS = 16
MAX_ANSWER_CHARS = 4000
#: The tool whose calls are the agent's questions to the caller.
ASK_USER_QUESTION = "AskUserQuestion"

#: Error codes of a job ended by approvals.
APPROVAL_EXPIRED = "approval_expired"
APPROVAL_LIMIT = "approval_limit"


class PendingApproval(Model):
    """A call that waits for a decision, as stored on the job (`tool_use_id` is the worker's:
    the call's id in the session's transcript)."""

    model_config = ConfigDict(extra="ignore")

    approval_id: str
    tool_use_id: str
    tool: str
    #: The call's input as JSON text, at most 2 KiB (cut with "…").
    input: str
    #: The rule the call matched (None: the agent's question, `AskUserQuestion`).
    rule: str | None = None
    requested_at: datetime
    expires_at: datetime


class ApprovalDecision(Model):
    """A person's decision on a pending approval, kept on the job until the worker has carried
    it out (a redelivered message or a later segment carries it out the same way)."""

    model_config = ConfigDict(extra="ignore")

    approval_id: str
    tool_use_id: str
    tool: str
    decision: Literal["allow", "deny"]
    message: str | None = None
    answers: dict[str, str] | None = None
    decided_at: datetime


class PendingApprovalView(Model):
    """`pending_approval` in the job view (and an item of `GET /v1/approvals`)."""

    approval_id: str
    tool: str = Field(description="The tool the call uses (`AskUserQuestion`: a question)")
    input: str = Field(description="The call's input as JSON, at most 2 KiB (cut with `…`)")
    rule: str | None = Field(None, description="The approval rule the call matched")
    requested_at: datetime
    expires_at: datetime = Field(
        description="Unanswered by then, the job ends `failed` (`approval_expired`)"
    )

    @classmethod
    def of(cls, pending: PendingApproval) -> PendingApprovalView:
        return cls.model_validate(pending.model_dump(exclude={"tool_use_id"}))


class DecisionRequest(Model):
    """Body of `POST /v1/jobs/{job_id}/approvals/{approval_id}`."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "deny"]
    message: str | None = Field(
        None,
        max_length=MAX_DECISION_MESSAGE_CHARS,
        description="Shown to the agent with a denial (and with an allowed question's answers)",
    )
    answers: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=MAX_ANSWER_CHARS)],
            Annotated[str, StringConstraints(max_length=MAX_ANSWER_CHARS)],
        ]
        | None
    ) = Field(
        None,
        max_length=MAX_ANSWERS,
        description="`AskUserQuestion` only: each question's text → the chosen answer",
    )


class PendingApprovalItem(Model):
    """An item of `GET /v1/approvals`: a job of the tenant that waits, and what it waits on."""

    job_id: str
    session_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    pending_approval: PendingApprovalView


class ApprovalList(Model):
    """Body of `GET /v1/approvals`: the tenant's pending approvals, oldest first."""

    items: list[PendingApprovalItem]
    next_token: str | None = None
