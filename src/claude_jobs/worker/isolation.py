"""What keeps the agent away from the worker's secrets.

- The CLI's environment is an allowlist. claude-agent-sdk would start the CLI with
  `{**os.environ, **options.env}`, so the worker's transport spawns it itself (see
  `agent.py`): the bundled CLI is exec'd directly with exactly `agent_environment()` plus the
  SDK's own variables. No process the worker starts — not even for the moment before an exec —
  has the worker's environment (AWS credentials, `AWS_LAMBDA_RUNTIME_API`, the key).
- The worker process makes itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): a process of the
  same user can then no longer read its `/proc/<pid>/environ` or memory. Lambda runs the worker
  and the agent as the same user, so this is what guards the worker's AWS credentials and the
  key it holds in memory. A forked child inherits the flag until it execs the CLI.
- Where the worker runs as root (a container, CI, the local stack), root could read every
  process, so each job's agent runs as an unprivileged uid of its own (`IdentityPool`), leased
  only while no process of that uid exists and rotated least-recently-used first.
- The CLI starts in a session of its own; `containment.py` ends whatever the agent leaves.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import pwd
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .containment import libc, uids_in_use

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

#: The agent's PATH: the system directories, and the Lambda image's Python.
AGENT_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class BedrockCli:
    """What the CLI needs to know to run on Bedrock through the proxy."""

    region: str
    model: str  # the inference profile id the job runs on


class IsolationError(RuntimeError):
    """The agent cannot be isolated as required (an infrastructure fault)."""


@dataclass(frozen=True)
class AgentIdentity:
    """Who the agent runs as. `uid`/`gid` None: as the worker's own user (not root)."""

    uid: int | None = None
    gid: int | None = None
    name: str = ""
    #: RLIMIT_NPROC of the agent's processes when it runs as a uid of its own (issue 20).
    max_tasks: int | None = None

    @property
    def switches_user(self) -> bool:
        return self.uid is not None


