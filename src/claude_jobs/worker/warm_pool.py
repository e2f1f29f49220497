"""Warm start (warm.py): the one CLI an execution environment keeps started for its next job."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from ..observability import deferred_logger
from .containment import JobScope, become_subreaper
from .isolation import AgentIdentity, bundled_cli, make_non_dumpable
from .ports import AgentRequest, WorkerPorts
from .run import agent_env
from .sandbox import Sandbox
from .scrub import Scrubber
from .warm import WarmCli, WarmProfile

log = deferred_logger()  # Powertools' structured logger


class WarmPool:
    def __init__(self, ports: WorkerPorts, scrubber: Scrubber) -> None:
        self._ports = ports
        self._scrubber = scrubber
        #: The CLI started for the next job, if any.
        self.current: WarmCli | None = None
        #: The options the next warm CLI gets: the last job's that could be the model for one.
        self.next_profile: WarmProfile | None = None

    def warm_up(self, *, settle: bool = False) -> None:
        """Start the CLI for the next job, unless one that still fits is ready (WARM_START);
        `settle`: wait until it has booted (Lambda: the environment is frozen next). Never
        raises: without a warm CLI the next job starts cold."""
        settings = self._ports.settings
        if not settings.warm_start:
            return
        profile = self.next_profile or WarmProfile.default()
        warm = self.current
        if warm is not None:
            if warm.profile == profile and warm.usable(settings.warm_start_max_age_seconds):
                return
            self.discard()
        try:
            self.current = warm = self.start(profile)
        except Exception as exc:
            log.warning("no warm start: %s", self._scrubber.text(f"{type(exc).__name__}: {exc}"))
            return
        if settle:
            waited = warm.process.settle(settings.warm_start_settle_seconds)
            log.info("warm CLI started (pid %s, ready after %.2f s)", warm.process.pid, waited)

    def discard(self) -> None:
        """Stop the warm CLI, if any, and free what it held."""
        warm, self.current = self.current, None
        if warm is not None:
            try:
                warm.resources.close()
            finally:
                self._ports.proxy.revoke(warm.token)

    def take(self, profile: WarmProfile | None) -> WarmCli | None:
        """The warm CLI for a job of `profile`, handed over; one that does not fit is stopped
        first (nothing started for another launch stays while the job's agent runs). A job
        that can be the model for one sets the next warm CLI's profile."""
        self.next_profile = profile or self.next_profile
        warm = self.current
        if warm is None:
            return None
        if (
            profile is None
            or warm.profile != profile
            or not warm.usable(self._ports.settings.warm_start_max_age_seconds)
        ):
            self.discard()
            return None
        self.current = None
        log.info("warm start: the job runs in the CLI started ahead (pid %s)", warm.process.pid)
        return warm

    def start(self, profile: WarmProfile) -> WarmCli:
        """A CLI started for `profile` in a fresh sandbox, as a freshly leased identity, with a
        token bound to no job that may spend nothing."""
        from .agent import WarmProcess

        ports = self._ports
        make_non_dumpable()
        become_subreaper()
        ports.proxy.start()
        resources = contextlib.ExitStack()
        token: str | None = None
        try:
            identity = resources.enter_context(ports.identities.lease())
            sandbox = resources.enter_context(Sandbox("warm", identity, ports.sandbox_dir))
            scope = ports.sweeper.scope(identity.uid)
            # Bound to no job, and it may spend nothing until a job adopts it.
            token = ports.proxy.issue("", limit_usd=0.0)
            options = profile.options()
            model = ports.settings.cli_model(options.model)
            sessions = ports.sessions
            session_id = str(uuid.uuid4()) if profile.session and sessions is not None else None
            process = WarmProcess.start(
                AgentRequest(
                    session=sessions.unbound(session_id)
                    if sessions is not None and session_id is not None
                    else None,
                    job_id="",
                    prompt="",
                    system_prompt=None,
                    options=options,
                    model=model,
                    cli=bundled_cli(),
                    cwd=sandbox.work_dir,
                    env=agent_env(ports, sandbox, token, model),
                    deadline_seconds=0,
                    identity=identity,
                )
            )
            ports.sweeper.started(scope, process.pid)
            resources.callback(self.end, process, scope, identity)
        except BaseException:
            resources.close()
            if token is not None:
                ports.proxy.revoke(token)
            raise
        return WarmCli(profile, identity, sandbox, scope, token, process, resources, session_id)

    def end(self, process: Any, scope: JobScope, identity: AgentIdentity) -> None:
        """Stop a warm CLI and whatever of its scope runs (a no-op sweep after a job's own)."""
        process.stop()
        sweep = self._ports.sweeper.sweep(scope)
        if sweep.survivors:
            log.error("a warm CLI's processes could not be ended: %s", len(sweep.survivors))
            self._ports.identities.quarantine(identity.uid)
