"""Recording how a job ended: one conditional terminal write (`end_job`), the result placed
inline or in the document store, the artifacts' list, the usage metered by the proxy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..documents import ARTIFACTS_PREFIX, PROMPTS
from ..errors import TransitionConflictError
from ..models import INLINE_RESULT_BYTES, Job, JobErrorInfo, JobResult, JobStatus
from ..observability import deferred_logger
from ..ports import Transition
from .agent import BUDGET_EXCEEDED, UPSTREAM_ERROR
from .artifacts import Collected
from .ports import AgentOutcome, Metered, WorkerPorts
from .processed import WorkerFault
from .scrub import Scrubber

log = deferred_logger()  # Powertools' structured logger

OUTPUT_UNSTORABLE = "output_unstorable"
#: Tries to store a run's output before the job ends `output_unstorable`.
RECORD_ATTEMPTS = 3
#: DynamoDB's item limit is 400 KB; keep the terminal item safely below it.
MAX_ITEM_BYTES = 380_000


def at(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def without_prompts(job: Job) -> dict[str, str]:
    return {k: v for k, v in job.documents.items() if k not in PROMPTS}


def end_job(
    ports: WorkerPorts,
    job: Job,
    status: JobStatus,
    *,
    error: JobErrorInfo | None,
    fields: Mapping[str, Any] | None = None,
    remove: Sequence[str] = (),
    claimed: bool = True,
) -> Job:
    """The terminal write: `status`, finished now, the lease cleared, the prompts dropped from
    the item (and then from the document store). `claimed`: only while our claim holds (the
    attempt it added); else only on the version read. `fields` adds to (or replaces) what is
    set. Raises TransitionConflictError when the condition does not hold."""
    ended = ports.jobs.transition(
        Transition(
            job_id=job.job_id,
            to=status,
            from_=[JobStatus.RUNNING] if claimed else [job.status],
            set_fields={
                "finished_at": at(ports.clock()),
                "error": error,
                "lease_until": None,
                "documents": without_prompts(job),
                **(fields or {}),
            },
            remove_fields=[*PROMPTS, *remove],
            expected_attempts=job.attempts if claimed else None,
            expected_version=None if claimed else job.version,
        )
    )
    ports.documents.discard_prompts(job)
    return ended


def record(
    ports: WorkerPorts,
    scrubber: Scrubber,
    job: Job,
    outcome: AgentOutcome,
    retire: str | None,
    collected: Sequence[Collected] = (),
) -> JobStatus | None:
    """Record how the run ended. An output that cannot be stored (after a few tries) ends
    the job `failed` (`output_unstorable`) without it: the agent never runs twice."""
    problem: Exception | None = None
    for _ in range(RECORD_ATTEMPTS):
        try:
            return finish(ports, job, outcome, collected)
        except Exception as exc:
            problem = exc
            log.warning(
                "job %s: the output could not be stored: %s",
                job.job_id,
                scrubber.text(f"{type(exc).__name__}: {exc}")[:500],
            )
    error = JobErrorInfo(
        code=OUTPUT_UNSTORABLE,
        message=f"the job's output could not be stored ({type(problem).__name__}); "
        "the job is not run again",
    )
    try:
        ended = end_job(
            ports,
            job,
            JobStatus.FAILED,
            error=error,
            fields={"usage": outcome.usage},
            remove=["result"],
        )
    except TransitionConflictError as conflict:
        current = conflict.current if isinstance(conflict.current, Job) else None
        return current.status if current else None
    except Exception as exc:
        # Not even the failure can be written (the table is unreachable): the job keeps
        # its claim until the lease ends; the message is retried.
        raise WorkerFault(f"job {job.job_id}: nothing could be recorded", retire=retire) from exc
    log.warning("job %s failed: %s", job.job_id, OUTPUT_UNSTORABLE)
    return ended.status


def finish(
    ports: WorkerPorts, job: Job, outcome: AgentOutcome, collected: Sequence[Collected] = ()
) -> JobStatus | None:
    """The run's ending, result, usage and artifacts in one write, while our claim holds."""
    result, documents, error = stored_result(ports, job, outcome)
    fields: dict[str, Any] = {"usage": outcome.usage, "result": result, "documents": documents}
    fields.update(artifact_fields(ports, job, collected, documents))
    if outcome.pull_request is not None:  # repositories (repository.py)
        fields["pull_request"] = outcome.pull_request
    if outcome.pull_request_skipped is not None:
        fields["pull_request_skipped"] = outcome.pull_request_skipped
    try:
        ended = end_job(ports, job, JobStatus(outcome.ending), error=error, fields=fields)
    except TransitionConflictError as conflict:
        current = conflict.current if isinstance(conflict.current, Job) else None
        log.warning(
            "job %s: result not recorded, the job moved on (%s)",
            job.job_id,
            current.status if current else "?",
        )
        return current.status if current else None
    log.info(
        "job %s %s%s",
        job.job_id,
        ended.status,
        f" ({outcome.error.code})" if outcome.error else "",
    )
    return ended.status


