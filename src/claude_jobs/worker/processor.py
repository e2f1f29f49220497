"""A job's life in the worker: claim it, run the agent, record how it ended.

For one SQS message (`{"job_id", "tenant_id"}`):

1. Load the job. Unknown, terminal, or running under a live lease → skip: the model is not
   called (a redelivery never runs a job twice).
2. Claim it: one conditional write `queued|running(lease expired) → running` on the version
   just read, adding one attempt and a lease until the deadline (+ margin). A job that has
   already used `max_attempts` claims ends `failed` (`attempts_exhausted`) instead. A queued
   job whose tenant already runs `tenant_max_running` jobs is not claimed (the same write's
   condition): it is `deferred`, unchanged, and its message offered again later.
3. Run the agent in a fresh sandbox, with a per-job proxy token, until it ends, its deadline
   passes (→ `timed_out`) or a cancel is requested (→ `cancelled`). Then end every process the
   agent started (`containment.py`); any that cannot be ended makes the worker retire its
   execution environment once the job is recorded (`Processed.retire`). The token carries
   the job's spending limit, min(`max_budget_usd`, the deployment's `max_budget_usd_cap`): the
   proxy meters every call and refuses calls once the limit is spent.
4. Record the terminal state in one conditional write (only while our claim holds): result
   (inline ≤ 256 KiB, else in S3), usage, error; the prompt texts are removed from the item.
   The recorded usage is the CLI's, each token count and the cost raised to the proxy's
   metered figure where that is higher (`with_metered_usage`): so a stopped job records what
   it used, and a finished one includes the agent's own direct calls.

Agent-side failures (API errors, budget, turns, invalid output) end the job: the message is
done. Infrastructure faults (DynamoDB, S3, Secrets Manager, the proxy, starting the CLI) raise
after releasing the claim (`running → queued`) so that SQS redelivers the message; the claim
that reaches `max_attempts` records `failed` (`attempts_exhausted`) instead of releasing.
"""

from __future__ import annotations

import time
from typing import Any

from ..documents import OUTPUT_SCHEMA, PROMPT, SYSTEM_PROMPT
from ..errors import TenantAtShareError, TransitionConflictError
from ..job_message import JobMessage
from ..models import Job, JobErrorInfo, JobStatus, Usage
from ..observability import deferred_logger
from .agent import CANCELLED, TIMED_OUT
from .artifacts import Collected
from .claims import claim, exhaust_unclaimed, release, requeue, skip_reason, spend_journal
from .containment import ProcessInfo
from .mcp_jobs import close_servers, open_servers
from .ports import MIN_RUN_SECONDS, AgentOutcome, WorkerPorts
from .processed import Action, Processed, WorkerFault, skipped
from .recording import at, record, scrubbed, with_metered_usage
from .run import drop_workspace, retire_reason, run_agent, spending_limit
from .scrub import Scrubber
from .segments import Margins, add_usage, plan
from .waiting import await_approval, pending_of
from .warm import WarmCli, WarmProfile
from .warm_pool import WarmPool

__all__ = ["MIN_RUN_SECONDS", "JobProcessor", "Processed", "WorkerFault", "with_metered_usage"]

log = deferred_logger()  # Powertools' structured logger


