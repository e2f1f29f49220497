"""Nothing the agent starts outlives its job.

The worker process makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): a process
the agent detaches — `setsid`, `nohup`, a double fork — is re-parented to the worker instead of
init, so it never leaves the worker's process tree. After every job the worker sweeps the job's
processes:

- worker as root, a uid per job: every descendant of the worker whose real, effective or saved
  uid is the job's (not elsewhere on the machine: another stack's processes are not ours);
- worker and agent as one user (Lambda: one job per execution environment): every descendant
  of the worker born after the job started, except the trees of other jobs of the same process
  still running (the local stack run as a non-root user; those jobs share a user and are not
  isolated from each other in any case).

Then the shared scratch directories (`/tmp`, `/var/tmp`, `/dev/shm`) lose what the job left
there outside its sandbox — as root, entries of the job's uid; as one user (only where the
worker runs alone in its environment, as on Lambda), entries that appeared during the job —
so no file of one job is there for the next one to read or be misled by.

A sweep freezes (SIGSTOP, which no process can catch) what it finds and rescans until nothing
new appears — a stopped process cannot fork, so a fork loop cannot outrun it — then SIGKILLs
all of it and reaps the zombies re-parented to the worker. Whatever is still alive after that
(a process that changed its uid through a setuid program, one stuck in the kernel) is reported
as a survivor: the worker records the job's result, then retires its execution environment.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .sandbox import remove_tree

PR_SET_CHILD_SUBREAPER = 36

#: Directories every process may write to, outside the job's sandbox.
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - cleared, not used

#: Rounds of freezing before the sweep kills what it froze (each round is one /proc scan).
_MAX_FREEZE_ROUNDS = 200


class ContainmentError(RuntimeError):
    """The worker cannot contain the agent's processes here (an infrastructure fault)."""


@dataclass(frozen=True)
class ProcessInfo:
    """One process, as /proc describes it."""

    pid: int
    ppid: int
    state: str  # R, S, D, T, Z, …
    uids: tuple[int, ...]  # real, effective, saved, filesystem
    start: int  # clock ticks after boot: with the pid, names one process for good (0: not read)

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def process_table(*, uids: bool = True, start: bool = True) -> dict[int, ProcessInfo]:
    """Every process of the machine (of this pid namespace) that could be read.

    A scan reads each process's `stat` and `status`; one that needs less reads one file, half
    the reads (several scans a second for each running job): without `uids`, `stat` alone
    (`uids` empty), for a job told by ancestry (one user for worker and agent); without
    `start`, `status` alone (`start` 0), for a look that tells a job by its uid and does not
    follow processes from one scan to the next (the watch while a job runs, as root)."""
    if not (uids or start):
        raise ValueError("a scan reads the uids or the start times, or both")
    table: dict[int, ProcessInfo] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        info = _read_process(int(entry.name), uids, start)
        if info is not None:
            table[info.pid] = info
    return table


def _read_process(pid: int, with_uids: bool = True, with_start: bool = True) -> ProcessInfo | None:
    # Raw reads and byte parsing: a sweep reads every process of the machine, several times a
    # job, so this is on every job's path.
    try:
        stat = _read_small(f"/proc/{pid}/stat") if with_start else b""
        status = _read_small(f"/proc/{pid}/status") if with_uids else b""
    except OSError:  # gone meanwhile
        return None
    uids = tuple(int(value) for value in _status_field(status, b"Uid:").split())
    if not stat:
        # `status` alone: "PPid:\t1", "State:\tS (sleeping)" (its Name is escaped: a command
        # name cannot forge a line).
        state = _status_field(status, b"State:").split()
        return ProcessInfo(
            pid,
            int(_status_field(status, b"PPid:") or 0),
            state[0].decode(errors="replace") if state else "?",
            uids,
            0,
        )
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    return ProcessInfo(
        pid, int(fields[1]), fields[0].decode(errors="replace"), uids, int(fields[19])
    )


def _status_field(status: bytes, name: bytes) -> bytes:
    """The value of one line of /proc/<pid>/status (empty when it has none)."""
    at = status.find(b"\n" + name)
    if at < 0:
        return b""
    begin = at + 1 + len(name)
    end = status.find(b"\n", begin)
    return status[begin : end if end >= 0 else None].strip()


