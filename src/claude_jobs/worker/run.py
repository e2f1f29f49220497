"""One run of a job's agent: in a fresh sandbox as a leased identity (or the warm CLI's), with
its inputs, its session and its carried working directory placed; every process it started
ended afterwards; its artifacts collected, or its working directory carried to the next
segment."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..approval_models import MAX_APPROVAL_WAITS
from ..errors import TransitionConflictError
from ..models import Job, JobErrorInfo, JobStatus, Usage
from ..observability import deferred_logger
from .agent import MAX_TURNS
from .artifacts import OUT_DIR, ArtifactLimits, Collected, collect_artifacts
from .claims import cancel_requested
from .containment import JobScope, ProcessInfo, become_subreaper
from .inputs import place_inputs
from .isolation import AgentIdentity, BedrockCli, agent_environment, bundled_cli, make_non_dumpable
from .ports import AgentOutcome, AgentRequest, WorkerPorts
from .process_watch import ProcessWatch
from .repository import RepositoryError, RepositoryRun, open_repository
from .sandbox import Sandbox
from .segments import CONTINUE_PROMPT, resumes_own_run, spent, turns_left
from .sessions import SESSION_TOO_LARGE, AgentSession, SessionTooLargeError
from .waiting import gate_of, over_limit, settle_session
from .warm import WarmCli
from .workspace import WorkspaceTooLargeError
from .workspace import limits as workspace_limits
from .workspace import restore as restore_workspace
from .workspace import save as save_workspace

log = deferred_logger()  # Powertools' structured logger

INPUT_UNAVAILABLE = "input_unavailable"
#: Long jobs: the working directory is over a limit and cannot go on to the next segment.
WORKSPACE_TOO_LARGE = "workspace_too_large"


def spending_limit(ports: WorkerPorts, job: Job) -> float:
    """min(the job's `max_budget_usd`, the deployment's cap), less what earlier segments
    spent."""
    cap = ports.settings.max_budget_usd_cap
    budget = job.options.max_budget_usd
    limit = cap if budget is None else min(budget, cap)
    return max(limit - spent(job), 0.0)  # long jobs: what earlier segments left


def run_agent(
    ports: WorkerPorts,
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
    """Run the agent to its end; the processes it left that could not be ended are added
    to `leftovers`, its artifacts to `collected`."""
    make_non_dumpable()
    become_subreaper()
    with contextlib.ExitStack() as held:
        if warm is not None:  # the warm CLI's sandbox, identity and scope are the job's
            held.enter_context(warm.resources)
            identity, sandbox, scope = warm.identity, warm.sandbox, warm.scope
        else:
            identity = held.enter_context(ports.identities.lease())
            sandbox = held.enter_context(Sandbox(job.job_id, identity, ports.sandbox_dir))
            scope = ports.sweeper.scope(identity.uid)
        prepared: list[AgentSession] = []  # the run's session, saved after the sweep
        repos: list[RepositoryRun] = []  # the job's repository (repository.py)
        held.callback(_close_all, repos)
        try:
            outcome = run_in(
                ports,
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
                repos,
            )
        finally:
            # Before the sandbox goes: nothing of the job may run on (or write into it).
            sweep = ports.sweeper.sweep(scope)
            if sweep.survivors:
                leftovers.extend(sweep.survivors)
                ports.identities.quarantine(identity.uid)
            # Sessions: what the mirror missed, read from the agent's transcript only now
            # that nothing of the job runs (never raises).
            if ports.sessions is not None:
                for session in prepared:
                    ports.sessions.save(session)
        outcome = session_checked(outcome, prepared)
        if outcome.ending == "deferred" and job.approval_waits >= MAX_APPROVAL_WAITS:
            outcome = over_limit(job, outcome)  # approvals: the job has used its waits
        if outcome.ending in ("segment", "deferred"):
            # Long jobs, approvals: the working directory goes on with the job (out/
            # included: its artifacts are collected when the job ends).
            return carry_workspace(ports, job, sandbox, outcome)
        # Files: what the agent left under out/, now that nothing of it runs.
        if ports.artifacts is not None and collected is not None:
            collected.append(collect(ports, job, sandbox))
        # Repositories: the worker commits, pushes and opens the pull request, now that
        # nothing of the agent runs.
        for repo in repos:
            outcome = repo.deliver(sandbox, outcome)
        return outcome


def run_in(
    ports: WorkerPorts,
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
    repos: list[RepositoryRun] | None = None,
) -> AgentOutcome:
    """Prepare the sandbox (carried workspace, out/, inputs, session) and run the agent."""
    settings = ports.settings
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
        left = max(spending_limit(ports, job), 1e-9)
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
        and ports.workspaces is not None
        and restore_workspace(
            ports.workspaces, job.tenant_id, job.job_id, sandbox.work_dir, sandbox.give
        )
    )
    # Repositories: cloned into the (still empty) working directory; a later segment's is
    # restored and only fetched again for the worker.
    if job.options.repository is not None:
        try:
            updated = job.updates_pull_request_of  # the service's, checked again from the store
            original = ports.jobs.get(updated) if updated else None
            repo = open_repository(ports.github, settings, job, original)
        except RepositoryError as refused:
            return refused.outcome()
        assert repo is not None
        if repos is not None:
            repos.append(repo)
        failed = repo.prepare(sandbox, bool(restored))
        if failed is not None:
            return failed
        if repo.updates is not None and job.pull_request_base_sha is None:
            # A follow-up's first segment: later ones start from this tip, not the branch's.
            with contextlib.suppress(TransitionConflictError):  # (no longer running: moot)
                ports.jobs.update(
                    job.job_id,
                    set_fields={"pull_request_base_sha": repo.base_sha},
                    expected_status=[JobStatus.RUNNING],
                )
    # Files: where the agent leaves its artifacts (made before the inputs are placed, so a
    # trigger's object named `out` gets another name).
    if ports.artifacts is not None:
        out_dir = sandbox.work_dir / OUT_DIR
        if not restored:
            out_dir.mkdir(mode=0o700)
            sandbox.give(out_dir)
    # A later segment's working directory holds its inputs as the agent left them.
    if job.inputs and ports.inputs is not None and not restored:
        problem = place_inputs(ports.inputs, job, sandbox)
        if problem is not None:
            return AgentOutcome(
                "failed", error=JobErrorInfo(code=INPUT_UNAVAILABLE, message=problem)
            )
    model = settings.cli_model(job.options.model)
    env = agent_env(ports, sandbox, token, model)
    # Sessions: the job's conversation, materialised in its sandbox (a store failure is an
    # infrastructure fault, before the agent starts).
    sessions = ports.sessions
    try:
        session = sessions.prepare(job, sandbox) if sessions is not None else None
    except SessionTooLargeError as exc:  # terminal: a retry would find it as large
        return AgentOutcome(
            "failed", error=JobErrorInfo(code=SESSION_TOO_LARGE, message=str(exc)[:2000])
        )
    if (
        warm is not None
        and warm.session_id is not None
        and session is not None
        and not session.resume
        and sessions is not None
    ):  # a fresh session, run by the CLI started under an id of its own
        session = sessions.started_as(session, warm.session_id, sandbox)
    # Approvals: the job's decision carried out on the transcript before the CLI resumes it;
    # a deferral of its own that still waits (its wait was not recorded) is recorded now.
    try:
        settled = settle_session(job, session)
    except SessionTooLargeError as exc:
        return AgentOutcome(
            "failed", error=JobErrorInfo(code=SESSION_TOO_LARGE, message=str(exc)[:2000])
        )
    if settled.waiting is not None:
        return AgentOutcome("deferred", usage=Usage(), deferred=settled.waiting)
    resuming = session is not None and session.resume and resumes_own_run(job)
    prompt = (settled.resume_prompt or CONTINUE_PROMPT) if resuming else (job.prompt or "")
    if planned_at is not None:
        # A run that stops at the invocation's end: its stops are points in the invocation,
        # so what came before the run (a cold start, the claim, the session's load) comes off
        # them (`planned_at`: when the time left was read; None when the job's deadline binds).
        taken = time.monotonic() - planned_at
        deadline = max(deadline - taken, 0.1)
        if yield_after is not None:
            yield_after = max(yield_after - taken, 0.0)
    request = AgentRequest(
        session=session,
        yield_after_seconds=yield_after,
        expected_tool_seconds=(job.segment_tool_ms or 0) / 1000,
        job_id=job.job_id,
        prompt=prompt,
        no_prompt=settled.runs_call,
        system_prompt=job.system_prompt,
        options=options,
        model=model,
        cli=bundled_cli(),
        cwd=sandbox.work_dir,
        env=env,
        deadline_seconds=deadline,
        identity=identity,
        should_stop=lambda: cancel_requested(ports, job),
        on_started=lambda pid: ports.sweeper.started(scope, pid),
        on_message=on_message,
        warm=warm.process if warm is not None else None,
        mcp_servers=mcp_config(ports, job, token),
        **gate_of(job),
    )
    if session is not None and prepared is not None:
        prepared.append(session)  # saved after the sweep (`run_agent`)
    # Fork chains (issue 20): zombies reaped and processes counted while the agent runs.
    watch = ProcessWatch(
        ports.sweeper, scope, settings.agent_max_processes, settings.process_watch_seconds
    )
    with watch:
        outcome = ports.runner.run(replace(request, should_stop=_or(watch, request)))
    if watch.tripped:
        return AgentOutcome("failed", usage=outcome.usage, error=watch.error())
    return outcome


def mcp_config(ports: WorkerPorts, job: Job, token: str) -> dict[str, Any]:
    """MCP servers: the SDK's `mcp_servers` for the job, each at the loopback broker (which
    the processor has opened for the job's token: `mcp_jobs.open_servers`)."""
    names = [server.name for server in job.options.mcp_servers]
    if not names or ports.mcp is None:
        return {}
    return ports.mcp.cli_config(token, names)


