"""What keeps the agent away from the worker's secrets.

- The CLI's environment is an allowlist. claude-agent-sdk starts the CLI with
  `{**os.environ, **options.env}` and cannot drop an inherited variable, so the SDK is pointed
  (`cli_path`) at a per-job launcher: a tiny Python script that keeps only the allowlisted
  variables, drops root privileges when the worker has them, starts a new session (so the
  agent's processes form one group the worker can kill) and execs the bundled CLI.
- The worker process makes itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): a process of the
  same user can then no longer read its `/proc/<pid>/environ` or memory. Lambda runs the worker
  and the agent as the same user, so this is what guards the worker's AWS credentials and the
  key it holds in memory.
- Where the worker runs as root (a container, CI), root could read every process, so the agent
  runs as an unprivileged user instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

#: Variables the SDK itself sets for the CLI; kept when present.
SDK_VARIABLES = frozenset(
    {
        "CLAUDE_CODE_ENTRYPOINT",
        "CLAUDE_AGENT_SDK_VERSION",
        "CLAUDE_CODE_SDK_READS_SESSION_STATE",
        "CLAUDE_AGENT_SDK_CLIENT_APP",
        "CLAUDE_AGENT_SDK_DERIVED_CLIENT_APP",
        "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING",
        "PWD",
    }
)

#: The agent's PATH: the system directories, and the Lambda image's Python.
AGENT_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin:/bin"


class IsolationError(RuntimeError):
    """The agent cannot be isolated as required (an infrastructure fault)."""


@dataclass(frozen=True)
class AgentIdentity:
    """Who the agent runs as. `uid`/`gid` None: as the worker's own user (not root)."""

    uid: int | None = None
    gid: int | None = None
    name: str = ""

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
    """Identities for the jobs one worker process runs at the same time.

    As root, with a uid range, every lease is a distinct uid (its own gid too) that no other
    running job holds, and is given back when the job ends; the uid needs no passwd entry (the
    agent's HOME is its sandbox). Otherwise every lease is the base identity: the worker's own
    user, or AGENT_USER."""

    def __init__(self, base: AgentIdentity, uid_range: str = "") -> None:
        self._base = base
        self._lock = threading.Lock()
        self._busy: set[int] = set()
        self._range: range | None = None
        if uid_range and base.switches_user:
            first, last = (int(part) for part in uid_range.split("-"))
            if first <= 0 or last < first:
                raise IsolationError(f"AGENT_UID_RANGE {uid_range!r} is not a range of uids")
            self._range = range(first, last + 1)

    @contextlib.contextmanager
    def lease(self) -> Iterator[AgentIdentity]:
        if self._range is None:
            yield self._base
            return
        with self._lock:
            uid = next((u for u in self._range if u not in self._busy), None)
            if uid is None:
                raise IsolationError("every uid of AGENT_UID_RANGE is in use")
            self._busy.add(uid)
        try:
            yield AgentIdentity(uid=uid, gid=uid, name=f"uid {uid}")
        finally:
            with self._lock:
                self._busy.discard(uid)


def make_non_dumpable() -> None:
    """Forbid same-user processes to read this process's environ and memory (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise IsolationError(f"prctl(PR_SET_DUMPABLE) failed: errno {ctypes.get_errno()}")


def is_dumpable() -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


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
) -> dict[str, str]:
    """The whole environment the CLI gets (plus the SDK's own variables): nothing inherited."""
    env = {
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "TMPDIR": str(tmp_dir),
        "PATH": AGENT_PATH,
        "LANG": "C.UTF-8",
        "SHELL": "/bin/bash",
        "ANTHROPIC_BASE_URL": base_url,
        # The per-job token the loopback proxy accepts; never the real key.
        "ANTHROPIC_API_KEY": token,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_AGENT_SDK_SKIP_VERSION_CHECK": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    return env


_LAUNCHER = """#!{python} -IS
# Generated by claude_jobs.worker.isolation for one job. Keeps only allowlisted variables,
# leaves root, starts a new session and becomes the Claude Code CLI.
import os
import sys

KEEP = {keep!r}
env = {{name: value for name, value in os.environ.items() if name in KEEP}}
if {switch!r} and os.getuid() == 0:
    os.setgroups([])
    os.setgid({gid!r})
    os.setuid({uid!r})
    if os.getuid() == 0 or os.geteuid() == 0:
        sys.exit("claude-jobs launcher: could not leave root")
os.setsid()
os.execve({cli!r}, [{cli!r}, *sys.argv[1:]], env)
"""


def write_launcher(
    path: Path, *, cli: Path, keep: frozenset[str] | set[str], identity: AgentIdentity
) -> Path:
    """Write the per-job launcher the SDK runs as its `cli_path` (mode 0700, worker-owned)."""
    text = _LAUNCHER.format(
        python=sys.executable,
        keep=sorted(keep),
        switch=identity.switches_user,
        uid=identity.uid if identity.uid is not None else -1,
        gid=identity.gid if identity.gid is not None else -1,
        cli=str(cli),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def launcher_keep(env: Mapping[str, str]) -> frozenset[str]:
    return frozenset(env) | SDK_VARIABLES


def kill_process_group(pgid: int | None) -> None:
    """SIGKILL a process group (the CLI and what the agent started), if it still exists."""
    if pgid is None or pgid <= 1:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
