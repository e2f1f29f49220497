"""End to end on the local stack: what a job costs over running the CLI directly.

Measured as a new user would: `claude-jobs dev` in a subprocess (workers = cores x 2), its
upstream a scripted Messages API in this process (`fake_anthropic`, one model call per job), the
same bundled Claude Code CLI for both sides.

- e2e: rounds alternate a direct `claude -p` run (fresh HOME, the same upstream) with one job
  submitted and awaited through the stack (`POST /v1/jobs`, then `GET ?wait=20` until it is
  terminal). Overhead = stack - direct, paired by round; p50 and p95.
- warm start: the same one-job rounds on a second stack with WARM_START=false (every CLI
  started cold), paired with direct runs too; and what a warm CLI costs on Lambda: its boot as
  the worker waits for it (`WarmProcess.settle`, billed to the invocation before the job) and
  its RSS while it waits for a job.
- drain: N one-call jobs submitted at once (two tenants, alternately), timed until the last is
  terminal (long-polled, last job first); the CPU floor is what the direct runs' CPU says the
  work needs: median CPU seconds of one direct run x N / cores. Also the stack's own CPU per
  job (the dev process and everything it reaped), next to the direct run's.
- polls: `claude-jobs submit --wait` of a job whose model call takes 5 s, through a counting
  relay: how many status requests it makes.
- memory: the direct CLI's peak RSS, the stack's process tree at its peak during the drain
  (per concurrent job), and a fresh worker interpreter's.
- cost: AWS cost per 1,000 jobs from these figures (`benchmarks/cost_model.py`, prices from
  `benchmarks/aws_prices.py`).

The peer comparison (a Node server with a pool of pre-started CLIs) is not rebuilt here; the
issue that set these targets measured it at 0.18 s for one job and 1.29x the CPU floor for 20.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from claude_jobs_tools.dev_process import (
    STACK_PREFIXES,
    DevProcess,
    clean_env,
    executable,
    start_dev,
)

DESCRIPTION = "end to end: direct CLI vs the local stack, drain vs CPU floor, polls, memory, cost"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROUNDS = 14
DRAIN_SIZES = (20, 100)
#: Targets (issue 14). Overhead in seconds; drain as a ratio to the CPU floor.
OVERHEAD_P50 = 0.100
OVERHEAD_P95 = 0.250
DRAIN_RATIO = 1.25
MAX_POLLS = 2
SLOW_JOB_SECONDS = 5.0
#: The peer's figures as the issue measured them (not rebuilt here).
PEER_ONE_JOB_SECONDS = 0.18
PEER_DRAIN_RATIO = 1.29

CORES = os.cpu_count() or 1
WORKERS = CORES * 2
API_KEY = f"sk-ant-bench-{secrets.token_hex(8)}"
TENANTS = {"bench-a": "bench-key-a-0123456789", "bench-b": "bench-key-b-0123456789"}
CLAUDE_JOBS = executable("claude-jobs")


def answer(request: Any) -> Any:
    from claude_jobs_tools.local.fake_anthropic import Text

    if "[[slow]]" in request.prompt_text():
        return Text("done slowly", delay=SLOW_JOB_SECONDS)
    return Text("hello")


# ------------------------------------------------------------------ direct CLI


@dataclass
class Run:
    wall: float
    cpu: float
    max_rss_kib: int = 0


def _children_cpu() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def cli_env(upstream: str, home: Path) -> dict[str, str]:
    """The environment of a CLI the benchmarks run by hand, as a user would: `home` its HOME."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": upstream,
        "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def direct_run(upstream: str) -> Run:
    """`claude -p` once, as a user would run it, in a fresh HOME."""
    from claude_jobs.worker.isolation import bundled_cli

    home = Path(tempfile.mkdtemp(prefix="claude-jobs-bench-home-"))
    env = cli_env(upstream, home)
    try:
        cpu_before, _ = _children_cpu()
        started = time.perf_counter()
        # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: read it from a wait4.
        process = subprocess.Popen(
            [str(bundled_cli()), "-p", "Say hello", "--output-format", "json"],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        peak = _Peak(process.pid)
        out, _ = process.communicate(timeout=120)
        wall = time.perf_counter() - started
        cpu_after, _ = _children_cpu()
        if process.returncode != 0 or b'"is_error":false' not in out.replace(b" ", b""):
            raise RuntimeError(f"the direct CLI run failed: {out[:300]!r}")
        return Run(wall, cpu_after - cpu_before, peak.stop())
    finally:
        shutil.rmtree(home, ignore_errors=True)


class _Peak:
    """The high-water mark of a process's RSS (its VmHWM, sampled while it runs). Not
    `ru_maxrss`: Linux keeps that across exec, so a child forked from a large parent reports
    the parent's size."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            self._kib = max(self._kib, _status_kib(self._pid, "VmHWM:"))
            self._done.wait(0.01)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self._kib


# ------------------------------------------------------------------ the stack


def stat_fields(pid: int) -> list[str]:
    """`/proc/<pid>/stat`'s fields after the command name (index 1: the parent; 11, 12: the
    process's user and system CPU ticks; 13, 14: those of the children it has reaped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_ticks(pid: int, *, reaped: bool = True) -> tuple[int, int]:
    """A process's CPU clock ticks and, with `reaped`, its reaped children's (else 0)."""
    fields = stat_fields(pid)
    own = int(fields[11]) + int(fields[12])
    return own, (int(fields[13]) + int(fields[14]) if reaped else 0)


class Stack(DevProcess):
    """`claude-jobs dev` (dev_process.DevProcess) with what the benchmarks read of it."""

    def cpu_seconds(self) -> float:
        """CPU of the dev process and of every child it has reaped (the CLIs)."""
        return sum(cpu_ticks(self.process.pid)) / os.sysconf("SC_CLK_TCK")

    def tree_cpu_ticks(self) -> int:
        """CPU clock ticks of the dev process and of its live descendants (a warm CLI booting
        between jobs is one)."""
        total = 0
        for pid in (self.process.pid, *_descendants(self.process.pid)):
            try:
                total += sum(cpu_ticks(pid))
            except OSError:
                continue
        return total

    def settle(self, quiet_seconds: float = 0.25, limit_seconds: float = 5.0) -> None:
        """Wait until the stack is idle (no CPU for `quiet_seconds`): what a job leaves running
        once it is answered (its progress events, the next job's warm CLI booting) does not
        land on the next measurement."""
        began = time.monotonic()
        last, quiet_since = -1, began
        while time.monotonic() - began < limit_seconds:
            ticks = self.tree_cpu_ticks()
            now = time.monotonic()
            if ticks != last:
                last, quiet_since = ticks, now
            elif now - quiet_since >= quiet_seconds:
                return
            time.sleep(0.05)

    def rss_kib(self) -> tuple[int, int, int]:
        """(the dev process's RSS, the summed RSS of its descendants — the jobs' CLIs and what
        they started —, how many of those are CLIs), in KiB."""
        own = _rss_kib(self.process.pid)
        children = _descendants(self.process.pid)
        clis = sum(1 for pid in children if _comm(pid) == "claude")
        return own, sum(_rss_kib(pid) for pid in children), clis


def _rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS:")


def _status_kib(pid: int | str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(stat_fields(int(entry.name))[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


@contextmanager
def local_stack(upstream: str, workdir: Path, *, warm_start: bool = True) -> Iterator[Stack]:
    env = clean_env(
        drop=(*STACK_PREFIXES, "TENANT_"),
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=upstream,
        CLAUDE_JOBS_DEV_KEYS=",".join(f"{t}:{k}" for t, k in TENANTS.items()),
        # Fair sharing would hold back the second half of one tenant's burst: a drain
        # measures the machine, so each tenant may use every worker and queue them all.
        TENANT_MAX_RUNNING=str(WORKERS),
        TENANT_MAX_PENDING="1000",
        WARM_START="true" if warm_start else "false",
    )
    dev = start_dev(workdir, env, workers=WORKERS, ready_seconds=120)
    stack = Stack(dev.process, dev.url, dev.log)
    try:
        yield stack
    finally:
        stack.stop(timeout=30)


def stack_job(client: Any, prompt: str = "Say hello") -> float:
    started = time.perf_counter()
    job = client.submit(prompt, allowed_tools=[])
    done = client.wait(job["job_id"], timeout=120)
    elapsed = time.perf_counter() - started
    if done["status"] != "succeeded":
        raise RuntimeError(f"a bench job ended {done['status']}: {done.get('error')}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def one_job_rounds(
    upstream: str, stack: Stack, client: Any, rounds: int, direct: list[Run], jobs: list[float]
) -> None:
    """Rounds of a direct run and a job through the stack, alternating which goes first:
    drifts of the machine's load hit both alike. Each runs on an idle machine: the stack
    settles after its job (a warm CLI boots between jobs, as it would between callers')."""
    for index in range(rounds):
        stack.settle()
        if index % 2 == 0:
            direct.append(direct_run(upstream))
            jobs.append(stack_job(client))
        else:
            jobs.append(stack_job(client))
            stack.settle()
            direct.append(direct_run(upstream))


@dataclass
class WarmBoot:
    """A warm CLI's start, as the worker waits for it on Lambda (medians)."""

    settle_wall: float
    cpu: float
    idle_rss_kib: int


def warm_boot(upstream: str, runs: int = 5) -> WarmBoot:
    """Start the CLI the way the worker starts a warm one (its real `WarmProcess`, the
    worker's own environment allowlist and options) and wait until it has booted."""
    from claude_jobs.models import JobOptions
    from claude_jobs.worker.agent import AgentRequest, WarmProcess
    from claude_jobs.worker.isolation import agent_environment, bundled_cli

    walls: list[float] = []
    cpus: list[float] = []
    rss: list[int] = []
    ticks = os.sysconf("SC_CLK_TCK")
    for _ in range(runs):
        root = Path(tempfile.mkdtemp(prefix="claude-jobs-bench-warm-"))
        try:
            for name in ("home/.claude", "work", "tmp"):
                (root / name).mkdir(parents=True)
            env = agent_environment(
                home=root / "home",
                config_dir=root / "home" / ".claude",
                tmp_dir=root / "tmp",
                base_url=upstream,
                token=API_KEY,
                max_retries=0,
            )
            request = AgentRequest(
                job_id="",
                prompt="",
                system_prompt=None,
                options=JobOptions(allowed_tools=[]),
                model="claude-sonnet-4-5",
                cli=bundled_cli(),
                cwd=root / "work",
                env=env,
                deadline_seconds=0,
            )
            process = WarmProcess.start(request)
            try:
                walls.append(process.settle(10.0))
                cpus.append((process.cpu_ticks() or 0) / ticks)
                rss.append(_rss_kib(process.pid))
            finally:
                process.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return WarmBoot(statistics.median(walls), statistics.median(cpus), int(statistics.median(rss)))


# ------------------------------------------------------------------ drain


@dataclass
class Drain:
    jobs: int
    wall: float
    floor: float
    stack_cpu_per_job: float
    #: Peak summed RSS of the jobs' process trees divided by the CLIs running at that moment.
    job_rss_kib: int
    #: The dev process (emulator, functions, proxy) before and at its largest during the drain.
    stack_rss_kib: tuple[int, int]

    @property
    def ratio(self) -> float:
        return self.wall / self.floor


def drain(stack: Stack, clients: list[Any], jobs: int, direct_cpu: float) -> Drain:
    """Submit `jobs` at once (alternating tenants), wait until every one is terminal."""
    idle_rss = stack.rss_kib()[0]
    peak = [0, idle_rss]  # per job, the dev process
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.1):
            own, children, clis = stack.rss_kib()
            if clis:
                peak[0] = max(peak[0], children // clis)
            peak[1] = max(peak[1], own)

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_before = stack.cpu_seconds()
    started = time.perf_counter()
    sampler.start()

    def submit(index: int) -> tuple[Any, str]:
        client = clients[index % len(clients)]
        return client, client.submit(f"Say hello {index}", allowed_tools=[])["job_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        submitted = list(pool.map(submit, range(jobs)))
    # One long-poll at a time, the last job first (jobs end roughly in the order they were
    # queued): the observer's own reads stay a few per job.
    for client, job_id in reversed(submitted):
        done = client.wait(job_id, timeout=600)
        if done["status"] != "succeeded":
            raise RuntimeError(f"a drain job ended {done['status']}: {done.get('error')}")
    wall = time.perf_counter() - started
    sampling.set()
    sampler.join()
    cpu = stack.cpu_seconds() - cpu_before
    return Drain(jobs, wall, direct_cpu * jobs / CORES, cpu / jobs, peak[0], (idle_rss, peak[1]))


# ------------------------------------------------------------------ polls


class CountingRelay:
    """An HTTP relay to the stack that counts the status requests passing through it."""

    def __init__(self, target: str) -> None:
        self.status_requests = 0
        self.event_requests = 0  # GET /v1/jobs/{id}/events (the CLI shows progress events)
        self._lock = threading.Lock()
        host, port = target.removeprefix("http://").split(":")
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                if self.command == "GET" and re.fullmatch(r"/v1/jobs/[^/?]+(\?.*)?", self.path):
                    with relay._lock:
                        relay.status_requests += 1
                if self.command == "GET" and re.fullmatch(
                    r"/v1/jobs/[^/?]+/events(\?.*)?", self.path
                ):
                    with relay._lock:
                        relay.event_requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CountingRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def polls_of_cli_wait(stack: Stack) -> tuple[int, int, float]:
    """Status requests `claude-jobs submit --wait` makes for a job of SLOW_JOB_SECONDS."""
    with CountingRelay(stack.url) as relay:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_JOBS_")},
            "CLAUDE_JOBS_URL": relay.url,
            "CLAUDE_JOBS_API_KEY": TENANTS["bench-a"],
        }
        started = time.perf_counter()
        subprocess.run(
            [CLAUDE_JOBS, "submit", "[[slow]] then answer", "--wait", "--tools", ""],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        return relay.status_requests, relay.event_requests, time.perf_counter() - started


# ------------------------------------------------------------------ memory


WORKER_IMPORTS = (
    "import claude_jobs.worker.function, claude_jobs.worker.agent, claude_jobs.worker.proxy\n"
    "import claude_agent_sdk\n"
    # VmHWM, not ru_maxrss (which Linux keeps across exec: the bench process's size)
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
)


def worker_interpreter_rss_kib() -> int:
    """Peak RSS of a fresh interpreter with the worker's modules loaded (the Python side of
    one Lambda environment, before any job)."""
    out = subprocess.run(
        [sys.executable, "-c", WORKER_IMPORTS], capture_output=True, check=True, text=True
    )
    return int(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ report


@dataclass
class Figures:
    direct: list[Run] = field(default_factory=list)
    stack: list[float] = field(default_factory=list)
    #: The one-job rounds on a stack with warm start off.
    cold_direct: list[Run] = field(default_factory=list)
    cold_stack: list[float] = field(default_factory=list)
    warm_boot: WarmBoot | None = None
    cold_drain: Drain | None = None
    drains: list[Drain] = field(default_factory=list)
    stack_cpu_per_job: float = 0.0
    polls: int = 0
    event_polls: int = 0
    poll_wall: float = 0.0
    worker_rss_kib: int = 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


def report(figures: Figures, durations: dict[str, float]) -> bool:
    from claude_jobs.definitions import FUNCTIONS

    ok = True
    direct_wall = [r.wall for r in figures.direct]
    overhead = [s - d for s, d in zip(figures.stack, direct_wall, strict=True)]
    p50, p95 = percentile(overhead, 0.5), percentile(overhead, 0.95)
    print(f"\nOne job, {len(overhead)} rounds (direct `claude -p` vs submit + ?wait= on the stack)")
    print(f"  {'':<22} {'p50':>10} {'p95':>10}")
    print(
        f"  {'direct CLI':<22} {_ms(percentile(direct_wall, 0.5))} "
        f"{_ms(percentile(direct_wall, 0.95))}"
    )
    print(
        f"  {'through the stack':<22} {_ms(percentile(figures.stack, 0.5))} "
        f"{_ms(percentile(figures.stack, 0.95))}"
    )
    met = p50 <= OVERHEAD_P50 and p95 <= OVERHEAD_P95
    ok = ok and met
    print(
        f"  {'overhead (paired)':<22} {_ms(p50)} {_ms(p95)}   target ≤ {OVERHEAD_P50 * 1000:.0f}"
        f" / {OVERHEAD_P95 * 1000:.0f} ms: {'ok' if met else 'MISSED'}"
    )
    print(f"  (the issue's warm-pool peer: {PEER_ONE_JOB_SECONDS:.2f} s for one job, not rebuilt)")
    if figures.cold_stack:
        cold = [s - d.wall for s, d in zip(figures.cold_stack, figures.cold_direct, strict=True)]
        cold_direct = [r.wall for r in figures.cold_direct]
        print(f"\nWarm start (a second stack with WARM_START=false, {len(cold)} rounds)")
        print(f"  {'':<30} {'p50':>10} {'p95':>10}")
        for name, values in (
            ("one job, warm start", figures.stack),
            ("one job, cold start", figures.cold_stack),
            ("  direct CLI meanwhile", cold_direct),
            ("  overhead, cold (paired)", cold),
        ):
            print(f"  {name:<30} {_ms(percentile(values, 0.5))} {_ms(percentile(values, 0.95))}")
        warm_p50 = percentile(figures.stack, 0.5)
        print(
            f"  warm start vs the warm-pool peer's {PEER_ONE_JOB_SECONDS:.2f} s: "
            f"{warm_p50 / PEER_ONE_JOB_SECONDS:.2f}x (ours through API, auth, queue and AWS)"
        )
    if figures.warm_boot is not None:
        warm = figures.warm_boot
        print(
            f"  a warm CLI's boot (waited for on Lambda): {warm.settle_wall * 1000:.0f} ms wall,"
            f" {warm.cpu * 1000:.0f} ms CPU; its RSS while it waits: "
            f"{warm.idle_rss_kib / 1024:.0f} MiB"
        )
    direct_cpu = statistics.median(r.cpu for r in figures.direct)
    print(
        f"  CPU per job: direct {direct_cpu * 1000:.0f} ms; the stack (dev process + CLI)"
        f" {figures.stack_cpu_per_job * 1000:.0f} ms"
        f" ({figures.stack_cpu_per_job / direct_cpu:.2f}x)"
    )

    print(
        f"\nDrain ({CORES} cores, {WORKERS} workers; CPU floor = {direct_cpu * 1000:.0f} ms x N"
        f" / {CORES})"
    )
    print(f"  {'N':>4} {'wall':>9} {'floor':>9} {'ratio':>6} {'stack CPU/job':>14}")
    for d in figures.drains:
        met = d.ratio <= DRAIN_RATIO
        ok = ok and met
        print(
            f"  {d.jobs:>4} {d.wall:8.2f}s {d.floor:8.2f}s {d.ratio:6.2f}"
            f" {d.stack_cpu_per_job * 1000:11.0f} ms   target ≤ {DRAIN_RATIO}:"
            f" {'ok' if met else 'MISSED'}"
        )
    if figures.cold_drain is not None:
        d = figures.cold_drain
        print(
            f"  {d.jobs:>4} {d.wall:8.2f}s {d.floor:8.2f}s {d.ratio:6.2f}"
            f" {d.stack_cpu_per_job * 1000:11.0f} ms   (warm start off; informative)"
        )
    print(f"  (the issue's warm-pool peer: 20 jobs at {PEER_DRAIN_RATIO}x its floor, not rebuilt)")

    met = figures.polls <= MAX_POLLS
    ok = ok and met
    print(
        f"\nPolls: `claude-jobs submit --wait` of a {SLOW_JOB_SECONDS:.0f} s job made"
        f" {figures.polls} status request(s) in {figures.poll_wall:.1f} s"
        f" (and {figures.event_polls} progress-event long-poll(s))"
        f"   target ≤ {MAX_POLLS}: {'ok' if met else 'MISSED'}"
    )

    cli_peak = max(r.max_rss_kib for r in figures.direct) / 1024
    print("\nMemory (peak RSS)")
    print(f"  direct CLI, one job            {cli_peak:7.0f} MiB")
    print(f"  worker interpreter, no job     {figures.worker_rss_kib / 1024:7.0f} MiB")
    print(f"  one Lambda environment (sum)   {cli_peak + figures.worker_rss_kib / 1024:7.0f} MiB")
    for d in figures.drains:
        print(
            f"  per running job, drain N={d.jobs:<3}  {d.job_rss_kib / 1024:7.0f} MiB"
            f" (CLI trees at their peak / CLIs running); the stack's own process"
            f" {d.stack_rss_kib[0] / 1024:.0f} -> {d.stack_rss_kib[1] / 1024:.0f} MiB"
        )
    need = cli_peak + figures.worker_rss_kib / 1024
    print(
        f"  worker memory setting: {FUNCTIONS['worker'].memory_mb} MB ="
        f" {FUNCTIONS['worker'].memory_mb / need:.1f}x one environment's {need:.0f} MiB"
        " (reasoning: docs/infra.md, Worker sizing)"
    )

    from benchmarks import cost_model

    # On Lambda the worker also waits for the next job's warm CLI to boot: billed per job.
    boot = figures.warm_boot.settle_wall if figures.warm_boot is not None else 0.0
    measured = cost_model.Measured(
        # The job's time through the stack but the two API round trips: the worker's share,
        # and the boot of the next job's CLI.
        worker_seconds=statistics.median(figures.stack) - 2 * durations["status"] + boot,
        submit_seconds=durations["submit"],
        status_seconds=durations["status"],
        authorizer_seconds=durations["authorizer"],
    )
    print("\n" + cost_model.render(cost_model.cost_per_thousand(measured), measured))
    return ok


def handler_durations(stack: Stack, client: Any) -> dict[str, float]:
    """Median round trips of a submit and of a plain status request through the stack: an
    upper bound of each function's billed duration (they include the front and HTTP). The
    authorizer (one GetItem and a policy; its answers are cached by the front as by API
    Gateway) is billed as long as a status request, another upper bound."""

    submits: list[float] = []
    statuses: list[float] = []
    job_ids = []
    for _ in range(5):
        started = time.perf_counter()
        job_ids.append(client.submit("Say hello", allowed_tools=[])["job_id"])
        submits.append(time.perf_counter() - started)
    for job_id in job_ids:
        client.wait(job_id, timeout=60)
    for _ in range(10):
        started = time.perf_counter()
        client.get(job_ids[0])
        statuses.append(time.perf_counter() - started)
    status = statistics.median(statuses)
    return {"submit": statistics.median(submits), "status": status, "authorizer": status}


def run(args: argparse.Namespace) -> bool:
    from claude_jobs_client import Client
    from claude_jobs_tools.local.fake_anthropic import FakeAnthropic

    rounds = args.rounds or DEFAULT_ROUNDS
    figures = Figures()
    began = time.perf_counter()
    print(f"{rounds} rounds; {CORES} cores, {WORKERS} workers ({sys.executable})")
    with (
        FakeAnthropic(default=answer, api_key=API_KEY) as fake,
        tempfile.TemporaryDirectory(prefix="claude-jobs-bench-") as workdir,
        local_stack(fake.url, Path(workdir)) as stack,
        Client(stack.url, TENANTS["bench-a"], timeout=60) as client_a,
        Client(stack.url, TENANTS["bench-b"], timeout=60) as client_b,
    ):
        direct_run(fake.url)  # warm the page cache, the stack's environments
        # Each worker environment runs a job first: warm start is there from its second.
        for _ in range(WORKERS):
            stack_job(client_a)
        stack_job(client_b)
        cpu_before = stack.cpu_seconds()
        one_job_rounds(fake.url, stack, client_a, rounds, figures.direct, figures.stack)
        figures.stack_cpu_per_job = (stack.cpu_seconds() - cpu_before) / rounds
        direct_cpu = statistics.median(r.cpu for r in figures.direct)
        for jobs in DRAIN_SIZES:
            stack.settle()
            figures.drains.append(drain(stack, [client_a, client_b], jobs, direct_cpu))
        figures.polls, figures.event_polls, figures.poll_wall = polls_of_cli_wait(stack)
        durations = handler_durations(stack, client_a)
    figures.warm_boot = warm_boot(fake.url)
    # The same rounds with every CLI started cold (WARM_START=false), in the same run.
    with (
        FakeAnthropic(default=answer, api_key=API_KEY) as fake,
        tempfile.TemporaryDirectory(prefix="claude-jobs-bench-") as workdir,
        local_stack(fake.url, Path(workdir), warm_start=False) as stack,
        Client(stack.url, TENANTS["bench-a"], timeout=60) as client_a,
    ):
        for _ in range(WORKERS):
            stack_job(client_a)
        one_job_rounds(fake.url, stack, client_a, rounds, figures.cold_direct, figures.cold_stack)
        stack.settle()
        cold_cpu = statistics.median(r.cpu for r in figures.cold_direct)
        figures.cold_drain = drain(stack, [client_a], DRAIN_SIZES[0], cold_cpu)
    figures.worker_rss_kib = worker_interpreter_rss_kib()
    ok = report(figures, durations)
    print(f"\n(bench took {time.perf_counter() - began:.0f} s)")
    return ok