def artifact_fields(
    ports: WorkerPorts, job: Job, collected: Sequence[Collected], documents: dict[str, str]
) -> dict[str, Any]:
    """Files: the artifacts to record (inline, or their list as a document, whose key and
    the artifacts' prefix are added to `documents`)."""
    if not collected or ports.artifacts is None:
        return {}
    found = collected[-1]
    if not found.artifacts and not found.notes:
        return {}
    fields, extra = ports.documents.place_artifacts(job, found.artifacts, found.notes)
    documents.update(extra)
    if found.artifacts:
        documents[ARTIFACTS_PREFIX] = ports.artifacts.prefix(job.tenant_id, job.job_id)
    return fields


def stored_result(
    ports: WorkerPorts, job: Job, outcome: AgentOutcome
) -> tuple[JobResult | None, dict[str, str], JobErrorInfo | None]:
    """The result to record (large documents already in the store), the job's document
    keys once it is recorded, and the error."""
    error = outcome.error
    if outcome.text is None and outcome.structured is None:
        kept = without_prompts(job)
        if outcome.ending != "succeeded":
            return None, kept, error
        return JobResult(text="", is_error=False), kept, error
    if ports.documents.store is None and (
        len((outcome.text or "").encode()) > INLINE_RESULT_BYTES
        or _size(job, outcome) > MAX_ITEM_BYTES
    ):
        raise ValueError("the result is too large to store inline and no bucket is set")
    result, documents = ports.documents.place_result(
        job, outcome.text or "", outcome.structured, outcome.is_error
    )
    return result, documents, error


def with_metered_usage(outcome: AgentOutcome, metered: Metered) -> AgentOutcome:
    """The outcome with the proxy's metered usage folded in.

    The cost is the meter's figure: it sees every call (the agent's direct ones too, those of
    a run stopped before the CLI reported, and the answers read on after their caller hung
    up), and a call still open is counted at its reservation. Each token count is the higher
    of the CLI's figure and the meter's. Turns and duration stay the
    CLI's. A run that failed on an upstream error after the proxy refused a call for its
    budget failed because its budget was spent."""
    usage = outcome.usage
    outcome.usage = usage.model_copy(
        update={
            "input_tokens": max(usage.input_tokens, metered.input_tokens),
            "output_tokens": max(usage.output_tokens, metered.output_tokens),
            "cache_read_input_tokens": max(
                usage.cache_read_input_tokens, metered.cache_read_input_tokens
            ),
            "cache_creation_input_tokens": max(
                usage.cache_creation_input_tokens, metered.cache_creation_input_tokens
            ),
            # The meter's figure (calls still open counted at their reservation).
            "total_cost_usd": metered.charged_usd,
        }
    )
    if (
        metered.budget_refusals
        and outcome.error is not None
        and outcome.error.code == UPSTREAM_ERROR
    ):
        outcome.error = JobErrorInfo(
            code=BUDGET_EXCEEDED,
            message=f"the job's budget of ${metered.limit_usd or 0:.4f} (its max_budget_usd, "
            f"at most the deployment cap) is spent: metered cost ${metered.cost_usd:.4f}; "
            "further Messages API calls were refused",
        )
    return outcome


def scrubbed(outcome: AgentOutcome, scrubber: Scrubber) -> AgentOutcome:
    """The outcome with every secret the scrubber knows removed from its text and error."""
    if outcome.text is not None:
        outcome.text = scrubber.text(outcome.text)
    if outcome.structured is not None:
        outcome.structured = scrubber.value(outcome.structured)
    if outcome.deferred is not None:
        outcome.deferred = replace(outcome.deferred, input=scrubber.text(outcome.deferred.input))
    if outcome.error is not None:
        outcome.error = JobErrorInfo(
            code=outcome.error.code, message=scrubber.text(outcome.error.message)
        )
    return outcome


def _size(job: Job, outcome: AgentOutcome) -> int:
    """A generous estimate of the terminal item's size in bytes, all of it inline."""
    kept = job.model_dump(mode="json", exclude={"prompt", "system_prompt", "result"})
    other = json.dumps([kept, outcome.text, outcome.structured], ensure_ascii=False)
    return len(other.encode()) + 1024  # + usage, error, names
