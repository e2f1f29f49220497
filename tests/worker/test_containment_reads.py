"""What the worker reads of /proc to contain a job's processes (`containment.py`).

A scan reads every process of the machine, several times a second for each running job, so
each reads one file a process where that is enough:
- with one user for worker and agent, a job's processes are told by ancestry (the worker's
  descendants that began after the job): its start, the watch every `PROCESS_WATCH_SECONDS`
  and the sweep read each process's `stat` only;
- as root, a job's processes are told by their uid: the watch reads each process's `status`
  only (uids, parent, state), the sweep both (it follows frozen processes by start time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_jobs.worker import containment
from claude_jobs.worker.containment import JobScope, ProcessSweeper

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    original = containment._read_small

    def recording(path: str) -> bytes:
        read.append(path)
        return original(path)

    monkeypatch.setattr(containment, "_read_small", recording)
    return read


def test_a_one_user_job_is_watched_and_swept_from_stat_alone(reads: list[str]) -> None:
    # Given a job begun with one user for worker and agent, and a process of the job
    sweeper = ProcessSweeper(scratch_dirs=())
    scope = sweeper.scope(None)
    agent = subprocess.Popen(["sleep", "30"])
    try:
        # When the watch looks at it, then the job's end sweeps it
        alive = sweeper.tend(scope)
        swept = sweeper.sweep(scope)
    finally:
        agent.kill()
        agent.wait()
    # Then the watch counted it and the sweep ended it
    assert alive == 1
    assert swept.killed == 1 and not swept.survivors
    # and no scan read a process's status, only its stat
    assert reads and all(path.endswith("/stat") for path in reads), {
        path for path in reads if not path.endswith("/stat")
    }


def test_a_job_told_by_its_uid_is_watched_from_status_alone(reads: list[str]) -> None:
    # Given a job told by its uid (as root: a uid per job); this process stands for it
    sweeper = ProcessSweeper(scratch_dirs=())
    scope = JobScope(uid=os.getuid())
    child = subprocess.Popen(["sleep", "30"])
    try:
        # When the watch looks at the job's processes
        alive = sweeper.tend(scope)
        watched = list(reads)
        table = containment.process_table()
    finally:
        child.kill()
        child.wait()
    # Then it read each process's status (uids, parent, state), not its stat
    assert watched and all(path.endswith("/status") for path in watched), {
        path for path in watched if not path.endswith("/status")
    }
    # and counted the live processes of that uid (the child among them, as a full scan tells)
    assert child.pid in {p for p, info in table.items() if os.getuid() in info.uids}
    assert alive >= 1


def _asleep(pid: int, seconds: float = 10.0) -> bool:
    """Whether the process has become `sleep` and is sleeping, within `seconds` (a child just
    started may still be running: exec'ing, loading)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = stat.read_text()
        if text.startswith(f"{pid} (sleep)") and text.rsplit(")", 1)[1].split()[0] == "S":
            return True
        time.sleep(0.01)
    return False


def test_status_alone_tells_what_a_full_scan_tells() -> None:
    # Given this process and a child of it, sleeping
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert _asleep(child.pid)
        # When they are read from status alone and from both files
        full = containment.process_table()
        status_only = containment.process_table(start=False)
        stat_only = containment.process_table(uids=False)
    finally:
        child.kill()
        child.wait()
    # Then parent, state and uids agree (the start time only where stat was read)
    for pid in (os.getpid(), child.pid):
        assert (status_only[pid].ppid, status_only[pid].uids) == (full[pid].ppid, full[pid].uids)
        assert status_only[pid].start == 0 and stat_only[pid].start == full[pid].start
        assert stat_only[pid].ppid == full[pid].ppid and stat_only[pid].uids == ()
    assert status_only[child.pid].state == full[child.pid].state == "S"
    with pytest.raises(ValueError, match="uids or the start times"):
        containment.process_table(uids=False, start=False)