def agent_env(ports: WorkerPorts, sandbox: Sandbox, token: str, model: str) -> dict[str, str]:
    settings = ports.settings
    return agent_environment(
        home=sandbox.home,
        config_dir=sandbox.config_dir,
        tmp_dir=sandbox.tmp_dir,
        base_url=ports.proxy.url,
        token=token,
        max_retries=settings.agent_max_retries,
        bedrock=BedrockCli(settings.aws_region, model) if settings.uses_bedrock else None,
    )


def carry_workspace(
    ports: WorkerPorts, job: Job, sandbox: Sandbox, outcome: AgentOutcome
) -> AgentOutcome:
    """Store the segment's working directory for the next one; a store fault raises (the
    segment is retried from the session), a directory over a limit ends the job."""
    if ports.workspaces is None:
        return outcome
    settings = ports.settings
    bounds = dataclasses.replace(
        workspace_limits(settings.workspace_max_files, settings.workspace_max_bytes),
        owner=owner_of(sandbox),
    )
    try:
        notes = save_workspace(
            ports.workspaces, job.tenant_id, job.job_id, sandbox.work_dir, bounds
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


def drop_workspace(ports: WorkerPorts, job: Job) -> None:
    """The job has ended: its carried working directory is not needed any more (what a
    failed delete leaves expires with the job's documents)."""
    if ports.workspaces is None:
        return
    try:
        ports.workspaces.delete(job.tenant_id, job.job_id)
    except Exception as exc:
        log.warning("job %s: workspace not deleted (%s)", job.job_id, type(exc).__name__)


def collect(ports: WorkerPorts, job: Job, sandbox: Sandbox) -> Collected:
    """Upload the job's artifacts; never raises (the agent has run: its result is
    recorded whatever happens to its files)."""
    sink = ports.artifacts
    assert sink is not None
    limits = ArtifactLimits(
        ports.settings.artifacts_max_count,
        ports.settings.artifacts_max_bytes,
        owner=owner_of(sandbox),
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


def retire_reason(job: Job, leftovers: list[ProcessInfo]) -> str | None:
    """Why the execution environment must retire: processes of the job that outlived it."""
    if not leftovers:
        return None
    described = ", ".join(f"pid {p.pid} (uids {'/'.join(map(str, p.uids[:3]))})" for p in leftovers)
    return f"{len(leftovers)} process(es) of job {job.job_id} could not be ended: {described}"[
        :1000
    ]


def owner_of(sandbox: Sandbox) -> int:
    """The uid that owns what the agent leaves: the job's, or the worker's own (one user)."""
    uid = sandbox.owner_uid
    return os.geteuid() if uid is None else uid


def session_checked(outcome: AgentOutcome, sessions: list[AgentSession]) -> AgentOutcome:
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


def _or(watch: ProcessWatch, request: Any) -> Callable[[], bool]:
    """The run's stop condition: a tripped process watch, or the job's own (cancel…)."""
    should_stop: Callable[[], bool] = request.should_stop
    return lambda: watch.tripped or should_stop()


def _close_all(repos: list[RepositoryRun]) -> None:
    for repo in repos:
        repo.close()