class JobProcessor:
    """The flow of one jobs-queue message (above); its steps are in `claims`, `run`,
    `recording` and `warm_pool`, its dependencies in one `WorkerPorts`."""

    def __init__(self, ports: WorkerPorts) -> None:
        self.ports = ports
        self._scrubber = Scrubber(ports.known_secrets)
        #: Warm start (warm.py): the CLI started for the next job.
        self.warm_pool = WarmPool(ports, self._scrubber)
        #: Long jobs: end-of-invocation margins (segments.py).
        self._margins = Margins(record=ports.margin_seconds, boundary=ports.boundary_seconds)

    def process_message(
        self, message: JobMessage, remaining_seconds: float, measured_at: float | None = None
    ) -> Processed:
        """One jobs-queue message, already parsed (a malformed one is dropped before: the
        worker function's parser)."""
        return self.process(message.job_id, remaining_seconds, measured_at)

    def process(
        self, job_id: str, remaining_seconds: float, measured_at: float | None = None
    ) -> Processed:
        """Run (or skip) one job with `remaining_seconds` of the invocation left, as read at
        `measured_at` (monotonic; default: now). When the run stops at the invocation's end,
        what passes after that moment (the job's read, its claim, the run's preparation) comes
        off its stops."""
        ports = self.ports
        job = ports.jobs.get(job_id)
        skip = skip_reason(ports, job)
        if job is None or skip:
            log.info("job %s skipped: %s", job_id, skip)
            retry_in = None
            if skip == "leased" and job is not None:
                retry_in = max((job.lease_until or 0) - ports.clock(), 0.0) + 1
            return Processed(job_id, skipped(skip), job.status if job else None, retry_in=retry_in)
        # Segments need the session to resume from; without one a job runs in one invocation.
        segmentable = ports.sessions is not None and job.session_id is not None
        # the run's limits count from when the time left was read, not from the run's start
        planned_at = time.monotonic() if measured_at is None else measured_at
        run = plan(job, at(ports.clock()), remaining_seconds, self._margins, segmentable)
        deadline = run.run_seconds
        if deadline < ports.min_run_seconds and not run.expired:
            raise WorkerFault(f"only {remaining_seconds:.0f} s of Lambda time left: retry later")
        if job.attempts >= ports.settings.max_attempts:
            return exhaust_unclaimed(ports, job)
        try:
            claimed = claim(ports, job, deadline)
        except TenantAtShareError:
            # Its tenant runs its share already: the job waits, unchanged (no attempt, no
            # fault); the message comes back later and other tenants' messages flow meanwhile.
            log.info("job %s deferred: its tenant runs its share of jobs", job_id)
            return Processed(job_id, Action.DEFERRED, job.status)
        except TransitionConflictError as conflict:
            current = conflict.current if isinstance(conflict.current, Job) else None
            log.info("job %s was taken meanwhile (%s)", job_id, current and current.status)
            return Processed(job_id, Action.SKIPPED_CONFLICT, current.status if current else None)
        if run.expired:  # its absolute deadline passed while it waited between segments
            outcome = AgentOutcome(
                "timed_out",
                usage=claimed.usage or Usage(),  # what its earlier segments used
                error=JobErrorInfo(
                    code=TIMED_OUT,
                    message=f"the job did not finish within its deadline of "
                    f"{claimed.options.timeout_seconds} s and was stopped",
                ),
            )
            status = record(ports, self._scrubber, claimed, outcome, None)
            return Processed(job_id, Action.RAN, status)
        return self._run_claimed(
            claimed, deadline, run.yield_after, planned_at if run.invocation_bound else None
        )

    def _run_claimed(
        self,
        job: Job,
        deadline: float,
        yield_after: float | None = None,
        planned_at: float | None = None,
    ) -> Processed:
        """Run a claimed job's agent and record how it ended (a segment: re-queue it). An
        infrastructure fault releases the job and raises WorkerFault."""
        ports = self.ports
        token: str | None = None
        warm: WarmCli | None = None
        leftovers: list[ProcessInfo] = []
        collected: list[Collected] = []  # files: the artifacts of the run (issue 13)
        # Progress events (progress.py): `running` now; the agent's messages; the ending
        # before the job's terminal write.
        # A later segment of a long job numbers its status events and continues after the
        # events its earlier segments stored.
        progress = ports.progress.open(
            job, self._scrubber, segment=job.segments if job.segments > 1 else None
        )
        try:
            if job.cancel_requested:  # asked to stop while no worker held it
                outcome = AgentOutcome(
                    "cancelled",
                    error=JobErrorInfo(code=CANCELLED, message="cancelled on request"),
                )
            else:
                # Before starting: a missing key is an infrastructure fault (Bedrock: no key).
                key = ports.key() if ports.key is not None else None
                job = ports.documents.load(job, (PROMPT, SYSTEM_PROMPT, OUTPUT_SCHEMA))
                ports.proxy.start()
                warm = self.warm_pool.take(WarmProfile.of(job))
                limit = spending_limit(ports, job)
                models = [ports.settings.cli_model(job.options.model)]  # the job's own
                # Its spend journal: a worker that dies mid-job leaves what it may have spent.
                journal = spend_journal(ports, job)
                if warm is not None:  # its token, bound to this job only now
                    token = warm.token
                    ports.proxy.assign(
                        token, job.job_id, limit_usd=limit, models=models, journal=journal
                    )
                else:
                    token = ports.proxy.issue(
                        job.job_id, limit_usd=limit, models=models, journal=journal
                    )
                # MCP servers: the job's credentials at the broker, for its token only.
                opened = open_servers(ports, job, token)
                credentials = opened if isinstance(opened, list) else []
                scrubber = self._scrubber.with_secrets(key, token, *credentials)
                progress.use_secrets(key, token, *credentials)
                progress.use_meter(lambda: ports.proxy.metered(token) if token else None)
                if isinstance(opened, JobErrorInfo):  # the agent does not start
                    outcome = AgentOutcome("failed", error=opened)
                else:
                    outcome = self._run(
                        job,
                        deadline,
                        token,
                        leftovers,
                        yield_after,
                        planned_at,
                        progress,
                        collected,
                        warm,
                    )
                outcome = scrubbed(outcome, scrubber)
        except Exception as exc:
            progress.close()  # the job is given back (or ended) without a run's ending
            retire = retire_reason(job, leftovers)
            if release(ports, self._scrubber, job, exc):
                return Processed(job.job_id, Action.EXHAUSTED, JobStatus.FAILED, retire=retire)
            raise WorkerFault(f"job {job.job_id}: {type(exc).__name__}", retire=retire) from exc
        finally:
            if warm is not None:
                warm.resources.close()  # a no-op once the run has ended it
            if token is not None:
                close_servers(ports, job, token)  # its credentials are used no more
                ports.proxy.revoke(token)
        # Long jobs: the usage adds up across segments.
        outcome.usage = add_usage(job.usage, outcome.usage)
        retire = retire_reason(job, leftovers)
        if outcome.ending == "segment":
            progress.close()  # not the job's end: the next segment goes on with its events
            return requeue(ports, job, outcome, retire)
        if outcome.ending == "deferred" and outcome.deferred is not None:
            # Approvals (waiting.py): the job waits for a person, holding nothing.
            pending = pending_of(ports, job, outcome.deferred, self._scrubber)
            return await_approval(ports, job, outcome, pending, progress, retire)
        # The agent has run: from here on nothing may give the job back for another run.
        progress.finish(outcome.ending, outcome.usage)
        status = record(ports, self._scrubber, job, outcome, retire, collected)
        if job.segments > 1 or job.approval_waits:
            drop_workspace(ports, job)
        return Processed(job.job_id, Action.RAN, status, retire=retire)

    def _run(
        self,
        job: Job,
        deadline: float,
        token: str,
        leftovers: list[ProcessInfo],
        yield_after: float | None,
        planned_at: float | None,
        progress: Any,
        collected: list[Collected],
        warm: WarmCli | None,
    ) -> AgentOutcome:
        """The agent's run, its usage raised to the proxy's metered figure."""
        ports = self.ports
        outcome = run_agent(
            ports,
            job,
            deadline,
            token,
            leftovers,
            yield_after,
            planned_at,
            progress.message,
            collected,
            warm,
        )
        if not ports.proxy.alive:
            raise WorkerFault("the key proxy stopped during the run")
        metered = ports.proxy.metered(token)
        if metered is not None:
            outcome = with_metered_usage(outcome, metered)
        return outcome
