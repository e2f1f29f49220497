"""Warm start: the CLI of an execution environment's next job, started ahead of time.

Starting Claude Code is most of a short job's time (~0.4 s of a ~0.6 s one-call job, nearly all
of it CPU). With `WARM_START` on, once a job is recorded the worker starts the CLI the next job
will probably need, in a fresh sandbox, as a freshly leased identity, with a fresh proxy token
that is bound to no job and may spend nothing; the CLI boots and waits for its stdin. When the
next job's CLI would be started exactly so — the same argv and environment, which `agent.py`
checks before using it — the job's run hands it the initialize request and the prompt and the
CLI's start-up is already done. Any other job gets a cold start, and the warm CLI is stopped
before that job runs, so no process of another launch exists while a job's agent runs.

What a warm CLI holds is configuration, never a job's data: it is started with the option set
of the environment's last job — its tools, turn limit, budget and model — or the deployment's
defaults; a job whose CLI would carry its own data or state on the command line (a system
prompt, an output schema, a later segment) is never the model for one. It is started under a
session id of its own; a job starting a fresh session has what the CLI writes stored under the
job's session (`SessionKeeper.started_as`), and a job resuming one gets a cold start (its CLI's
`--resume` does not match). Its token is bound to the job that adopts it (`KeyProxy.assign`),
with that job's spending limit, only then.

A warm CLI is started after the previous job's sweep, so nothing of that job runs any more, and
its sandbox and identity lease are the ones the next job would have got. One that is older than
`WARM_START_MAX_AGE_SECONDS`, or has ended, is replaced. On Lambda the execution environment
is frozen when the handler returns, so the worker waits until the CLI has booted
(`WarmProcess.settle`): that start-up is billed to the invocation before it instead of the job's.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from ..job_options import JobOptions, default_of, warm_fields
from ..models import Job
from .agent import WarmProcess
from .containment import JobScope
from .isolation import AgentIdentity
from .sandbox import Sandbox


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class WarmProfile:
    """The options a warm CLI is started with: configuration only, never a job's data. Its
    `values` are the job options marked `warm="profile"` (job_options.py), in field order."""

    values: tuple[tuple[str, Any], ...]
    #: The job starts a session (every job since sessions exist): the CLI is started under a
    #: fresh session id of its own, and the job's fresh session is stored as if it were its
    #: (`SessionKeeper.started_as`). A job that resumes its session gets a cold start.
    session: bool = True

    @classmethod
    def default(cls) -> WarmProfile:
        """The deployment's default option set (a job that sets no options)."""
        return cls.from_options(JobOptions(), session=True)

    @classmethod
    def from_options(cls, options: JobOptions, *, session: bool) -> WarmProfile:
        values = tuple((name, _frozen(getattr(options, name))) for name in warm_fields())
        return cls(values, session)

    @classmethod
    def of(cls, job: Job) -> WarmProfile | None:
        """The profile `job`'s CLI is started with, or None when that CLI carries the job's own
        data or state on its command line (then it is neither warm-started nor a model): a
        system prompt, an option marked `warm="cold"` that is set, a later segment. A session
        to resume is known only once it is loaded: its CLI does not match then."""
        if (
            job.system_prompt
            or any(getattr(job.options, name) != default_of(name) for name in warm_fields("cold"))
            or job.segments > 1
            or job.usage is not None
        ):
            return None
        return cls.from_options(job.options, session=job.session_id is not None)

    def options(self) -> JobOptions:
        return JobOptions.model_validate(
            {name: list(v) if isinstance(v, tuple) else v for name, v in self.values}
        )


@dataclass
class WarmCli:
    """One pre-started CLI and what it was started in. `resources` ends it: on exit it stops
    the CLI, sweeps its scope, removes the sandbox and gives the identity back."""

    profile: WarmProfile
    identity: AgentIdentity
    sandbox: Sandbox
    scope: JobScope
    token: str
    process: WarmProcess
    resources: contextlib.ExitStack
    #: The session id the CLI was started under (a fresh one, no job's), if any.
    session_id: str | None = None
    born: float = field(default_factory=time.time)

    def usable(self, max_age_seconds: float, now: float | None = None) -> bool:
        age = (time.time() if now is None else now) - self.born
        return self.process.alive and 0 <= age <= max_age_seconds
