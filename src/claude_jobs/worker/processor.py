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

import contextlib
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..documents import (
    ARTIFACTS_PREFIX,
    OUTPUT_SCHEMA,
    PROMPT,
    PROMPTS,
    SYSTEM_PROMPT,
    JobDocuments,
)
from ..errors import JobNotFoundError, TenantAtShareError, TransitionConflictError
from ..job_message import JobMessage
from ..models import INLINE_RESULT_BYTES, Job, JobErrorInfo, JobResult, JobStatus, Usage
from ..observability import deferred_logger
from ..ports import AgentRunner, JobRepository, KeyProxy, Transition
from ..resources import WORKER_DEADLINE_MARGIN_SECONDS
from ..settings import Settings
from .agent import (
    BUDGET_EXCEEDED,
    CANCELLED,
    MAX_TURNS,
    TIMED_OUT,
    UPSTREAM_ERROR,
    AgentOutcome,
    AgentRequest,
)
from .artifacts import OUT_DIR, ArtifactLimits, ArtifactSink, Collected, collect_artifacts
from .containment import JobScope, ProcessInfo, ProcessSweeper, become_subreaper
from .isolation import (
    AgentIdentity,
    BedrockCli,
    IdentityPool,
    agent_environment,
    bundled_cli,
    make_non_dumpable,
)
from .metering import Metered
from .process_watch import ProcessWatch
from .progress import NoProgress, ProgressEvents
from .sandbox import Sandbox
from .scrub import Scrubber
from .segments import (
    CONTINUE_PROMPT,
    Margins,
    add_usage,
    plan,
    resumes_own_run,
    spent,
    turns_left,
)
from .sessions import SESSION_TOO_LARGE, AgentSession, SessionKeeper, SessionTooLargeError
from .warm import WarmCli, WarmProfile
from .workspace import WorkspaceStore, WorkspaceTooLargeError
from .workspace import limits as workspace_limits
from .workspace import restore as restore_workspace
from .workspace import save as save_workspace

log = deferred_logger()  # Powertools' structured logger

ATTEMPTS_EXHAUSTED = "attempts_exhausted"
OUTPUT_UNSTORABLE = "output_unstorable"
#: Tries to store a run's output before the job ends `output_unstorable`.
RECORD_ATTEMPTS = 3
INPUT_UNAVAILABLE = "input_unavailable"
#: Long jobs: the working directory is over a limit and cannot go on to the next segment.
WORKSPACE_TOO_LARGE = "workspace_too_large"

#: DynamoDB's item limit is 400 KB; keep the terminal item safely below it.
MAX_ITEM_BYTES = 380_000
#: The shortest run worth starting; with less Lambda time left the message is retried.
MIN_RUN_SECONDS = 5.0

InputFetcher = Callable[[Job, Path], Sequence[Path]]


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
    #: "ran", "skipped:<why>", "exhausted", "malformed", "deferred" (its tenant runs its
    #: share of jobs: the message is to be offered again later), or "segmented" (a long job
    #: re-queued at its segment's end: a new message is to be sent for its next segment)
    action: str
    status: JobStatus | None = None
    #: Why the execution environment must not serve another job (a process of this one could
    #: not be ended), or None.
    retire: str | None = None
    #: Seconds after which this message is to be offered again rather than deleted: the job
    #: runs under another worker's live lease ("skipped:leased"); if that worker dies, this
    #: message is the one that takes the job over once the lease has lapsed.
    retry_in: float | None = None


