"""A hostile agent tries to outlive its job: daemons, `setsid`, double forks, processes that
ignore SIGTERM, and a survivor that watches the next job of the same warm worker.

The worker runs in this test's process (as root in CI: each job gets its own uid; as a
non-root developer: one user for worker and agent, as on Lambda). The image-layout tests in
`test_image.py` run the same attacks as a non-root worker process reused across jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_jobs.models import JobStatus
from claude_jobs.worker.containment import (
    JobScope,
    ProcessInfo,
    ProcessSweeper,
    Sweep,
    process_table,
)
from claude_jobs.worker.function import WorkerFunction
from claude_jobs.worker.isolation import AgentIdentity, IdentityPool, IsolationError
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse
from tests.worker.conftest import REAL_KEY, LambdaContext, WorkerStack, sqs_event

pytestmark = pytest.mark.cli

#: Ways an agent leaves a process behind. Each runs `sleep <marker>` at the end of its chain.
ESCAPES = {
    "background": "nice -n 1 sleep {m} >/dev/null 2>&1 &",
    "nohup": "nohup sleep {m} >/dev/null 2>&1 &",
    "setsid": "setsid nohup sleep {m} >/dev/null 2>&1 < /dev/null &",
    "double fork": "( ( setsid sleep {m} >/dev/null 2>&1 < /dev/null & ) & ) ; sleep 0.2",
    "ignores SIGTERM": (
        "setsid sh -c 'trap \"\" TERM HUP INT; sleep {m}; sleep {m}' >/dev/null 2>&1 < /dev/null &"
    ),
    "python daemon": (
        "python3 -c 'import os,time\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): os._exit(0)\n"
        'os.execvp("sleep", ["sleep", "{m}"])\' >/dev/null 2>&1 < /dev/null; sleep 0.2'
    ),
}


def marker() -> str:
    """A `sleep` argument no other process on the machine uses."""
    return f"{int(time.time()) % 1000 + 9000}.{uuid.uuid4().int % 10**9:09d}"


def processes_with(text: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains `text`."""
    found = []
    for pid, info in process_table().items():
        if info.state == "Z":
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(pid)
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_nothing_the_agent_starts_outlives_its_job(stack: WorkerStack, escape: str) -> None:
    # Given a job allowed Bash whose agent leaves a process behind and ends at once
    m = marker()
    job = stack.submit(allowed_tools=["Bash"])
    stack.fake.script(ToolUse("Bash", {"command": ESCAPES[escape].format(m=m)}), Text("bye"))
    try:
        # When the worker runs it to the end
        stack.deliver(job)
        # Then the job succeeded, the process was alive while it ran (the tool result says
        # so) and none of it is left
        assert stack.get(job).status is JobStatus.SUCCEEDED
        assert processes_with(m) == []
    finally:
        kill_all(processes_with(m))


#: Files an agent leaves outside its sandbox, for the next job to find.
LEFTOVERS = (
    "echo planted > /tmp/cj-left-{m}; mkdir -p /dev/shm/cj-left-{m}/deep; "
    "echo planted > /dev/shm/cj-left-{m}/deep/note; ln -s /etc/passwd /var/tmp/cj-left-{m}; "
    "chmod 000 /dev/shm/cj-left-{m}/deep"
)


def leftovers(m: str) -> list[str]:
    return [
        path
        for path in (f"/tmp/cj-left-{m}", f"/dev/shm/cj-left-{m}", f"/var/tmp/cj-left-{m}")
        if os.path.lexists(path)
    ]


