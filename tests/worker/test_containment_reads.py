"""What the worker reads of /proc to contain a job's processes (`containment.py`).

With one user for worker and agent, a job's processes are told by ancestry (the worker's
descendants that began after the job), so the scans made while the job runs (its start, the
watch every `PROCESS_WATCH_SECONDS`, the sweep's freeze) read each process's `stat` only: half
the reads of a scan, several times a second for each running job. As root, a job's processes
are told by their uid, so its scans still read `status` for the uids.
"""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_a_job_told_by_its_uid_still_reads_the_uids(reads: list[str]) -> None:
    # Given a job told by its uid (as root: a uid per job); this process stands for it
    sweeper = ProcessSweeper(scratch_dirs=())
    scope = JobScope(uid=os.getuid())
    child = subprocess.Popen(["sleep", "30"])
    try:
        # When the watch looks at the job's processes
        alive = sweeper.tend(scope)
    finally:
        child.kill()
        child.wait()
    # Then it read the uids of the processes and found the ones of that uid
    assert any(path.endswith("/status") for path in reads)
    assert alive >= 1