def resolve_identity(agent_user: str, *, euid: int | None = None) -> AgentIdentity:
    """The agent's identity: the worker's own user, unless the worker is root."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return AgentIdentity()
    if not agent_user:
        raise IsolationError("the worker runs as root and no AGENT_USER is set")
    try:
        entry = pwd.getpwnam(agent_user)
    except KeyError:
        raise IsolationError(f"the agent user {agent_user!r} does not exist") from None
    if entry.pw_uid == 0:
        raise IsolationError("the agent user must not be root")
    return AgentIdentity(uid=entry.pw_uid, gid=entry.pw_gid, name=agent_user)


class IdentityPool:
    """Identities for the jobs one worker process runs.

    As root, with a uid range, every lease is a uid of its own (its own gid too) that no running
    job holds and no live process has, least recently used first, so a uid is not handed to the
    next job while anything of its last holder could still run; the uid needs no passwd entry
    (the agent's HOME is its sandbox). A uid a process of which could not be ended is
    quarantined: never leased again by this process. Otherwise every lease is the base
    identity: the worker's own user, or AGENT_USER."""

    def __init__(
        self,
        base: AgentIdentity,
        uid_range: str = "",
        *,
        in_use: Callable[[], set[int]] = uids_in_use,
        max_tasks: int | None = None,
    ) -> None:
        self._max_tasks = max_tasks
        self._base = base
        self._in_use = in_use
        self._lock = threading.Lock()
        self._free: deque[int] = deque()
        self._quarantined: set[int] = set()
        self._ranged = False
        if uid_range and base.switches_user:
            first, last = (int(part) for part in uid_range.split("-"))
            if first <= 0 or last < first:
                raise IsolationError(f"AGENT_UID_RANGE {uid_range!r} is not a range of uids")
            self._free.extend(range(first, last + 1))
            self._ranged = True

    @contextlib.contextmanager
    def lease(self) -> Iterator[AgentIdentity]:
        if not self._ranged:
            base = self._base
            if base.switches_user and self._max_tasks is not None:
                base = dataclasses.replace(base, max_tasks=self._max_tasks)
            yield base
            return
        with self._lock:
            taken = self._in_use()
            uid = next((u for u in self._free if u not in taken), None)
            if uid is None:
                raise IsolationError("no uid of AGENT_UID_RANGE is free of processes")
            self._free.remove(uid)
        try:
            yield AgentIdentity(uid=uid, gid=uid, name=f"uid {uid}", max_tasks=self._max_tasks)
        finally:
            with self._lock:
                if uid not in self._quarantined:
                    self._free.append(uid)

    def quarantine(self, uid: int | None) -> None:
        """Never lease `uid` again (a process of its holder could not be ended)."""
        if uid is None or not self._ranged:
            return
        with self._lock:
            self._quarantined.add(uid)
            with contextlib.suppress(ValueError):
                self._free.remove(uid)


_POOLS: dict[tuple[AgentIdentity, str], IdentityPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(
    base: AgentIdentity, uid_range: str = "", max_tasks: int | None = None
) -> IdentityPool:
    """The process's one pool for `base` and `uid_range`. Every worker environment of a process
    (the local stack runs several at once) leases from it, so two jobs never hold one uid."""
    with _POOLS_LOCK:
        pool = _POOLS.get((base, uid_range))
        if pool is None:
            pool = _POOLS[(base, uid_range)] = IdentityPool(base, uid_range, max_tasks=max_tasks)
        pool._max_tasks = max_tasks  # the latest settings' (a pool is shared, its uids kept)
        return pool


def make_non_dumpable() -> None:
    """Forbid same-user processes to read this process's environ and memory (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    if libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise IsolationError(f"prctl(PR_SET_DUMPABLE) failed: errno {ctypes.get_errno()}")


def is_dumpable() -> bool:
    return bool(libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def bundled_cli() -> Path:
    """The Claude Code CLI that ships inside claude-agent-sdk."""
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if not path.is_file():
        raise IsolationError(f"the bundled Claude Code CLI is missing at {path}")
    return path


def agent_environment(
    *,
    home: Path,
    config_dir: Path,
    tmp_dir: Path,
    base_url: str,
    token: str,
    max_retries: int | None,
    bedrock: BedrockCli | None = None,
) -> dict[str, str]:
    """The whole environment the CLI gets (plus the SDK's own variables): nothing inherited.

    With `bedrock`, the CLI talks Bedrock's protocol to the same loopback proxy, presents its
    token in a header of its own, and signs nothing (the proxy signs with the worker's role):
    its only AWS variable is the region."""
    env = {
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "TMPDIR": str(tmp_dir),
        "PATH": AGENT_PATH,
        "LANG": "C.UTF-8",
        "SHELL": "/bin/bash",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_AGENT_SDK_SKIP_VERSION_CHECK": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if bedrock is None:
        env["ANTHROPIC_BASE_URL"] = base_url
        # The per-job token the loopback proxy accepts; never the real key.
        env["ANTHROPIC_API_KEY"] = token
    else:
        env["CLAUDE_CODE_USE_BEDROCK"] = "1"
        env["ANTHROPIC_BEDROCK_BASE_URL"] = base_url
        env["CLAUDE_CODE_SKIP_BEDROCK_AUTH"] = "1"  # no credential: the proxy signs
        env["AWS_REGION"] = bedrock.region
        # The per-job token, as a header the proxy reads (`bedrock.TOKEN_HEADER`).
        env["ANTHROPIC_CUSTOM_HEADERS"] = f"x-claude-jobs-token: {token}"
        # Background calls (titles, summaries) on the job's own model, which is allowed.
        env["ANTHROPIC_SMALL_FAST_MODEL"] = bedrock.model
        env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] = bedrock.model
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    return env


#: util-linux's setpriv (Debian's essential set; not needed on Lambda, where nobody is root).
SETPRIV = "/usr/bin/setpriv"
#: util-linux's prlimit: runs a command with the given resource limits.
PRLIMIT = "/usr/bin/prlimit"


def spawn_as(identity: AgentIdentity, command: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The argv and `subprocess`/`anyio.open_process` arguments that start `command` as the
    agent's user.

    As root, through `setpriv`, which sets the real, effective and saved uid and gid (a process
    whose uids are all non-zero keeps no capability), drops the supplementary groups and execs
    the command: Python can then vfork. When Python switches the user itself it must fork the
    whole worker, ~14 ms with the GIL held for each job. Without setpriv, it does that."""
    if not identity.switches_user or os.geteuid() != 0:
        return list(command), {}
    # Fork chains (issue 20): the job's uid may hold this many tasks at most (the kernel
    # refuses a fork past it: EAGAIN), set before the user switch and inherited by the CLI.
    limit = (
        [PRLIMIT, f"--nproc={identity.max_tasks}:{identity.max_tasks}", "--"]
        if identity.max_tasks is not None and os.access(PRLIMIT, os.X_OK)
        else []
    )
    if _has_setpriv():
        switch = [SETPRIV, f"--reuid={identity.uid}", f"--regid={identity.gid}", "--clear-groups"]
        return [*limit, *switch, "--", *command], {}
    as_agent: dict[str, Any] = {"user": identity.uid, "group": identity.gid, "extra_groups": []}
    return [*limit, *command], as_agent


@functools.cache
def _has_setpriv() -> bool:
    return os.access(SETPRIV, os.X_OK)


def kill_process_group(pgid: int | None) -> None:
    """SIGKILL a process group (the CLI and what the agent started), if it still exists."""
    if pgid is None or pgid <= 1:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
