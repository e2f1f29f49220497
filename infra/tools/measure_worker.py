"""Measure the worker's peak memory and /tmp use on one real job; sizes the worker function.

Runs the worker's image-layout test (tests/worker/test_image.py: the handler from exactly the
files the Dockerfile copies, as a non-root user, the real bundled Claude Code CLI against the
fake Messages API, one Bash tool call) and samples, every 20 ms, the process tree of the
handler process: the sum of RSS and of PSS (shared pages counted once, closer to what Lambda's
cgroup charges), and the bytes under /tmp owned by the runtime user.

    .venv/bin/python -m infra.tools.measure_worker
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

TEST = "tests/worker/test_image.py::test_a_job_succeeds_in_the_image_layout_as_a_non_root_user"
ROOT = Path(__file__).resolve().parents[2]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _harness_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"import handler" in cmdline:
                found.append(int(entry))
    return found


def _kib(pid: int, path: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tmp_bytes(uid: int) -> int:
    total = 0
    # Lambda gives the function /tmp only; the test runs the worker with TMPDIR=/tmp.
    for dirpath, _dirs, files in os.walk("/tmp"):  # noqa: S108
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_uid == uid:
                total += st.st_size
    return total


def main() -> int:
    peak = {"rss": 0, "pss": 0, "tmp": 0, "processes": 0}
    done = threading.Event()
    runtime_uid = 65534 if os.geteuid() == 0 else os.geteuid()  # nobody when run as root

    def sample() -> None:
        while not done.is_set():
            roots = _harness_pids()
            if roots:
                tree = _children()
                pids, stack = [], list(roots)
                while stack:
                    pid = stack.pop()
                    pids.append(pid)
                    stack.extend(tree.get(pid, []))
                peak["rss"] = max(peak["rss"], sum(_kib(p, "status", "VmRSS") for p in pids))
                peak["pss"] = max(peak["pss"], sum(_kib(p, "smaps_rollup", "Pss") for p in pids))
                peak["processes"] = max(peak["processes"], len(pids))
                peak["tmp"] = max(peak["tmp"], _tmp_bytes(runtime_uid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST], cwd=ROOT
    )
    done.set()
    sampler.join()
    print(
        f"peak RSS sum {peak['rss'] / 1024:.0f} MiB, peak PSS sum {peak['pss'] / 1024:.0f} MiB, "
        f"peak /tmp {peak['tmp'] / 2**20:.1f} MiB, processes {peak['processes']}"
    )
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