def test_files_the_agent_leaves_outside_its_sandbox_go_with_its_job(stack: WorkerStack) -> None:
    # Given a job whose agent leaves a file, a locked directory and a link in the scratch
    # directories every process may write to
    m = marker()
    job = stack.submit(allowed_tools=["Bash"])
    stack.fake.script(ToolUse("Bash", {"command": LEFTOVERS.format(m=m)}), Text("left"))
    try:
        # When the worker runs it to the end
        stack.deliver(job)
        # Then they were there while it ran, and are gone with it
        (result,) = stack.fake.message_requests[1].tool_results()
        assert not result["is_error"], result
        assert leftovers(m) == []
    finally:
        for path in leftovers(m):
            subprocess.run(["rm", "-rf", path], check=False)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory under /tmp that the agent's user, whoever it is, may write to."""
    path = Path(tempfile.mkdtemp(prefix="cj-hostile-"))
    os.chmod(path, 0o777)  # noqa: S103 - the agent's uid writes here
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_survivor_cannot_watch_the_next_job_of_the_same_worker(
    stack: WorkerStack, monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    # Given the worker's AWS credentials (as Lambda sets them) and a watcher log anyone may
    # write to
    sentinel = f"aws-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sentinel)
    log = shared_dir / "watch.log"
    log.touch()
    os.chmod(log, 0o666)  # noqa: S103 - the agent's uid writes the log
    # And a first job whose agent detaches a watcher that, every few milliseconds, copies
    # every environment and sandbox file it can read into the log
    m = marker()
    watcher = (
        "import glob,os,time\n"
        f"end = time.time() + 20\n"
        "while time.time() < end:\n"
        "    seen = []\n"
        "    for path in glob.glob('/proc/[0-9]*/environ') + glob.glob('/tmp/claude-job-*/**', "
        "recursive=True):\n"
        "        try:\n"
        "            seen.append(open(path, 'rb').read().decode('utf-8', 'replace'))\n"
        "        except OSError:\n"
        "            pass\n"
        f"    open('{log}', 'a').write('\\n'.join(seen) + '\\nTICK\\n')\n"
        "    time.sleep(0.005)\n"
    )
    script = shared_dir / "watcher.py"
    script.write_text(watcher)
    os.chmod(script, 0o644)
    first = stack.submit(allowed_tools=["Bash"])
    stack.fake.script(
        ToolUse(
            "Bash",
            {"command": f"setsid python3 {script} {m} >/dev/null 2>&1 < /dev/null & sleep 0.3"},
        ),
        Text("planted"),
    )
    try:
        stack.deliver(first)
        ticks_after_first = log.read_text().count("TICK")
        # When the same warm worker runs the next job, with a secret prompt
        secret_prompt = f"the launch code is {uuid.uuid4().hex}"
        second = stack.submit(secret_prompt, allowed_tools=[])
        stack.fake.script(Text("noted"))
        stack.deliver(second)
        time.sleep(0.2)
        # Then the watcher was gone before the second job started: it logged nothing more,
        # and nothing of the second job (its prompt, its token, the worker's credentials)
        seen = log.read_text()
        assert stack.get(first).status is JobStatus.SUCCEEDED
        assert stack.get(second).status is JobStatus.SUCCEEDED
        assert ticks_after_first >= 1  # it did run during the first job
        assert seen.count("TICK") == ticks_after_first
        assert secret_prompt not in seen and sentinel not in seen and REAL_KEY not in seen
        assert processes_with(str(script)) == []
    finally:
        kill_all(processes_with(str(script)))


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are leased only when the worker is root")
def test_a_uid_is_not_leased_again_while_a_process_of_its_last_holder_lives() -> None:
    # Given a pool of three uids, and a process still running as the first one
    pool = IdentityPool(AgentIdentity(uid=65534, gid=65534, name="nobody"), "61990-61992")
    leftover = subprocess.Popen(["sleep", "30"], user=61990, group=61990, extra_groups=[])
    try:
        # When jobs lease uids one after another
        leased = []
        for _ in range(4):
            with pool.lease() as identity:
                leased.append(identity.uid)
        # Then the busy uid is never handed out, and the others rotate (least recently used
        # first) rather than the lowest free one coming back at once
        assert 61990 not in leased
        assert leased == [61991, 61992, 61991, 61992]
    finally:
        leftover.kill()
        leftover.wait()
    # And once it is gone, the uid is leased again
    with pool.lease() as identity:
        assert identity.uid == 61990


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are leased only when the worker is root")
def test_a_quarantined_uid_is_never_leased_again() -> None:
    # Given a pool of one uid that is quarantined (a process of its holder could not be ended)
    pool = IdentityPool(AgentIdentity(uid=65534, gid=65534, name="nobody"), "61993-61993")
    pool.quarantine(61993)
    # When a job leases a uid
    # Then there is none left: the worker fails that attempt rather than share the uid
    with pytest.raises(IsolationError), pool.lease():
        pass


class UnendingSweeper(ProcessSweeper):
    """Sweeps for real, then reports one process it could not end (as a setuid one is)."""

    def sweep(self, scope: JobScope) -> Sweep:
        done = super().sweep(scope)
        return Sweep(done.killed, (ProcessInfo(4242, 1, "S", (0, 0, 0, 0), 1),))


def test_when_a_process_cannot_be_ended_the_result_is_recorded_then_the_environment_retires(
    stack: WorkerStack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker whose sweep leaves a process it cannot end, and a way to see the moment
    # it retires its execution environment
    states: list[JobStatus] = []
    printed_before_retiring: list[str] = []

    def retire() -> None:
        states.append(stack.get(job).status)
        printed_before_retiring.append(capsys.readouterr().out)

    job = stack.submit()
    function = WorkerFunction(
        stack.container,
        retire=retire,
        sweeper=UnendingSweeper(),
        min_run_seconds=1,
    )
    stack.fake.script(Text("done"))
    try:
        # When it runs the job
        answer = function.handler(sqs_event(job), LambdaContext())
    finally:
        function.processor.ports.proxy.close()
    # Then it retired exactly once, after the job's result was recorded
    assert answer == {"batchItemFailures": []}
    assert states == [JobStatus.SUCCEEDED]
    # And said so in a log line and a metric
    retired = [r.getMessage() for r in caplog.records if getattr(r, "retire", False)]
    assert len(retired) == 1 and "retiring this execution environment" in retired[0]
    assert "pid 4242" in retired[0]
    # (the metric flushed before the environment retired: retiring may end the process)
    (printed,) = printed_before_retiring
    out = [json.loads(line) for line in printed.splitlines() if line[:1] == "{"]
    assert any(line.get("EnvironmentsRetired") == [1.0] for line in out)
