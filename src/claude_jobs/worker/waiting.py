"""Approvals in the job's life (docs/worker.md, "Approvals (mechanism)").

- A run that ends "deferred" (a call waits for a person) is recorded by `await_approval` in one
  conditional write, only while our claim holds: `running → awaiting_approval` with the
  `pending_approval`, the usage so far, `continuing`, the lease cleared, `approval_waits + 1`
  and the last `approval_decision` removed. No worker, lease or CLI is held while it waits.
  A job whose calls already waited `MAX_APPROVAL_WAITS` times ends `failed` (`approval_limit`).
- A decided job (queued again with its `approval_decision`) resumes its session like a later
  segment. Before its CLI starts, `settle_session` carries the decision out on the transcript
  materialised in the sandbox (approvals.settle_entries): allow keeps the deferral (the CLI
  runs the call), deny replaces it with an error tool result carrying the message, answers
  (`AskUserQuestion`) with a tool result carrying them; what is appended is stored at once.
  `gate_of` arms the run's PreToolUse gate the same way (a denied call re-emitted is denied).
  Carrying it out again (a redelivery, a later segment) finds the call answered and changes
  nothing; a deferral nobody decided on (left by an earlier job of the session) is denied.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from ..approval_models import (
    APPROVAL_LIMIT,
    ASK_USER_QUESTION,
    MAX_APPROVAL_WAITS,
    ApprovalDecision,
    PendingApproval,
)
from ..errors import TransitionConflictError
from ..job_options import tool_base_name
from ..models import Job, JobErrorInfo, JobStatus
from ..observability import deferred_logger
from ..ports import Transition
from .approvals import (
    DeferredCall,
    answers_text,
    display_input,
    matching_rule,
    read_transcript,
    settle_entries,
)
from .ports import AgentOutcome, WorkerPorts
from .processed import Action, Processed, WorkerFault
from .recording import at
from .scrub import Scrubber
from .sessions import AgentSession, write_transcript

log = deferred_logger()  # Powertools' structured logger

#: What the model sees for a denied call when the person gave no message.
DEFAULT_DENIAL = "This call was denied by a person: do not run it again; find another way."


def asks_questions(job: Job) -> bool:
    """The job allows `AskUserQuestion`: its calls wait for the caller's answers."""
    return any(tool_base_name(tool) == ASK_USER_QUESTION for tool in job.options.allowed_tools)


def decision_result(decision: ApprovalDecision) -> tuple[str, bool] | None:
    """The tool result that replaces a decided call (content, is_error), or None: it runs."""
    if decision.decision == "deny":
        return (decision.message or DEFAULT_DENIAL, True)
    if decision.answers is not None:
        return (answers_text(decision.answers, decision.message), False)
    return None


def gate_of(job: Job) -> dict[str, Any]:
    """The run's approval settings (`AgentRequest` fields) for `job` and its decision."""
    decision = job.approval_decision
    result = decision_result(decision) if decision is not None else None
    approved = (decision.tool_use_id,) if decision is not None and result is None else ()
    denied = ((decision.tool_use_id, result[0]),) if decision is not None and result else ()
    return {
        "approvals": tuple(job.options.approvals),
        "ask_questions": asks_questions(job),
        "approved_calls": approved,
        "denied_calls": denied,
    }


@dataclass(frozen=True)
class Settlement:
    """What `settle_session` left for the run."""

    #: The job's own deferral that still waits for a decision (its wait was not recorded):
    #: the run must not resume; the wait is recorded instead.
    waiting: DeferredCall | None = None
    #: An allowed call is left for the resumed CLI to run: it is resumed with no prompt (with
    #: one, even empty, CLI 2.1.330 runs the call, then answers a next deferral "Tool result
    #: missing" and goes on with the prompt instead of stopping).
    runs_call: bool = False
    #: The prompt a resumed run sends after a decision written into the transcript (a denial,
    #: a question's answers) instead of the segments' `CONTINUE_PROMPT`, which asks the agent
    #: to do an interrupted call again.
    resume_prompt: str | None = None


#: Sent after a denial: the call's error result says why; the agent goes on without it.
DENIED_PROMPT = (
    "(A person denied your last tool call; its result carries their message. Do not run that "
    "call again: continue the task without it, or explain what you could not do.)"
)
#: Sent after a question is answered: the answers are the call's result.
ANSWERED_PROMPT = (
    "(The person answered your questions; the answers are your last tool call's result. "
    "Continue the task with them in mind.)"
)


