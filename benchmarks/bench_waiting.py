"""Waiting: what callers who wait for their jobs cost (issue 26).

- drains on one `claude-jobs dev` stack (as `bench_e2e.py`: workers = cores x 2, a scripted
  upstream, the bundled CLI), interleaved in one run: 20 jobs with nobody waiting per job (the
  e2e bench's drain: one observer), 20 callers each waiting for its own job the way
  `claude-jobs submit --wait` does (following the progress events with `?wait=20`, then one
  `GET ?wait=20`), and 20 callers each long-polling `GET /v1/jobs/{id}?wait=20`. Each against
  the CPU floor (the direct CLI's CPU x N / cores, direct runs interleaved), with the CPU
  split by process: the dev process itself (emulator, functions, pollers) and the CLIs. One
  unmeasured drain with a caller per job comes first: it loads the environments of the submit
  and status functions that twenty callers at once keep busy (`warm_environments`). Each round
  also runs the same jobs as `claude -p`, as many at once as the stack has workers (`CLIs
  alone`): each drain's wall over that one is what the stack adds at equal concurrency, apart
  from what running the CLIs side by side costs the machine. And as a warm pool would (`pool
  alone`): as many CLIs as workers started and booted before the clock, a fresh one started for
  each next job, no stack; the floor of any design that gives each job its own CLI.
- one job: the paired overhead of a job through the stack over a direct `claude -p`.
- reads per waiting minute: an in-process stack (the same `LocalStack`), two callers each
  waiting a full minute for a job whose model call is held longer, one following its events
  and one long-polling its status; every DynamoDB read the status function makes while it
  serves a caller is counted (botocore's client call), and its seconds per waiting minute.
- cost: what 1,000 callers waiting a minute cost on AWS, before (the fixed 50/100 ms
  schedule) and after (these measured figures), by `cost_model.waiting_cost_per_thousand`.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import bench_e2e as e2e

DESCRIPTION = "waiting callers: drains with a caller per job, reads a waiting minute, its cost"
JOBS = 20
DEFAULT_ROUNDS = 2
ONE_JOB_ROUNDS = 8
#: The model call of a job held this long: the waiting-minute measurement's job outlasts it.
HOLD_SECONDS = 75.0
WAIT_MINUTE = 60.0
#: Targets (issue 26).
DRAIN_RATIO = 1.25
READS_PER_MINUTE = 60
OVERHEAD_P50 = 0.100


def answer(request: Any) -> Any:
    from claude_jobs_tools.local.fake_anthropic import Text

    if "[[hold]]" in request.prompt_text():
        return Text("held", delay=HOLD_SECONDS)
    return e2e.answer(request)


# ------------------------------------------------------------------ drains


@dataclass
class WaitDrain:
    mode: str
    jobs: int
    wall: float
    floor: float
    own_cpu: float  # the dev process itself
    children_cpu: float  # the CLIs it reaped

    direct_cpu: float  # the direct CLI's CPU seconds for one job (median of the run)

    @property
    def ratio(self) -> float:
        return self.wall / self.floor

    @property
    def cpu_ratio(self) -> float:
        """The stack's CPU a job (dev process + CLIs) over the direct CLI's: the drain's ratio
        if the cores did nothing else and never idled (load from other work does not move it,
        where it stretches the wall)."""
        return (self.own_cpu + self.children_cpu) / self.jobs / self.direct_cpu


@dataclass
class DirectDrain:
    """The same N one-call jobs as `claude -p` runs, as many at once as the stack has
    workers: what the machine does with the CLIs alone at the drains' concurrency."""

    wall: float
    cpu: float  # the CLIs' CPU seconds, all of them


def direct_drain(upstream: str, jobs: int, at_once: int) -> DirectDrain:
    def reaped_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    cpu_before = reaped_cpu()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        list(pool.map(lambda _: e2e.direct_run(upstream), range(jobs)))
    return DirectDrain(time.perf_counter() - started, reaped_cpu() - cpu_before)