class JobProcessor:
    def __init__(
        self,
        repo: JobRepository,
        documents: JobDocuments,
        runner: AgentRunner,
        proxy: KeyProxy,
        key: Callable[[], str] | None,
        settings: Settings,
        identities: IdentityPool,
        *,
        sweeper: ProcessSweeper | None = None,
        inputs: InputFetcher | None = None,
        artifacts: ArtifactSink | None = None,
        progress: ProgressEvents | NoProgress | None = None,
        known_secrets: Sequence[str] = (),
        margin_seconds: float = WORKER_DEADLINE_MARGIN_SECONDS,
        sandbox_dir: str | None = None,
        min_run_seconds: float = MIN_RUN_SECONDS,
        clock: Callable[[], float] = time.time,
        sessions: SessionKeeper | None = None,
        boundary_seconds: float = 60.0,
        workspaces: WorkspaceStore | None = None,
    ) -> None:
        self._sessions = sessions
        #: Long jobs: the working directory carried between segments (workspace.py).
        self._workspaces = workspaces
        #: Long jobs: end-of-invocation margins (segments.py).
        self._margins = Margins(record=margin_seconds, boundary=boundary_seconds)
        self._repo = repo
        self._documents = documents
        self._runner = runner
        self._proxy = proxy
        self._key = key
        self._settings = settings
        self._identities = identities
        self._sweeper = sweeper or ProcessSweeper()
        self._inputs = inputs
        self._artifacts = artifacts
        self._progress = progress or NoProgress()
        self._scrubber = Scrubber(known_secrets)
        self._margin = margin_seconds
        self._sandbox_dir = sandbox_dir
        self._min_run = min_run_seconds
        self._clock = clock
        #: Warm start (warm.py): the CLI started for the next job, and the options it gets.
        self._warm: WarmCli | None = None
        self._next_profile: WarmProfile | None = None

    # ------------------------------------------------------------ entry point

    def process_message(self, body: str, remaining_seconds: float) -> Processed:
        try:
            job_id = JobMessage.model_validate_json(body).job_id
        except ValidationError:
            log.error("dropping a malformed jobs-queue message")
            return Processed(None, "malformed")
        return self.process(job_id, remaining_seconds)

    def process(self, job_id: str, remaining_seconds: float) -> Processed:
        job = self._repo.get(job_id)
        skip = self._skip_reason(job)
        if job is None or skip:
            log.info("job %s skipped: %s", job_id, skip)
            retry_in = None
            if skip == "leased" and job is not None:
                retry_in = max((job.lease_until or 0) - self._clock(), 0.0) + 1
            return Processed(
                job_id, f"skipped:{skip}", job.status if job else None, retry_in=retry_in
            )
        # Segments need the session to resume from; without one a job runs in one invocation.
        segmentable = self._sessions is not None and job.session_id is not None
        planned_at = time.monotonic()  # the run's limits count from here, not from its start
        run = plan(job, _at(self._clock()), remaining_seconds, self._margins, segmentable)
        deadline = run.run_seconds
        if deadline < self._min_run and not run.expired:
            raise WorkerFault(f"only {remaining_seconds:.0f} s of Lambda time left: retry later")
        if job.attempts >= self._settings.max_attempts:
            return self._exhaust_unclaimed(job)
        try:
            claimed = self._claim(job, deadline)
        except TenantAtShareError:
            # Its tenant runs its share already: the job waits, unchanged (no attempt, no
            # fault); the message comes back later and other tenants' messages flow meanwhile.
            log.info("job %s deferred: its tenant runs its share of jobs", job_id)
            return Processed(job_id, "deferred", job.status)
        except TransitionConflictError as conflict:
            current = conflict.current if isinstance(conflict.current, Job) else None
            log.info("job %s was taken meanwhile (%s)", job_id, current and current.status)
            return Processed(job_id, "skipped:conflict", current.status if current else None)
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
            return Processed(job_id, "ran", self._record(claimed, outcome, None))
        return self._run_claimed(claimed, deadline, run.yield_after, planned_at)

    # ------------------------------------------------------------ claim

    def _skip_reason(self, job: Job | None) -> str:
        if job is None:
            return "unknown"
        if job.status.is_terminal:
            return "terminal"
        if job.status is JobStatus.RUNNING and (job.lease_until or 0) > self._clock():
            return "leased"
        return ""

    def _claim(self, job: Job, deadline: float) -> Job:
        now = self._clock()
        fields: dict[str, Any] = {
            "lease_until": int(now + deadline + self._margin) + 1,
            # Long jobs: one more run; the deadline is fixed at the first start.
            "segments": job.segments + 1,
            "continuing": None,
        }
        if job.deadline_at is None:
            fields["deadline_at"] = _at(now + job.options.timeout_seconds)
        if job.started_at is None or not job.continuing:
            fields["started_at"] = _at(now)
        return self._repo.transition(
            Transition(
                job_id=job.job_id,
                from_=[job.status],
                to=JobStatus.RUNNING,
                set_fields=fields,
                # A re-queued segment's claim is not an attempt: attempts count faults only.
                add_attempts=0 if job.continuing else 1,
                remove_fields=["error"],
                expected_version=job.version,
                running_share=self._settings.tenant_max_running,
            )
        )

    def _exhaust_unclaimed(self, job: Job) -> Processed:
        error = JobErrorInfo(
            code=ATTEMPTS_EXHAUSTED,
            message=f"the job was started {job.attempts} times without finishing "
            "(the worker stopped before recording a result)",
        )
        try:
            ended = self._repo.transition(
                Transition(
                    job_id=job.job_id,
                    from_=[job.status],
                    to=JobStatus.FAILED,
                    set_fields={
                        "finished_at": _at(self._clock()),
                        "error": error,
                        "lease_until": None,
                        "documents": _without_prompts(job),
                    },
                    remove_fields=PROMPTS,
                    expected_version=job.version,
                )
            )
        except TransitionConflictError:
            return Processed(job.job_id, "skipped:conflict")
        self._documents.discard_prompts(job)
        log.warning("job %s failed: %s", job.job_id, ATTEMPTS_EXHAUSTED)
        return Processed(job.job_id, "exhausted", ended.status)

    # ------------------------------------------------------------ run

    def _run_claimed(
        self,
        job: Job,
        deadline: float,
        yield_after: float | None = None,
        planned_at: float | None = None,
    ) -> Processed:
        token: str | None = None
        warm: WarmCli | None = None
        leftovers: list[ProcessInfo] = []
        collected: list[Collected] = []  # files: the artifacts of the run (issue 13)
        # Progress events (progress.py): `running` now; the agent's messages; the ending
        # before the job's terminal write.
        # A later segment of a long job numbers its status events and continues after the
        # events its earlier segments stored.
        progress = self._progress.open(
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
                key = self._key() if self._key is not None else None
                job = self._documents.load(job, (PROMPT, SYSTEM_PROMPT, OUTPUT_SCHEMA))
                self._proxy.start()
                profile = WarmProfile.of(job)
                self._next_profile = profile or self._next_profile
                warm = self._take_warm(profile)
                models = [self._settings.cli_model(job.options.model)]  # the job's own
                if warm is not None:  # its token, bound to this job only now
                    token = warm.token
                    self._proxy.assign(
                        token, job.job_id, limit_usd=self._spending_limit(job), models=models
                    )
                else:
                    token = self._proxy.issue(
                        job.job_id, limit_usd=self._spending_limit(job), models=models
                    )
                scrubber = self._scrubber.with_secrets(key, token)
                progress.use_secrets(key, token)
                progress.use_meter(lambda: self._proxy.metered(token) if token else None)
                outcome = self._run_agent(
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
                if not self._proxy.alive:
                    raise WorkerFault("the key proxy stopped during the run")
                metered = self._proxy.metered(token)
                if metered is not None:
                    outcome = with_metered_usage(outcome, metered)
                outcome = _scrubbed(outcome, scrubber)
        except Exception as exc:
            progress.close()  # the job is given back (or ended) without a run's ending
            retire = _retire_reason(job, leftovers)
            if self._release(job, exc):
                return Processed(job.job_id, "exhausted", JobStatus.FAILED, retire=retire)
            raise WorkerFault(f"job {job.job_id}: {type(exc).__name__}", retire=retire) from exc
        finally:
            if warm is not None:
                warm.resources.close()  # a no-op once the run has ended it
            if token is not None:
                self._proxy.revoke(token)
        # Long jobs: the usage adds up across segments.
        outcome.usage = add_usage(job.usage, outcome.usage)
        if outcome.ending == "segment":
            progress.close()  # not the job's end: the next segment goes on with its events
            return self._requeue(job, outcome, _retire_reason(job, leftovers))
        # The agent has run: from here on nothing may give the job back for another run.
        progress.finish(outcome.ending, outcome.usage)
        status = self._record(job, outcome, _retire_reason(job, leftovers), collected)
        if job.segments > 1 and self._workspaces is not None:
            self._drop_workspace(job)
        return Processed(job.job_id, "ran", status, retire=_retire_reason(job, leftovers))

    def _drop_workspace(self, job: Job) -> None:
        """The job has ended: its carried working directory is not needed any more (what a
        failed delete leaves expires with the job's documents)."""
        assert self._workspaces is not None
        try:
            self._workspaces.delete(job.tenant_id, job.job_id)
        except Exception as exc:
            log.warning("job %s: workspace not deleted (%s)", job.job_id, type(exc).__name__)

    def _requeue(self, job: Job, outcome: AgentOutcome, retire: str | None) -> Processed:
        """A segment ended before the invocation does: record the usage so far and give the
        job back to the queue (not a fault: its next claim adds no attempt); the function sends
        the message of its next segment. Only while our claim holds (a cancel meanwhile is
        seen by the next segment's claim: a cancelled job is not queued)."""
        try:
            requeued = self._repo.transition(
                Transition(
                    job_id=job.job_id,
                    from_=[JobStatus.RUNNING],
                    to=JobStatus.QUEUED,
                    set_fields={"usage": outcome.usage, "continuing": True, "lease_until": None},
                    expected_attempts=job.attempts,
                )
            )
        except TransitionConflictError as conflict:
            current = conflict.current if isinstance(conflict.current, Job) else None
            return Processed(job.job_id, "skipped:conflict", current.status if current else None)
        except Exception as exc:  # the lease expires; the message is retried and re-claims
            raise WorkerFault(f"job {job.job_id}: its segment could not be recorded") from exc
        log.info("job %s: segment %s ended; re-queued", job.job_id, job.segments)
        return Processed(job.job_id, "segmented", requeued.status, retire=retire)

    def _spending_limit(self, job: Job) -> float:
        cap = self._settings.max_budget_usd_cap
        budget = job.options.max_budget_usd
        limit = cap if budget is None else min(budget, cap)
        return max(limit - spent(job), 0.0)  # long jobs: what earlier segments left

    def _run_agent(
        self,
        job: Job,
        deadline: float,
        token: str,
        leftovers: list[ProcessInfo],
        yield_after: float | None = None,
        planned_at: float | None = None,
        on_message: Callable[[Any], None] = lambda message: None,
        collected: list[Collected] | None = None,
        warm: WarmCli | None = None,
    ) -> AgentOutcome:
        make_non_dumpable()
        become_subreaper()
        with contextlib.ExitStack() as held:
            if warm is not None:  # the warm CLI's sandbox, identity and scope are the job's
                held.enter_context(warm.resources)
                identity, sandbox, scope = warm.identity, warm.sandbox, warm.scope
            else:
                identity = held.enter_context(self._identities.lease())
                sandbox = held.enter_context(Sandbox(job.job_id, identity, self._sandbox_dir))
                scope = self._sweeper.scope(identity.uid)
            prepared: list[AgentSession] = []  # the run's session, saved after the sweep
            try:
                outcome = self._run_in(
                    job,
                    deadline,
                    token,
                    identity,
                    sandbox,
                    scope,
                    yield_after,
                    planned_at,
                    on_message,
                    warm,
                    prepared,
                )
            finally:
                # Before the sandbox goes: nothing of the job may run on (or write into it).
                sweep = self._sweeper.sweep(scope)
                if sweep.survivors:
                    leftovers.extend(sweep.survivors)
                    self._identities.quarantine(identity.uid)
                # Sessions: what the mirror missed, read from the agent's transcript only now
                # that nothing of the job runs (never raises).
                if self._sessions is not None:
                    for session in prepared:
                        self._sessions.save(session)
            outcome = _session_checked(outcome, prepared)
            if outcome.ending == "segment":
                # Long jobs: the working directory goes on with the job (out/ included: its
                # artifacts are collected when the job ends).
                return self._carry_workspace(job, sandbox, outcome)
            # Files: what the agent left under out/, now that nothing of it runs.
            if self._artifacts is not None and collected is not None:
                collected.append(self._collect(job, sandbox))
            return outcome

    def _carry_workspace(self, job: Job, sandbox: Sandbox, outcome: AgentOutcome) -> AgentOutcome:
        """Store the segment's working directory for the next one; a store fault raises (the
        segment is retried from the session), a directory over a limit ends the job."""
        if self._workspaces is None:
            return outcome
        settings = self._settings
        bounds = dataclasses.replace(
            workspace_limits(settings.workspace_max_files, settings.workspace_max_bytes),
            owner=_owner_of(sandbox),
        )
        try:
            notes = save_workspace(
                self._workspaces, job.tenant_id, job.job_id, sandbox.work_dir, bounds
            )
        except WorkspaceTooLargeError as exc:
            log.warning("job %s: %s", job.job_id, exc)
            return AgentOutcome(
                "failed",
                usage=outcome.usage,
                error=JobErrorInfo(code=WORKSPACE_TOO_LARGE, message=str(exc)[:2000]),
            )
        for note in notes:
            log.info("job %s: workspace: %s", job.job_id, note)
        return outcome

    def _collect(self, job: Job, sandbox: Sandbox) -> Collected:
        """Upload the job's artifacts; never raises (the agent has run: its result is
        recorded whatever happens to its files)."""
        sink = self._artifacts
        assert sink is not None
        limits = ArtifactLimits(
            self._settings.artifacts_max_count,
            self._settings.artifacts_max_bytes,
            owner=_owner_of(sandbox),
        )
        try:
            return collect_artifacts(
                sandbox.work_dir,
                limits,
                lambda path, body, size: sink.put(job.tenant_id, job.job_id, path, body, size),
            )
        except Exception as exc:
            log.warning("job %s: artifacts not collected: %s", job.job_id, type(exc).__name__)
            return Collected(notes=[f"the artifacts could not be collected ({type(exc).__name__})"])

    def _run_in(
        self,
        job: Job,
        deadline: float,
        token: str,
        identity: AgentIdentity,
        sandbox: Sandbox,
        scope: JobScope,
        yield_after: float | None = None,
        planned_at: float | None = None,
        on_message: Callable[[Any], None] = lambda message: None,
        warm: WarmCli | None = None,
        prepared: list[AgentSession] | None = None,
    ) -> AgentOutcome:
        # Long jobs: the turns (and budget) earlier segments left.
        options = job.options
        if job.usage is not None:
            if turns_left(job) <= 0:
                return AgentOutcome(
                    "failed",
                    usage=Usage(),
                    error=JobErrorInfo(
                        code=MAX_TURNS,
                        message=f"the job used its {options.max_turns} turns",
                    ),
                )
            left = max(self._spending_limit(job), 1e-9)
            options = options.model_copy(
                update={
                    "max_turns": turns_left(job),
                    "max_budget_usd": None if options.max_budget_usd is None else left,
                }
            )
        # Long jobs: a later segment goes on in the working directory the last one left (a
        # store fault raises before the agent starts: the segment is retried).
        restored = (
            job.segments > 1
            and self._workspaces is not None
            and restore_workspace(
                self._workspaces, job.tenant_id, job.job_id, sandbox.work_dir, sandbox.give
            )
        )
        # Files: where the agent leaves its artifacts (made before the inputs are placed, so a
        # trigger's object named `out` gets another name).
        if self._artifacts is not None:
            out_dir = sandbox.work_dir / OUT_DIR
            if not restored:
                out_dir.mkdir(mode=0o700)
                sandbox.give(out_dir)
        # A later segment's working directory holds its inputs as the agent left them.
        if job.inputs and self._inputs is not None and not restored:
            problem = self._place_inputs(job, sandbox)
            if problem is not None:
                return AgentOutcome(
                    "failed", error=JobErrorInfo(code=INPUT_UNAVAILABLE, message=problem)
                )
        model = self._settings.cli_model(job.options.model)
        env = self._agent_env(sandbox, token, model)
        # Sessions: the job's conversation, materialised in its sandbox (a store failure is an
        # infrastructure fault, before the agent starts).
        try:
            session = self._sessions.prepare(job, sandbox) if self._sessions is not None else None
        except SessionTooLargeError as exc:  # terminal: a retry would find it as large
            return AgentOutcome(
                "failed", error=JobErrorInfo(code=SESSION_TOO_LARGE, message=str(exc)[:2000])
            )
        if (
            warm is not None
            and warm.session_id is not None
            and session is not None
            and not session.resume
            and self._sessions is not None
        ):  # a fresh session, run by the CLI started under an id of its own
            session = self._sessions.started_as(session, warm.session_id, sandbox)
        resuming = session is not None and session.resume and resumes_own_run(job)
        if planned_at is not None and yield_after is not None:
            # A segment's stops are points in the invocation: what preparing the run took
            # (a cold start, the session's load) comes off them.
            taken = time.monotonic() - planned_at
            deadline = max(deadline - taken, 0.1)
            yield_after = max(yield_after - taken, 0.0)
        request = AgentRequest(
            session=session,
            yield_after_seconds=yield_after,
            job_id=job.job_id,
            prompt=CONTINUE_PROMPT if resuming else (job.prompt or ""),
            system_prompt=job.system_prompt,
            options=options,
            model=model,
            cli=bundled_cli(),
            cwd=sandbox.work_dir,
            env=env,
            deadline_seconds=deadline,
            identity=identity,
            should_stop=lambda: self._cancel_requested(job),
            on_started=lambda pid: self._sweeper.started(scope, pid),
            on_message=on_message,
            warm=warm.process if warm is not None else None,
        )
        if session is not None and prepared is not None:
            prepared.append(session)  # saved after the sweep (`_run_agent`)
        # Fork chains (issue 20): zombies reaped and processes counted while the agent runs.
        watch = ProcessWatch(
            self._sweeper,
            scope,
            self._settings.agent_max_processes,
            self._settings.process_watch_seconds,
        )
        with watch:
            outcome = self._runner.run(replace(request, should_stop=_or(watch, request)))
        if watch.tripped:
            return AgentOutcome("failed", usage=outcome.usage, error=watch.error())
        return outcome

    def _agent_env(self, sandbox: Sandbox, token: str, model: str) -> dict[str, str]:
        return agent_environment(
            home=sandbox.home,
            config_dir=sandbox.config_dir,
            tmp_dir=sandbox.tmp_dir,
            base_url=self._proxy.url,
            token=token,
            max_retries=self._settings.agent_max_retries,
            bedrock=BedrockCli(self._settings.aws_region, model)
            if self._settings.uses_bedrock
            else None,
        )

    # ------------------------------------------------------------ warm start (warm.py)

    def warm_up(self, *, settle: bool = False) -> None:
        """Start the CLI for the next job, unless one that still fits is ready (WARM_START);
        `settle`: wait until it has booted (Lambda: the environment is frozen next). Never
        raises: without a warm CLI the next job starts cold."""
        if not self._settings.warm_start:
            return
        profile = self._next_profile or WarmProfile.default()
        warm = self._warm
        if warm is not None:
            if warm.profile == profile and warm.usable(self._settings.warm_start_max_age_seconds):
                return
            self.discard_warm()
        try:
            self._warm = warm = self._start_warm(profile)
        except Exception as exc:
            log.warning("no warm start: %s", self._scrubber.text(f"{type(exc).__name__}: {exc}"))
            return
        if settle:
            waited = warm.process.settle(self._settings.warm_start_settle_seconds)
            log.info("warm CLI started (pid %s, ready after %.2f s)", warm.process.pid, waited)

    def discard_warm(self) -> None:
        """Stop the warm CLI, if any, and free what it held."""
        warm, self._warm = self._warm, None
        if warm is not None:
            try:
                warm.resources.close()
            finally:
                self._proxy.revoke(warm.token)

    def _take_warm(self, profile: WarmProfile | None) -> WarmCli | None:
        """The warm CLI for a job of `profile`, handed over; one that does not fit is stopped
        first (nothing started for another launch stays while the job's agent runs)."""
        warm = self._warm
        if warm is None:
            return None
        if (
            profile is None
            or warm.profile != profile
            or not warm.usable(self._settings.warm_start_max_age_seconds)
        ):
            self.discard_warm()
            return None
        self._warm = None
        log.info("warm start: the job runs in the CLI started ahead (pid %s)", warm.process.pid)
        return warm

    def _start_warm(self, profile: WarmProfile) -> WarmCli:
        from .agent import WarmProcess

        make_non_dumpable()
        become_subreaper()
        self._proxy.start()
        resources = contextlib.ExitStack()
        token: str | None = None
        try:
            identity = resources.enter_context(self._identities.lease())
            sandbox = resources.enter_context(Sandbox("warm", identity, self._sandbox_dir))
            scope = self._sweeper.scope(identity.uid)
            # Bound to no job, and it may spend nothing until a job adopts it.
            token = self._proxy.issue("", limit_usd=0.0)
            options = profile.options()
            model = self._settings.cli_model(options.model)
            session_id = (
                str(uuid.uuid4()) if profile.session and self._sessions is not None else None
            )
            process = WarmProcess.start(
                AgentRequest(
                    session=self._sessions.unbound(session_id)
                    if self._sessions is not None and session_id is not None
                    else None,
                    job_id="",
                    prompt="",
                    system_prompt=None,
                    options=options,
                    model=model,
                    cli=bundled_cli(),
                    cwd=sandbox.work_dir,
                    env=self._agent_env(sandbox, token, model),
                    deadline_seconds=0,
                    identity=identity,
                )
            )
            self._sweeper.started(scope, process.pid)
            resources.callback(self._end_warm, process, scope, identity)
        except BaseException:
            resources.close()
            if token is not None:
                self._proxy.revoke(token)
            raise
        return WarmCli(profile, identity, sandbox, scope, token, process, resources, session_id)

    def _end_warm(self, process: Any, scope: JobScope, identity: AgentIdentity) -> None:
        """Stop a warm CLI and whatever of its scope runs (a no-op sweep after a job's own)."""
        process.stop()
        sweep = self._sweeper.sweep(scope)
        if sweep.survivors:
            log.error("a warm CLI's processes could not be ended: %s", len(sweep.survivors))
            self._identities.quarantine(identity.uid)

    def _place_inputs(self, job: Job, sandbox: Sandbox) -> str | None:
        from ..triggers.inputs import InputUnavailableError

        assert self._inputs is not None
        try:
            for path in self._inputs(job, sandbox.work_dir):
                sandbox.give(path)
        except InputUnavailableError as exc:
            return str(exc)
        return None

    def _cancel_requested(self, job: Job) -> bool:
        """Polled every few seconds while the agent runs: a few attributes, eventually
        consistent (a cancel seen a moment late only stops the run a moment later; the result
        is recorded by a write conditional on our claim either way)."""
        control = self._repo.control(job.job_id)
        return (
            control is None
            or control.cancel_requested
            or control.status is not JobStatus.RUNNING
            or control.attempts != job.attempts  # another worker took the job over
        )

    # ------------------------------------------------------------ record

    def _record(
        self,
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
                return self._finish(job, outcome, collected)
            except Exception as exc:
                problem = exc
                log.warning(
                    "job %s: the output could not be stored: %s",
                    job.job_id,
                    self._scrubber.text(f"{type(exc).__name__}: {exc}")[:500],
                )
        error = JobErrorInfo(
            code=OUTPUT_UNSTORABLE,
            message=f"the job's output could not be stored ({type(problem).__name__}); "
            "the job is not run again",
        )
        try:
            ended = self._repo.transition(
                Transition(
                    job_id=job.job_id,
                    from_=[JobStatus.RUNNING],
                    to=JobStatus.FAILED,
                    set_fields={
                        "finished_at": _at(self._clock()),
                        "usage": outcome.usage,
                        "error": error,
                        "lease_until": None,
                        "documents": _without_prompts(job),
                    },
                    remove_fields=[*PROMPTS, "result"],
                    expected_attempts=job.attempts,
                )
            )
        except TransitionConflictError as conflict:
            current = conflict.current if isinstance(conflict.current, Job) else None
            return current.status if current else None
        except Exception as exc:
            # Not even the failure can be written (the table is unreachable): the job keeps
            # its claim until the lease ends; the message is retried.
            raise WorkerFault(
                f"job {job.job_id}: nothing could be recorded", retire=retire
            ) from exc
        self._documents.discard_prompts(job)
        log.warning("job %s failed: %s", job.job_id, OUTPUT_UNSTORABLE)
        return ended.status

    def _finish(
        self, job: Job, outcome: AgentOutcome, collected: Sequence[Collected] = ()
    ) -> JobStatus | None:
        result, documents, error = self._stored_result(job, outcome)
        status = JobStatus(outcome.ending)
        fields: dict[str, Any] = {
            "finished_at": _at(self._clock()),
            "usage": outcome.usage,
            "result": result,
            "error": error,
            "lease_until": None,
            "documents": documents,
        }
        fields.update(self._artifact_fields(job, collected, documents))
        try:
            ended = self._repo.transition(
                Transition(
                    job_id=job.job_id,
                    from_=[JobStatus.RUNNING],
                    to=status,
                    set_fields=fields,
                    remove_fields=PROMPTS,
                    expected_attempts=job.attempts,
                )
            )
        except TransitionConflictError as conflict:
            current = conflict.current if isinstance(conflict.current, Job) else None
            log.warning(
                "job %s: result not recorded, the job moved on (%s)",
                job.job_id,
                current.status if current else "?",
            )
            return current.status if current else None
        self._documents.discard_prompts(job)
        log.info(
            "job %s %s%s",
            job.job_id,
            ended.status,
            f" ({outcome.error.code})" if outcome.error else "",
        )
        return ended.status

    def _artifact_fields(
        self, job: Job, collected: Sequence[Collected], documents: dict[str, str]
    ) -> dict[str, Any]:
        """Files: the artifacts to record (inline, or their list as a document, whose key and
        the artifacts' prefix are added to `documents`)."""
        if not collected or self._artifacts is None:
            return {}
        found = collected[-1]
        if not found.artifacts and not found.notes:
            return {}
        fields, extra = self._documents.place_artifacts(job, found.artifacts, found.notes)
        documents.update(extra)
        if found.artifacts:
            documents[ARTIFACTS_PREFIX] = self._artifacts.prefix(job.tenant_id, job.job_id)
        return fields

    def _stored_result(
        self, job: Job, outcome: AgentOutcome
    ) -> tuple[JobResult | None, dict[str, str], JobErrorInfo | None]:
        """The result to record (large documents already in the store), the job's document
        keys once it is recorded, and the error."""
        error = outcome.error
        if outcome.text is None and outcome.structured is None:
            kept = {k: v for k, v in job.documents.items() if k not in PROMPTS}
            if outcome.ending != "succeeded":
                return None, kept, error
            return JobResult(text="", is_error=False), kept, error
        if self._documents.store is None and (
            len((outcome.text or "").encode()) > INLINE_RESULT_BYTES
            or _size(job, outcome) > MAX_ITEM_BYTES
        ):
            raise ValueError("the result is too large to store inline and no bucket is set")
        result, documents = self._documents.place_result(
            job, outcome.text or "", outcome.structured, outcome.is_error
        )
        return result, documents, error

    def _release(self, job: Job, fault: BaseException) -> bool:
        """After an infrastructure fault: give the job back to the queue, or end it when this
        was its last allowed attempt. True when the job was ended (nothing left to retry)."""
        reason = f"{type(fault).__name__}: {self._scrubber.text(str(fault))}"[:1000]
        log.error(
            "job %s attempt %s hit an infrastructure fault: %s", job.job_id, job.attempts, reason
        )
        try:
            if job.attempts >= self._settings.max_attempts:
                self._repo.transition(
                    Transition(
                        job_id=job.job_id,
                        from_=[JobStatus.RUNNING],
                        to=JobStatus.FAILED,
                        set_fields={
                            "finished_at": _at(self._clock()),
                            "error": JobErrorInfo(
                                code=ATTEMPTS_EXHAUSTED,
                                message=f"failed {job.attempts} times; last: {reason}",
                            ),
                            "lease_until": None,
                            "documents": _without_prompts(job),
                        },
                        remove_fields=PROMPTS,
                        expected_attempts=job.attempts,
                    )
                )
                self._documents.discard_prompts(job)
                log.warning("job %s failed: %s", job.job_id, ATTEMPTS_EXHAUSTED)
                return True
            else:
                self._repo.transition(
                    Transition(
                        job_id=job.job_id,
                        from_=[JobStatus.RUNNING],
                        to=JobStatus.QUEUED,
                        set_fields={"lease_until": None},
                        expected_attempts=job.attempts,
                    )
                )
        except (TransitionConflictError, JobNotFoundError):
            return True  # it moved on: nothing to give back, nothing to retry
        except Exception as exc:  # the lease expires on its own; redelivery re-claims then
            log.error("job %s could not be released: %s", job.job_id, type(exc).__name__)
        return False


def _without_prompts(job: Job) -> dict[str, str]:
    return {k: v for k, v in job.documents.items() if k not in PROMPTS}


def _retire_reason(job: Job, leftovers: list[ProcessInfo]) -> str | None:
    if not leftovers:
        return None
    described = ", ".join(f"pid {p.pid} (uids {'/'.join(map(str, p.uids[:3]))})" for p in leftovers)
    return f"{len(leftovers)} process(es) of job {job.job_id} could not be ended: {described}"[
        :1000
    ]


def _owner_of(sandbox: Sandbox) -> int:
    """The uid that owns what the agent leaves: the job's, or the worker's own (one user)."""
    uid = sandbox.owner_uid
    return os.geteuid() if uid is None else uid


def _session_checked(outcome: AgentOutcome, sessions: list[AgentSession]) -> AgentOutcome:
    """A run whose session went over `SESSION_MAX_BYTES` ends `session_too_large` (what the
    store holds stays under the cap: the session can be resumed from there)."""
    problem = next((s.over_cap for s in sessions if s.over_cap), None)
    if problem is None or outcome.ending in ("cancelled", "timed_out"):
        return outcome
    return AgentOutcome(
        "failed",
        text=outcome.text,
        usage=outcome.usage,
        error=JobErrorInfo(
            code=SESSION_TOO_LARGE,
            message=f"{problem}; the session holds the conversation up to its last save",
        ),
        permission_denials=outcome.permission_denials,
    )


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


def _scrubbed(outcome: AgentOutcome, scrubber: Scrubber) -> AgentOutcome:
    if outcome.text is not None:
        outcome.text = scrubber.text(outcome.text)
    if outcome.structured is not None:
        outcome.structured = scrubber.value(outcome.structured)
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


def _at(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def _or(watch: ProcessWatch, request: Any) -> Callable[[], bool]:
    """The run's stop condition: a tripped process watch, or the job's own (cancel…)."""
    should_stop: Callable[[], bool] = request.should_stop
    return lambda: watch.tripped or should_stop()