def settle_session(job: Job, session: AgentSession | None) -> Settlement:
    """Carry the job's decision out on its materialised transcript before the CLI resumes it
    (and store what is appended; a store fault raises: the run is retried)."""
    if session is None or not session.resume or session.transcript is None:
        return Settlement()
    decision = job.approval_decision
    decided = {decision.tool_use_id: decision_result(decision)} if decision is not None else {}
    entries = read_transcript(session.transcript)
    # The job's own run made the deferral when it ran before (a later claim of it).
    settled = settle_entries(entries, decided, own=job.segments > 1)
    if settled.changed:
        write_transcript(session.transcript, settled.entries)
    if settled.added:
        store = session.store
        added: list[Any] = list(settled.added)
        # Over SESSION_MAX_BYTES: SessionTooLargeError (the run ends session_too_large).
        asyncio.run(store.append(store.key(session.session_id), added))
        session.loaded.update(str(e["uuid"]) for e in settled.added)
        log.info("job %s: %s deferred call(s) settled", job.job_id, len(settled.added))
    if not settled.waiting:
        # Only when the decision was written now: a later segment (or a retry that finds it
        # written) continues as segments do.
        result = decided.get(decision.tool_use_id) if decision is not None else None
        prompt = None
        if result is not None and settled.added:
            prompt = DENIED_PROMPT if result[1] else ANSWERED_PROMPT
        return Settlement(runs_call=bool(settled.runs), resume_prompt=prompt)
    call_id, tool, tool_input = settled.waiting[-1]
    rule = (
        None
        if tool == ASK_USER_QUESTION
        else matching_rule(job.options.approvals, tool, tool_input)
    )
    return Settlement(waiting=DeferredCall(call_id, tool, display_input(tool_input), rule))


def pending_of(
    ports: WorkerPorts, job: Job, deferred: DeferredCall, scrubber: Scrubber
) -> PendingApproval:
    now = ports.clock()
    return PendingApproval(
        approval_id=f"apr_{uuid.uuid4().hex}",
        tool_use_id=deferred.tool_use_id,
        tool=deferred.tool,
        input=scrubber.text(deferred.input),
        rule=deferred.rule,
        requested_at=at(now),
        expires_at=at(now + job.options.approval_timeout_seconds),
    )


def over_limit(job: Job, outcome: AgentOutcome) -> AgentOutcome:
    """The ending of a deferred run whose job has used its waits: `failed`, `approval_limit`."""
    return AgentOutcome(
        "failed",
        usage=outcome.usage,
        error=JobErrorInfo(
            code=APPROVAL_LIMIT,
            message=f"the job's calls waited for approval {job.approval_waits} times, "
            f"the most a job may ({MAX_APPROVAL_WAITS})",
        ),
    )


def await_approval(
    ports: WorkerPorts,
    job: Job,
    outcome: AgentOutcome,
    pending: PendingApproval,
    progress: Any,
    retire: str | None = None,
) -> Processed:
    """Record the wait: `running → awaiting_approval` in one write while our claim holds.
    The progress events (`approval_requested`, the status) are written first."""
    progress.awaiting(pending, outcome.usage)
    try:
        waiting = ports.jobs.transition(
            Transition(
                job_id=job.job_id,
                to=JobStatus.AWAITING_APPROVAL,
                from_=[JobStatus.RUNNING],
                set_fields={
                    "pending_approval": pending,
                    "usage": outcome.usage,
                    "continuing": True,
                    "lease_until": None,
                    "approval_waits": job.approval_waits + 1,
                },
                remove_fields=["approval_decision"],
                expected_attempts=job.attempts,
            )
        )
    except TransitionConflictError as conflict:
        current = conflict.current if isinstance(conflict.current, Job) else None
        status = current.status if current else None
        return Processed(job.job_id, Action.SKIPPED_CONFLICT, status, retire=retire)
    except Exception as exc:  # the lease expires; the retry finds the deferral and waits then
        raise WorkerFault(
            f"job {job.job_id}: its wait for approval could not be recorded", retire=retire
        ) from exc
    log.info("job %s waits for approval %s (%s)", job.job_id, pending.approval_id, pending.tool)
    return Processed(job.job_id, Action.AWAITING, waiting.status, retire=retire)