def _read_small(path: str) -> bytes:
    """A /proc file of at most a few KiB, in one read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 16384)
    finally:
        os.close(fd)


def descendants(table: dict[int, ProcessInfo], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found: set[int] = set()
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, loaded once: `find_library` runs `ldconfig` in a child process, which
    every job would otherwise pay for (twice) before its CLI starts."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper() -> None:
    """Make this process the reaper of every orphan among its descendants (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    if libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise ContainmentError(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")


@dataclass
class JobScope:
    """Which processes belong to one job."""

    uid: int | None  # the job's own uid (worker as root), or None (one user for all)
    #: (pid, start) of the worker's descendants alive when the job began: not the job's.
    before: frozenset[tuple[int, int]] = frozenset()
    #: The job's CLI, once started (its zombie is reaped by the SDK's event loop, not here).
    cli_pid: int | None = None
    #: Entries of the scratch directories when the job began (one user only).
    scratch_before: frozenset[str] = frozenset()

    @property
    def by_uid(self) -> bool:
        """Whether the job's processes are told by their uid (else by ancestry: their uids
        need not be read)."""
        return self.uid is not None

    def members(self, table: dict[int, ProcessInfo], worker: int, others: set[int]) -> set[int]:
        if self.by_uid:
            return {pid for pid, info in table.items() if self.uid in info.uids and pid != worker}
        excluded: set[int] = set()
        for pid in others:  # other jobs' CLIs running in this process, and their trees
            excluded |= {pid} | descendants(table, pid)
        return {
            pid
            for pid in descendants(table, worker) - excluded
            if (pid, table[pid].start) not in self.before
        }


@dataclass(frozen=True)
class Sweep:
    killed: int
    survivors: tuple[ProcessInfo, ...] = field(default=())


class ProcessSweeper:
    """Ends every process of a job. The CLIs running in this process are known to every
    sweeper of the process (the local stack runs several worker environments in one)."""

    _running_clis: ClassVar[set[int]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        grace_seconds: float = 3.0,
        scratch_dirs: tuple[str, ...] = SCRATCH_DIRS,
        alone: bool = False,
    ) -> None:
        """`alone`: the worker is the only user of its execution environment (Lambda), so as
        one user with the agent it may clear what appeared in the scratch directories during a
        job. As root it always may (the job's uid tells its files apart)."""
        self._grace = grace_seconds
        self._scratch_dirs = scratch_dirs
        self._alone = alone
        self._worker = os.getpid()

    def scope(self, uid: int | None) -> JobScope:
        """The scope of a job about to start (worker as root: its uid; else a snapshot)."""
        if not sys.platform.startswith("linux"):
            raise ContainmentError("containing the agent's processes needs Linux's /proc")
        self._worker = os.getpid()
        if uid is not None:
            return JobScope(uid=uid)
        table = process_table(uids=False)
        before = frozenset(
            (pid, table[pid].start) for pid in descendants(table, self._worker) if pid in table
        )
        scratch = frozenset(self._scratch_entries()) if self._alone else frozenset()
        return JobScope(uid=None, before=before, scratch_before=scratch)

    def started(self, scope: JobScope, cli_pid: int) -> None:
        """The job's CLI is running (other jobs' sweeps leave its tree alone meanwhile)."""
        scope.cli_pid = cli_pid
        with self._lock:
            self._running_clis.add(cli_pid)

    def sweep(self, scope: JobScope) -> Sweep:
        """Freeze, kill and reap every process of the job; report what could not be ended."""
        with self._lock:
            if scope.cli_pid is not None:
                self._running_clis.discard(scope.cli_pid)
            others = set(self._running_clis)
        frozen: dict[int, int] = {}
        for _ in range(_MAX_FREEZE_ROUNDS):
            table = process_table(uids=scope.by_uid)
            members = scope.members(table, self._worker, others)
            found = [
                table[pid]
                for pid in members
                if table[pid].alive and frozen.get(pid) != table[pid].start
            ]
            if not found and not frozen:
                # Nothing of the job is alive (the usual end: the CLI exited and took its
                # tools with it); no process was stopped, so none can have appeared since this
                # scan. Collect its zombies, and done.
                self._reap(table[pid] for pid in members if pid != scope.cli_pid)
                self._clear_scratch(scope)
                return Sweep(killed=0)
            if not found:
                break
            for info in found:
                _signal(info.pid, signal.SIGSTOP)
                frozen[info.pid] = info.start
        for pid in frozen:
            _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + self._grace
        while True:
            table = process_table(uids=scope.by_uid)
            members = scope.members(table, self._worker, others)
            self._reap(table[pid] for pid in members if pid != scope.cli_pid)
            left = tuple(table[pid] for pid in sorted(members) if table[pid].alive)
            if not left or time.monotonic() > deadline:
                if not left:
                    self._clear_scratch(scope)
                # Survivors are reported with their uids.
                survivors = tuple(_read_process(info.pid) or info for info in left)
                return Sweep(killed=len(frozen), survivors=survivors)
            for info in left:
                _signal(info.pid, signal.SIGKILL)
            time.sleep(0.01)

    def tend(self, scope: JobScope) -> int:
        """While the job runs (issue 20): reap its zombies re-parented to the worker (a fork
        chain leaves one per generation, which would fill the pid table before the sweep) and
        return how many of its processes are alive. The CLI's own exit status is left to the
        SDK's event loop."""
        with self._lock:
            others = set(self._running_clis) - {scope.cli_pid}
        # One file a process: what telling the job's processes needs (their uids, or their
        # ancestry and start times), and their state and parent for the count and the reaping.
        table = process_table(uids=scope.by_uid, start=not scope.by_uid)
        members = scope.members(table, self._worker, others)
        self._reap(table[pid] for pid in members if pid != scope.cli_pid)
        return sum(1 for pid in members if table[pid].alive)

    def _scratch_entries(self) -> list[str]:
        entries: list[str] = []
        for directory in self._scratch_dirs:
            with contextlib.suppress(OSError):
                entries.extend(entry.path for entry in os.scandir(directory))
        return entries

    def _clear_scratch(self, scope: JobScope) -> None:
        """Remove what the job left in the scratch directories (its sandbox goes on its own)."""
        if scope.uid is None and not self._alone:
            return
        for path in self._scratch_entries():
            if path in scope.scratch_before:
                continue
            try:
                owner = os.lstat(path).st_uid
            except OSError:
                continue
            if scope.uid is not None and owner != scope.uid:
                continue
            remove_tree(Path(path))

    def _reap(self, processes: Iterable[ProcessInfo]) -> None:
        """Collect the zombies re-parented to the worker (they would fill the pid table)."""
        for info in processes:
            if info.state == "Z" and info.ppid == self._worker:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(info.pid, os.WNOHANG)


def uids_in_use(table: dict[int, ProcessInfo] | None = None) -> set[int]:
    """Every uid a live process holds as its real, effective or saved uid."""
    table = process_table() if table is None else table
    return {uid for info in table.values() if info.alive for uid in info.uids[:3]}


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, number)