def _pooled_cli(upstream: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A CLI started as a warm pool starts one: in a fresh HOME, waiting for its prompt on
    stdin (stream-json, as the SDK drives it)."""
    from claude_jobs.worker.isolation import bundled_cli

    home = Path(tempfile.mkdtemp(prefix="claude-jobs-bench-pool-"))
    argv = [str(bundled_cli()), "-p", "--input-format", "stream-json"]
    argv += ["--output-format", "stream-json", "--verbose"]
    process = subprocess.Popen(
        argv,
        env=e2e.cli_env(upstream, home),
        cwd=home,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    return process, home


def _pooled_job(process: subprocess.Popen[bytes], home: Path) -> None:
    """One job in a pooled CLI, which then ends (one job per CLI, as the contract has it)."""
    assert process.stdin is not None and process.stdout is not None
    prompt = {"type": "user", "message": {"role": "user", "content": "Say hello"}}
    try:
        process.stdin.write(json.dumps(prompt).encode() + b"\n")
        process.stdin.flush()
        for line in process.stdout:
            compact = line.replace(b" ", b"")
            if b'"type":"result"' in compact:
                if b'"is_error":false' not in compact:
                    raise RuntimeError(f"a pooled CLI's job failed: {line[:300]!r}")
                break
        else:
            raise RuntimeError("a pooled CLI ended without a result")
        process.stdin.close()
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(home, ignore_errors=True)


def _booted(processes: list[subprocess.Popen[bytes]], quiet_seconds: float = 0.5) -> None:
    """Wait until none of `processes` used CPU for `quiet_seconds` (each waits for its prompt)."""

    def ticks() -> list[int]:
        return [e2e.cpu_ticks(process.pid, reaped=False)[0] for process in processes]

    last: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = ticks()
        if now == last:
            return
        last = now


def pool_drain(upstream: str, jobs: int, at_once: int) -> float:
    """The drain's best case under the contract, without the stack: `at_once` CLIs started and
    booted before the clock (a warm pool, as the worker's warm start keeps one per execution
    environment), each taking one job and replaced by a fresh one as it ends, since a CLI never
    serves a second job (a fresh HOME per job; nothing of a job outlives it): the peer's warm
    pool without its server. The wall seconds until the last job is answered."""
    pool = [_pooled_cli(upstream) for _ in range(at_once)]
    _booted([process for process, _ in pool])
    left = jobs - at_once
    lock = threading.Lock()

    def lane(first: tuple[subprocess.Popen[bytes], Path]) -> None:
        nonlocal left
        item = first
        while True:
            _pooled_job(*item)
            with lock:
                if left <= 0:
                    return
                left -= 1
            item = _pooled_cli(upstream)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=at_once) as lanes:
        list(lanes.map(lane, pool))
    return time.perf_counter() - started


def _cpu_split(stack: e2e.Stack) -> tuple[float, float]:
    own, reaped = e2e.cpu_ticks(stack.process.pid)
    ticks = os.sysconf("SC_CLK_TCK")
    return own / ticks, reaped / ticks


def _follow_then_wait(client: Any, job_id: str) -> dict[str, Any]:
    """What `claude-jobs submit --wait` does: follow the events to the end, read the job."""
    for _ in client.iter_events(job_id, follow=True):
        pass
    job: dict[str, Any] = client.wait(job_id, timeout=600)
    return job


def waiting_drain(
    stack: e2e.Stack, clients: list[Any], jobs: int, direct_cpu: float, mode: str
) -> WaitDrain:
    """`jobs` submitted at once; `observer`: one caller waits for them, the last first (the
    e2e drain); `cli`: each job's caller follows it as the CLI does; `long-poll`: each job's
    caller long-polls its status. Timed until the last caller has its answer."""
    own_before, children_before = _cpu_split(stack)
    started = time.perf_counter()

    def submit(index: int) -> tuple[Any, str]:
        client = clients[index % len(clients)]
        return client, client.submit(f"Say hello {index}", allowed_tools=[])["job_id"]

    wait: Callable[[Any, str], dict[str, Any]] = (
        _follow_then_wait if mode == "cli" else lambda c, j: c.wait(j, timeout=600)
    )
    if mode == "observer":
        with ThreadPoolExecutor(max_workers=8) as pool:
            submitted = list(pool.map(submit, range(jobs)))
        ended = [wait(client, job_id) for client, job_id in reversed(submitted)]
    else:

        def caller(index: int) -> dict[str, Any]:
            client, job_id = submit(index)
            return wait(client, job_id)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            ended = list(pool.map(caller, range(jobs)))
    wall = time.perf_counter() - started
    for job in ended:
        if job["status"] != "succeeded":
            raise RuntimeError(f"a drain job ended {job['status']}: {job.get('error')}")
    own_after, children_after = _cpu_split(stack)
    return WaitDrain(
        mode,
        jobs,
        wall,
        direct_cpu * jobs / e2e.CORES,
        own_after - own_before,
        children_after - children_before,
        direct_cpu,
    )


def warm_environments(stack: e2e.Stack, clients: list[Any], jobs: int, direct_cpu: float) -> None:
    """The submit and status functions' environments, loaded before the measured drains, as a
    service that callers keep submitting to and waiting on has them: one unmeasured drain with
    a caller per job. Twenty callers at once submit at once and wait at once: twenty
    environments of each function (one a concurrent request, as on Lambda), and a cold one
    costs its init (modules, clients, the page token secret). Otherwise the first drain of a
    kind pays up to ~40 cold starts that later ones do not (measured: ~0.3 of its ratio)."""
    waiting_drain(stack, clients, jobs, direct_cpu, "cli")
    stack.settle()


# ------------------------------------------------------------------ a waiting minute


@dataclass
class WaitingMinute:
    status_reads: int
    events_reads: int
    status_requests: int
    events_requests: int
    #: Seconds the status function ran (summed over its invocations) for each caller.
    status_function_seconds: float
    events_function_seconds: float
    answered_early: list[str]


class _ReadCounter:
    """Counts the DynamoDB reads made inside API function invocations, by job id."""

    READS = frozenset({"GetItem", "Query", "BatchGetItem"})

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._original: Any = None

    def __enter__(self) -> _ReadCounter:
        from botocore.client import BaseClient

        self._original = getattr(BaseClient, "_make_api_call")  # noqa: B009
        counter = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            job = _WAITED_ON.get()
            if operation in counter.READS and job:
                with counter._lock:
                    counter.reads[job] += 1
            return counter._original(client, operation, params)

        setattr(BaseClient, "_make_api_call", counted)  # noqa: B010
        return self

    def __exit__(self, *exc: object) -> None:
        from botocore.client import BaseClient

        setattr(BaseClient, "_make_api_call", self._original)  # noqa: B010


#: The job a status function invocation is serving (set around it; the local runtime runs the
#: handler in a copy of the caller's context): reads elsewhere (the worker's cancel polls, the
#: authorizer) are not a waiting caller's.
_WAITED_ON: contextvars.ContextVar[str] = contextvars.ContextVar("waited_on", default="")


def waiting_minute() -> WaitingMinute:
    """Two callers, each waiting a minute on a job whose model call is held: one follows the
    events (`?wait=20`), one long-polls the status (`?wait=20`), both through the HTTP front of
    an in-process `LocalStack`."""
    import boto3

    from claude_jobs_client import Client
    from claude_jobs_tools.local.fake_anthropic import FakeAnthropic
    from claude_jobs_tools.local.runtime import FunctionPool
    from claude_jobs_tools.local.stack import LocalStack, StackConfig

    seconds: dict[str, float] = defaultdict(float)
    requests: Counter[str] = Counter()
    original_invoke = FunctionPool.invoke

    def timed(pool: FunctionPool, event: dict[str, Any], **kwargs: Any) -> Any:
        if pool.spec.name != "status":
            return original_invoke(pool, event, **kwargs)
        job = (event.get("pathParameters") or {}).get("job_id", "")
        began = time.perf_counter()
        token = _WAITED_ON.set(job)
        try:
            return original_invoke(pool, event, **kwargs)
        finally:
            _WAITED_ON.reset(token)
            seconds[job] += time.perf_counter() - began
            requests[job] += 1

    key = "bench-wait-key-0123456789"
    early: list[str] = []
    with FakeAnthropic(default=answer, api_key=e2e.API_KEY) as fake:
        stack = LocalStack(
            StackConfig(
                port=0,
                workers=2,
                anthropic_api_key=e2e.API_KEY,
                anthropic_base_url=fake.url,
                dev_keys=f"waiter:{key}",
                # both held jobs run at once (fair sharing would hold one back, deferred)
                settings_overrides={"tenant_max_running": 2},
            )
        ).start()
        setattr(FunctionPool, "invoke", timed)  # noqa: B010
        try:
            with Client(stack.url, key, timeout=60) as client, _ReadCounter() as counter:
                status_job = client.submit("[[hold]] status", allowed_tools=[])["job_id"]
                events_job = client.submit("[[hold]] events", allowed_tools=[])["job_id"]

                def long_poll() -> None:
                    end = time.monotonic() + WAIT_MINUTE
                    while (left := end - time.monotonic()) >= 1:
                        job = client.get(status_job, wait=min(20, int(left)))
                        if job["status"] not in ("queued", "running"):
                            early.append(f"status job {job['status']}")
                            return

                def follow() -> None:
                    end = time.monotonic() + WAIT_MINUTE
                    cursor = None
                    while (left := end - time.monotonic()) >= 1:
                        page = client.events(events_job, after=cursor, wait=min(20, int(left)))
                        cursor = page["next_cursor"]
                        if page["done"]:
                            early.append("events job done")
                            return

                threads = [threading.Thread(target=long_poll), threading.Thread(target=follow)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                reads = dict(counter.reads)
                client.cancel(status_job)
                client.cancel(events_job)
        finally:
            setattr(FunctionPool, "invoke", original_invoke)  # noqa: B010
            stack.stop(grace_seconds=10)
            boto3.DEFAULT_SESSION = None
    return WaitingMinute(
        status_reads=reads.get(status_job, 0),
        events_reads=reads.get(events_job, 0),
        status_requests=requests[status_job],
        events_requests=requests[events_job],
        status_function_seconds=seconds[status_job],
        events_function_seconds=seconds[events_job],
        answered_early=early,
    )


# ------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> bool:
    from claude_jobs_client import Client
    from claude_jobs_tools.local.fake_anthropic import FakeAnthropic

    from . import cost_model

    rounds = args.rounds or DEFAULT_ROUNDS
    began = time.perf_counter()
    load = os.getloadavg()[0]
    print(
        f"{rounds} round(s) of 3 drains; {e2e.CORES} cores, {e2e.WORKERS} workers;"
        f" load average at the start {load:.1f}"
    )
    direct: list[e2e.Run] = []
    through: list[float] = []
    drains: list[WaitDrain] = []
    alone: list[DirectDrain] = []
    pooled: list[float] = []
    with (
        FakeAnthropic(default=answer, api_key=e2e.API_KEY) as fake,
        tempfile.TemporaryDirectory(prefix="claude-jobs-bench-") as workdir,
        e2e.local_stack(fake.url, Path(workdir)) as stack,
        Client(stack.url, e2e.TENANTS["bench-a"], timeout=60) as client_a,
        Client(stack.url, e2e.TENANTS["bench-b"], timeout=60) as client_b,
    ):
        e2e.direct_run(fake.url)
        for _ in range(e2e.WORKERS):
            e2e.stack_job(client_a)
        e2e.one_job_rounds(fake.url, stack, client_a, ONE_JOB_ROUNDS, direct, through)
        warm_environments(
            stack, [client_a, client_b], JOBS, statistics.median(r.cpu for r in direct)
        )
        for _ in range(rounds):
            stack.settle()
            alone.append(direct_drain(fake.url, JOBS, e2e.WORKERS))
            stack.settle()
            pooled.append(pool_drain(fake.url, JOBS, e2e.WORKERS))
            for mode in ("observer", "cli", "long-poll"):
                stack.settle()
                direct.append(e2e.direct_run(fake.url))
                stack.settle()
                drains.append(
                    waiting_drain(
                        stack,
                        [client_a, client_b],
                        JOBS,
                        statistics.median(r.cpu for r in direct),
                        mode,
                    )
                )
    minute = waiting_minute()

    ok = True
    overhead = [s - d.wall for s, d in zip(through, direct, strict=False)]
    p50 = e2e.percentile(overhead, 0.5)
    met = p50 <= OVERHEAD_P50
    ok = ok and met
    direct_cpu = statistics.median(r.cpu for r in direct)
    direct_p50 = e2e.percentile([d.wall for d in direct], 0.5)
    print(
        f"\nOne job, {len(overhead)} rounds: direct {direct_p50 * 1000:.0f} ms,"
        f" through the stack {e2e.percentile(through, 0.5) * 1000:.0f} ms (p50);"
        f" overhead p50 {p50 * 1000:.0f} ms   target ≤ {OVERHEAD_P50 * 1000:.0f} ms:"
        f" {'ok' if met else 'MISSED'}"
    )
    print(
        f"\nDrains of {JOBS} jobs (CPU floor = direct CLI {direct_cpu * 1000:.0f} ms x {JOBS}"
        f" / {e2e.CORES} cores; CPU a job split by process)"
    )
    alone_wall = statistics.median(a.wall for a in alone)
    pool_wall = statistics.median(pooled)
    print(
        f"  {'who waits':<34} {'wall':>7} {'floor':>7} {'ratio':>6}"
        f" {'dev process/job':>16} {'CLIs/job':>9} {'CPU ratio':>9} {'÷ CLIs alone':>12}"
        f" {'÷ pool':>6}"
    )
    names = {
        "observer": "one observer (the e2e drain)",
        "cli": "each caller, as `submit --wait`",
        "long-poll": "each caller, GET ?wait=20",
    }
    for d in drains:
        verdict = ""
        if d.mode != "observer":
            met = d.ratio <= DRAIN_RATIO
            ok = ok and met
            verdict = f"  target ≤ {DRAIN_RATIO}: {'ok' if met else 'MISSED'}"
        print(
            f"  {names[d.mode]:<34} {d.wall:6.2f}s {d.floor:6.2f}s {d.ratio:6.2f}"
            f" {d.own_cpu / d.jobs * 1000:13.0f} ms {d.children_cpu / d.jobs * 1000:6.0f} ms"
            f" {d.cpu_ratio:9.2f} {d.wall / alone_wall:12.2f} {d.wall / pool_wall:6.2f}{verdict}"
        )
    cli_cpu = statistics.median(a.cpu for a in alone) / JOBS
    floor = direct_cpu * JOBS / e2e.CORES
    print(
        f"  (CLIs alone: the {JOBS} jobs as `claude -p`, {e2e.WORKERS} at once, as many as the"
        f" stack has workers: {', '.join(f'{a.wall:.2f}' for a in alone)} s, i.e."
        f" {alone_wall / floor:.2f}x the floor; {cli_cpu * 1000:.0f} ms"
        f" of CPU a job against {direct_cpu * 1000:.0f} ms one at a time)"
    )
    print(
        f"  (pool alone: the {JOBS} jobs in {e2e.WORKERS} CLIs started and booted ahead, a fresh"
        f" one for each next job, no stack: {', '.join(f'{w:.2f}' for w in pooled)} s, i.e."
        f" {', '.join(f'{w / floor:.2f}' for w in pooled)}x the floor; the best a drain with one"
        " CLI per job gets on this machine)"
    )

    print(f"\nA waiting minute (one caller per route, a job held {HOLD_SECONDS:.0f} s)")
    for route, reads, calls, busy in (
        (
            "GET /v1/jobs/{id}?wait=20",
            minute.status_reads,
            minute.status_requests,
            minute.status_function_seconds,
        ),
        (
            "GET …/events?wait=20 (the CLI)",
            minute.events_reads,
            minute.events_requests,
            minute.events_function_seconds,
        ),
    ):
        met = reads <= READS_PER_MINUTE
        ok = ok and met
        print(
            f"  {route:<32} {reads:4d} reads, {calls} requests, {busy:5.1f} function-s"
            f"   target ≤ {READS_PER_MINUTE} reads: {'ok' if met else 'MISSED'}"
        )
    if minute.answered_early:
        print(f"  (answered early: {', '.join(minute.answered_early)})")
        ok = False

    before = cost_model.WaitingMinuteCost(
        reads=cost_model.BEFORE_READS_PER_WAITING_MINUTE,
        function_seconds=WAIT_MINUTE,
        requests=3,
    )
    after = cost_model.WaitingMinuteCost(
        reads=max(minute.status_reads, minute.events_reads),
        function_seconds=max(minute.status_function_seconds, minute.events_function_seconds),
        requests=max(minute.status_requests, minute.events_requests),
    )
    print("\n" + cost_model.render_waiting(before, after))
    print(
        f"\n(bench took {time.perf_counter() - began:.0f} s; load average now"
        f" {os.getloadavg()[0]:.1f})"
    )
    return ok
