"""Fork chains (issue 20): the worker reaps the zombies a fork chain leaves while the job runs,
caps the agent's processes, and (as root, a uid per job) holds the job's uid to RLIMIT_NPROC.

Through the real CLI, in both layouts: in this test's process (as root: a uid per job), and the
one-user image layout of `test_image.py` (worker and agent one non-root user, the built files
only). The scripted model decides from the conversation it receives: the first turn (no tool
result yet) runs the command, the next reports the tool's result. Bounded: a chain of 80
generations, a tree of 40 sleeping processes; each test takes a few seconds."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_jobs.models import JobRequest, JobStatus
from claude_jobs.wiring import Container
from claude_jobs.worker.containment import process_table
from claude_jobs.worker.process_watch import TOO_MANY_PROCESSES
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic, RecordedRequest, Text, ToolUse
from tests.worker.conftest import REAL_KEY, WorkerStack, _worker_stack, sqs_event
from tests.worker.image_layout import (
    required_runtime_python,
    run_warm,
    worker_env,
)

pytestmark = pytest.mark.cli

GENERATIONS = 80
#: Each generation forks the next and exits: every one but the first is orphaned, re-parented
#: to the worker (a child subreaper), and a zombie of the worker once it exits.
CHAIN = (
    "python3 -c 'import os,time\n"
    f"for i in range({GENERATIONS}):\n"
    "    if os.fork(): os._exit(0)\n"
    "    time.sleep(0.005)\n"
    "'; python3 -c 'import time; time.sleep(2)'; echo chain-done"
)
#: 40 processes alive at once (each sleeps 15 s), the parent waits 4 s.
TREE = (
    "python3 -c 'import os,time\n"
    "for i in range(40):\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(15); os._exit(0)\n"
    "time.sleep(4)\n"
    "'; echo tree-done"
)
MAX_PROCESSES = 24


def model(command: str, on_result: Callable[[], None] = lambda: None) -> Any:
    """Runs `command`, then reports what it printed."""

    def respond(request: RecordedRequest) -> Any:
        results = request.tool_results()
        if not results:
            return ToolUse("Bash", {"command": command})
        on_result()
        return Text(f"it printed: {results[0]['content'][-300:]}")

    return respond


def zombies_of(pid: int) -> int:
    return sum(1 for info in process_table().values() if info.ppid == pid and info.state == "Z")


def live_sleepers(seconds: str) -> list[int]:
    found = []
    for pid, info in process_table().items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if info.alive and b"python3" in cmdline and seconds.encode() in cmdline:
            found.append(pid)
    return found


# ---------------------------------------------------------------- in this process


@pytest.fixture
def capped(
    aws: None, fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerStack]:
    yield from _worker_stack(
        "wf",
        fake,
        monkeypatch,
        agent_max_processes=MAX_PROCESSES,
        process_watch_seconds=0.1,
    )


def test_a_fork_chain_leaves_no_zombies_while_the_job_runs(capped: WorkerStack) -> None:
    # Given an agent whose Bash call runs a fork chain of 80 generations, then waits
    seen: list[int] = []
    capped.fake.default = model(CHAIN, lambda: seen.append(zombies_of(os.getpid())))
    job = capped.submit("Run the chain.", allowed_tools=["Bash"])
    # When the worker runs it
    capped.deliver(job)
    # Then the job succeeded, and when the chain was done (the next model call) the worker
    # held at most a zombie or two of it, not one per generation
    done = capped.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and "chain-done" in (done.result.text or "")
    assert len(seen) == 1 and seen[0] <= 3, seen


def test_too_many_processes_end_the_job(capped: WorkerStack) -> None:
    # Given an agent whose Bash call keeps 40 processes alive (the cap is 24)
    capped.fake.default = model(TREE)
    job = capped.submit("Grow.", allowed_tools=["Bash"])
    # When the worker runs it
    capped.deliver(job)
    # Then the job ended failed with too_many_processes and a clear message
    done = capped.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == TOO_MANY_PROCESSES
    assert "more than 24 processes" in done.error.message
    # And nothing of the tree is left
    assert live_sleepers("time.sleep(15)") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a uid per job needs a root worker")
def test_as_root_the_jobs_uid_is_held_to_its_tasks_limit(capped: WorkerStack) -> None:
    # Given an agent that reads its own limits
    capped.fake.default = model("grep 'Max processes' /proc/self/limits")
    job = capped.submit("Look at your limits.", allowed_tools=["Bash"])
    # When the worker runs it
    capped.deliver(job)
    # Then the kernel holds it to AGENT_MAX_PROCESSES + AGENT_THREAD_ALLOWANCE tasks
    done = capped.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    limit = MAX_PROCESSES + capped.container.settings.agent_thread_allowance
    text = done.result.text if done.result is not None else ""
    assert f"Max processes             {limit}                  {limit}" in (text or ""), text


# ---------------------------------------------------------------- the one-user image layout


@pytest.mark.parametrize("attack", ["chain", "tree"])
def test_in_the_image_layout_fork_chains_are_reaped_and_capped(
    task_root: Path,
    image_site: Path,
    moto_server: str,
    shared_dir: Path,
    attack: str,
) -> None:
    python = required_runtime_python()
    from claude_jobs_tools.provision import provision

    # Given the worker as its image runs it (one user with its agent), and an agent that runs
    # a fork chain, or keeps 40 processes alive
    worker: list[int] = []
    seen: list[int] = []
    scratch = shared_dir / "scratch"
    scratch.mkdir(mode=0o777)
    os.chmod(scratch, 0o777)  # noqa: S103 - the runtime user writes here
    with FakeAnthropic(api_key=REAL_KEY) as fake:
        provisioned = provision(f"fork{attack}", secret_value=REAL_KEY, anthropic_base_url=fake.url)
        container = Container(provisioned.settings)
        job = container.job_service.submit(
            "tenant-a", JobRequest(prompt="Fork.", allowed_tools=["Bash"])
        ).job
        command = CHAIN if attack == "chain" else TREE
        fake.default = model(command, lambda: seen.append(zombies_of(worker[0])))
        env = worker_env(task_root, image_site, moto_server, provisioned.settings, fake.url)
        env["AGENT_MAX_PROCESSES"] = str(MAX_PROCESSES)
        env["PROCESS_WATCH_SECONDS"] = "0.1"
        env["WARM_START"] = "false"
        # (its scratch directory its own: other tests' workers of the same user may run at the
        # same time on this machine, which never happens in one Lambda environment)
        env["SCRATCH_DIRS"] = str(scratch)
        # When one worker process runs the job
        run = run_warm(python, task_root, env, [sqs_event(job)], once_loaded=worker.append)
        assert run.returncode == 0, run.stderr[-3000:]
        done = container.job_repository.get(job.job_id)
        assert done is not None
    if attack == "chain":
        # Then the chain's zombies were reaped while the job ran
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert len(seen) == 1 and seen[0] <= 3, seen
    else:
        # Then the job ended too_many_processes, and nothing of the tree is left
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == TOO_MANY_PROCESSES
        assert live_sleepers("time.sleep(15)") == []
