"""Reliability ledger: jobs of several tenants through the local stack while faults are injected.

The whole local stack runs in this process (`ChaosStack`: emulator, HTTP front, worker threads
running the real Claude Code CLI, notifier), its upstream a scripted fake Messages API. While
the jobs run:

- AWS calls fail or are throttled at random: every call the stack makes (API functions,
  workers, notifier) goes through a fault-injecting front of the emulator (`aws_faults.py`:
  throttling, 500 before the call, 500 after the call was applied);
- the upstream answers 429 / 500 / 529 or stalls, per model request, at random;
- some jobs' workers are killed mid-job (the invocation dies with nothing recorded; its
  message comes back after the visibility timeout, as after a crash);
- some jobs' messages are delivered again (a second message with the same body: before the
  job ran, while it runs, and after it ended);
- the worker pool is restarted mid-run (stop receiving, kill what still runs after a grace
  period, fresh execution environments).

The callers submit with an `Idempotency-Key` and retry 5xx answers and transport errors, as a
careful client does. Then the ledger reads the truth from the emulator directly (no faults) and
checks: every accepted job is in exactly one terminal state, none is lost, no agent call for a
job arrived after the job ended, each job has exactly one completion event once de-duplicated
(and that event names the job's final status), each succeeded job carries its own answer, and
every job the table holds is terminal. It prints the checks, what was injected, the statuses
and p50 / p99 latency (submit → terminal); it fails (exit 1) when a check fails.

    python -m benchmarks.bench_reliability --jobs 300 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import httpx

DESCRIPTION = "reliability ledger: jobs of 3 tenants through the local stack under faults"
#: Minutes of 2 busy cores: `make bench-reliability` (or `python -m benchmarks reliability`).
RUN_BY_DEFAULT = False

MARKER = re.compile(r"\[\[ledger:(\d+)\]\]")
KEY = f"sk-ant-ledger-{uuid.uuid4().hex[:12]}"
#: How long the upstream holds the first call of a job whose worker is to be killed.
KILL_STALL_SECONDS = 12.0
TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
UPSTREAM_ERRORS = (
    (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"),
    (500, "api_error", "Internal server error"),
    (529, "overloaded_error", "Overloaded"),
)


@dataclass
class LedgerConfig:
    jobs: int = 300
    tenants: int = 3
    workers: int = 4
    seed: int = 1
    #: Chance that one AWS call of the stack gets a fault (botocore retries most).
    aws_fault_rate: float = 0.05
    #: Chance that one model request is answered 429 / 500 / 529 (the CLI retries).
    upstream_error_rate: float = 0.08
    #: Chance that one model request stalls for `stall_seconds` before its answer.
    stall_rate: float = 0.05
    stall_seconds: float = 3.0
    #: Share of jobs whose worker is killed mid-job (at least one).
    kill_rate: float = 0.02
    #: Share of jobs whose message is delivered a second time.
    duplicate_rate: float = 0.1
    #: Share of jobs whose first worker invocation is answered before it runs, as an agent
    #: holding the Lambda Runtime API answers another job's (issue 27): its message is
    #: deleted, the reconciler re-drives the job.
    swallow_rate: float = 0.03
    #: The reconciler's schedule and grace here (a deployment: 60 s and 120 s).
    reconcile_seconds: float = 5.0
    reconcile_grace_seconds: int = 15
    #: Worker-pool restarts, spread over the submissions.
    restarts: int = 1
    submitters: int = 6
    #: Each job's `timeout_seconds`; its lease is this plus the worker's margin (a tenth of
    #: the invocation, at most 30 s).
    job_timeout_seconds: int = 20
    #: The worker function's timeout (as `WORKER_INVOCATION_SECONDS`): its margins with it.
    invocation_seconds: int = 900
    #: The jobs queue's visibility timeout: longer than a lease (as 6 x the Lambda timeout
    #: is in AWS), so a killed job's message comes back once its claim has lapsed.
    visibility_seconds: int = 55
    #: After an infrastructure fault a message comes back after this (doubled per receive).
    retry_base_seconds: int = 2
    #: How long to wait for every job to end once all are submitted.
    settle_seconds: float = 900.0
    quiet: bool = True

    @property
    def tenant_ids(self) -> list[str]:
        return [f"ledger-{chr(ord('a') + n)}" for n in range(self.tenants)]


# ------------------------------------------------------------------ the upstream


@dataclass
class ModelCall:
    at: float
    session: str
    answer: str  # "ok", "stall", "429", "500", "529", "kill"


class Upstream:
    """The fake Messages API's answers: per job (its prompt's marker) and per call, drawn from
    the seed; the first call of a job to be killed stalls while its worker is killed."""

    def __init__(self, config: LedgerConfig, kill: set[int]) -> None:
        self.config = config
        self.kill = kill
        self.calls: dict[int, list[ModelCall]] = defaultdict(list)
        self.job_ids: dict[int, str] = {}
        self.killed: set[int] = set()
        self.kill_misses: set[int] = set()
        self.on_kill: Any = None  # set by the ledger: job_id → bool
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> Any:
        from claude_jobs_tools.local.fake_anthropic import ApiError, Reply, Text

        found = MARKER.search(request.prompt_text())
        if found is None:
            return Text("no marker")
        index = int(found.group(1))
        answer = f"done {index}"
        with self._lock:
            calls = self.calls[index]
            n = len(calls)
            first_of_kill = index in self.kill and index not in self.killed and not n
            if first_of_kill:
                self.killed.add(index)
        rng = random.Random(f"{self.config.seed}:{index}:{n}")  # noqa: S311
        draw = rng.random()
        reply: Reply
        if first_of_kill:
            kind, reply = "kill", Text(answer, delay=KILL_STALL_SECONDS)
            threading.Thread(target=self._kill, args=(index,), daemon=True).start()
        elif draw < self.config.upstream_error_rate:
            status, error_type, message = rng.choice(UPSTREAM_ERRORS)
            kind, reply = str(status), ApiError(status, error_type, message)
        elif draw < self.config.upstream_error_rate + self.config.stall_rate:
            kind, reply = "stall", Text(answer, delay=self.config.stall_seconds)
        else:
            kind, reply = "ok", Text(answer)
        with self._lock:
            self.calls[index].append(ModelCall(time.time(), _session(request), kind))
        return reply

    def _kill(self, index: int) -> None:
        deadline = time.monotonic() + 10
        while index not in self.job_ids and time.monotonic() < deadline:
            time.sleep(0.05)
        job_id = self.job_ids.get(index)
        time.sleep(0.3)  # the CLI is waiting on its answer now
        if job_id is None or not self.on_kill(job_id):
            with self._lock:
                self.kill_misses.add(index)


def _session(request: Any) -> str:
    """The CLI session a model request belongs to (one per agent run)."""
    session = request.headers.get("x-claude-code-session-id")
    if session:
        return str(session)
    user = ((request.body or {}).get("metadata") or {}).get("user_id") or ""
    found = re.search(r"session_([0-9a-f-]+)", str(user))
    return found.group(1) if found else str(user)


# ------------------------------------------------------------------ the run


@dataclass
class Submitted:
    index: int
    tenant: str
    submitted_at: float
    job_id: str | None = None
    tries: int = 0
    last_error: str = ""


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    config: LedgerConfig
    checks: list[Check] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    #: What was injected: aws_faults, upstream_errors, stalls, kills, restarts, duplicates.
    injected: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


class Ledger:
    def __init__(self, config: LedgerConfig) -> None:
        self.config = config
        rng = random.Random(config.seed)  # noqa: S311 - a fault schedule
        indexes = list(range(config.jobs))
        kills = max(1, round(config.jobs * config.kill_rate)) if config.kill_rate else 0
        self.kill = set(rng.sample(indexes, min(kills, len(indexes))))
        duplicates = round(config.jobs * config.duplicate_rate)
        self.duplicate: dict[int, float] = {
            i: rng.choice((0.0, 1.0, 3.0, 8.0, 20.0))
            for i in rng.sample(indexes, min(duplicates, len(indexes)))
        }
        self.upstream = Upstream(config, self.kill)
        self.submitted: dict[int, Submitted] = {}
        self.duplicates_sent = 0
        self._lock = threading.Lock()

    # -------------------------------------------------------------- stack

    @contextlib.contextmanager
    def _stack(self) -> Iterator[Any]:
        from claude_jobs.resources import JOBS_QUEUE
        from claude_jobs_tools.local.aws_faults import FaultPlan
        from claude_jobs_tools.local.chaos import ChaosStack
        from claude_jobs_tools.local.fake_anthropic import FakeAnthropic
        from claude_jobs_tools.local.stack import StackConfig

        config = self.config
        keys = ",".join(f"{t}:ledger-key-{t}-0123456789" for t in config.tenant_ids)
        stack_config = StackConfig(
            port=0,
            workers=config.workers,
            invocation_seconds=config.invocation_seconds,
            anthropic_api_key=KEY,
            dev_keys=keys,
            prefix=f"ledger-{uuid.uuid4().hex[:6]}",
            queue_overrides={
                JOBS_QUEUE.logical_id: {"VisibilityTimeout": str(config.visibility_seconds)}
            },
            settings_overrides={
                "tenant_max_pending": max(100, config.jobs),
                "retry_base_seconds": config.retry_base_seconds,
                "tenant_defer_seconds": 1,
                "reconcile_grace_seconds": config.reconcile_grace_seconds,
            },
            reconcile_seconds=config.reconcile_seconds,
        )
        with FakeAnthropic(default=self.upstream, api_key=KEY) as fake:
            stack_config.anthropic_base_url = fake.url
            stack = ChaosStack(
                stack_config,
                FaultPlan(rate=config.aws_fault_rate, seed=config.seed),
                swallow_rate=config.swallow_rate,
            )
            stack.start()
            try:
                self.upstream.on_kill = stack.kill_job
                yield stack
            finally:
                stack.stop(grace_seconds=5)

    # -------------------------------------------------------------- run

    def run(self) -> Report:
        started = time.monotonic()
        report = Report(self.config)
        with _quiet(self.config.quiet), self._stack() as stack:
            truth = Truth(stack)
            truth.subscribe()
            self.warm_up = self._warm_up(stack, truth)
            assert stack.aws_faults is not None
            stack.aws_faults.enabled = True
            self._submit_all(stack, truth)
            self._settle(truth)
            stack.aws_faults.enabled = False
            truth.drain_events(self._accepted_ids(), quiet_seconds=30)
            self._judge(report, stack, truth)
        report.wall_seconds = time.monotonic() - started
        return report

    def _warm_up(self, stack: Any, truth: Truth) -> str:
        """One job before any fault: the worker's first run imports the agent SDK, and a
        thread killed mid-import would leave the modules half made for every later job (a
        crash on Lambda takes its process's modules with it; a killed thread here does not)."""
        key = stack.keys[0]
        response = httpx.post(
            f"{stack.url}/v1/jobs",
            json={"prompt": "warm up", "allowed_tools": []},
            headers={"Authorization": f"Bearer {key.key}"},
            timeout=30,
        )
        response.raise_for_status()
        job_id = str(response.json()["job_id"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = truth.jobs({job_id}).get(job_id)
            if job is not None and job.status.is_terminal:
                return job_id
            time.sleep(0.5)
        raise RuntimeError("the warm-up job did not end within 120 s")

    def _accepted_ids(self) -> set[str]:
        return {s.job_id for s in self.submitted.values() if s.job_id}

    def _submit_all(self, stack: Any, truth: Truth) -> None:
        config = self.config
        order = list(range(config.jobs))
        restart_at = {
            round(config.jobs * (n + 1) / (config.restarts + 1)) for n in range(config.restarts)
        }
        timers: list[threading.Timer] = []
        clients = {
            key.tenant_id: httpx.Client(
                base_url=stack.url,
                headers={"Authorization": f"Bearer {key.key}"},
                timeout=30,
            )
            for key in stack.keys
        }
        try:
            with ThreadPoolExecutor(config.submitters) as pool:
                submissions = pool.map(lambda i: self._submit(clients, i), order)
                for done, submitted in enumerate(submissions, start=1):
                    if done % 50 == 0:
                        print(f"ledger: {done} submitted", file=sys.stderr, flush=True)
                    if submitted.job_id and submitted.index in self.duplicate:
                        delay = self.duplicate[submitted.index]
                        timer = threading.Timer(
                            delay, self._duplicate, args=(truth, submitted.job_id, submitted.tenant)
                        )
                        timer.daemon = True
                        timer.start()
                        timers.append(timer)
                    if done in restart_at:
                        stack.restart_workers()
            for timer in timers:
                timer.join()
        finally:
            for client in clients.values():
                client.close()

    def _submit(self, clients: dict[str, httpx.Client], index: int) -> Submitted:
        tenant = self.config.tenant_ids[index % self.config.tenants]
        submitted = Submitted(index, tenant, time.time())
        with self._lock:
            self.submitted[index] = submitted
        body = {
            "prompt": f"[[ledger:{index}]] Answer with the word done and this job's number.",
            "allowed_tools": [],
            "max_turns": 2,
            "timeout_seconds": self.config.job_timeout_seconds,
            "metadata": {"ledger": str(index)},
        }
        idempotency = f"ledger-{self.config.seed}-{index}"
        for attempt in range(10):
            submitted.tries = attempt + 1
            try:
                response = clients[tenant].post(
                    "/v1/jobs", json=body, headers={"Idempotency-Key": idempotency}
                )
            except httpx.TransportError as exc:
                submitted.last_error = type(exc).__name__
            else:
                if response.status_code == 202:
                    submitted.job_id = str(response.json()["job_id"])
                    self.upstream.job_ids[index] = submitted.job_id
                    return submitted
                submitted.last_error = f"{response.status_code} {response.text[:200]}"
                if response.status_code < 500 and response.status_code != 429:
                    return submitted  # a 4xx is the caller's to fix: not retried
            time.sleep(min(0.2 * 2**attempt, 3.0))
        return submitted

    def _duplicate(self, truth: Truth, job_id: str, tenant: str) -> None:
        truth.send_job_message(job_id, tenant)
        with self._lock:
            self.duplicates_sent += 1

    def _settle(self, truth: Truth) -> None:
        deadline = time.monotonic() + self.config.settle_seconds
        accepted = self._accepted_ids()
        shown = 0.0
        while time.monotonic() < deadline:
            jobs = truth.jobs(accepted)
            ended = sum(j.status.is_terminal for j in jobs.values())
            if len(jobs) == len(accepted) and ended == len(accepted):
                return
            if time.monotonic() - shown > 15:
                shown = time.monotonic()
                print(f"ledger: {ended}/{len(accepted)} jobs ended", file=sys.stderr, flush=True)
            time.sleep(1.0)

    # -------------------------------------------------------------- judge

    def _judge(self, report: Report, stack: Any, truth: TruthView) -> None:
        config = self.config
        accepted = {s.job_id: s for s in self.submitted.values() if s.job_id}
        jobs = truth.jobs(set(accepted))
        every_job = truth.all_jobs(set(config.tenant_ids))
        every_job.pop(self.warm_up, None)
        events = truth.events

        refused = [s for s in self.submitted.values() if not s.job_id]
        report.checks.append(
            Check(
                "every submission accepted (client retries)",
                not refused,
                f"{len(accepted)}/{config.jobs} accepted"
                + (f"; refused: {refused[0].last_error}" if refused else "")
                + f"; {sum(s.tries > 1 for s in self.submitted.values())} needed retries",
            )
        )
        missing = [job_id for job_id in accepted if job_id not in jobs]
        report.checks.append(
            Check(
                "no job lost",
                not missing,
                f"{len(jobs)}/{len(accepted)} accepted jobs in the table"
                + (f"; missing e.g. {missing[0]}" if missing else ""),
            )
        )
        now = time.time()
        stuck = {
            j: f"{job.status.value} (attempts {job.attempts}, lease "
            + (f"{job.lease_until - now:+.0f} s" if job.lease_until else "none")
            + ")"
            for j, job in jobs.items()
            if not job.status.is_terminal
        }
        report.checks.append(
            Check(
                "every job in exactly one terminal state",
                not stuck and not missing,
                f"{len(jobs) - len(stuck)}/{len(accepted)} terminal"
                + (f"; not terminal: {_sample(stuck)}" if stuck else ""),
            )
        )
        strays = {
            j: job.status.value
            for j, job in every_job.items()
            if j not in accepted and not job.status.is_terminal
        }
        report.checks.append(
            Check(
                "no other job left behind",
                not strays,
                f"{len(every_job) - len(accepted)} job(s) the callers never got (a failed "
                "submission's), all terminal"
                if not strays
                else f"not terminal: {_sample(strays)}",
            )
        )
        late: dict[str, str] = {}
        runs: Counter[int] = Counter()
        for index, calls in self.upstream.calls.items():
            submitted = self.submitted.get(index)
            job = jobs.get(submitted.job_id) if submitted and submitted.job_id else None
            runs[len({c.session for c in calls})] += 1
            if job is None or job.finished_at is None:
                continue
            ended = job.finished_at.timestamp()
            after = [c for c in calls if c.at > ended]
            if after:
                late[job.job_id] = f"{len(after)} call(s) after {job.status.value}"
        report.checks.append(
            Check(
                "no agent run after its job ended",
                not late,
                "every model call of a job arrived before its terminal write"
                if not late
                else _sample(late),
            )
        )
        per_job: dict[str, set[str]] = defaultdict(set)
        raw: Counter[str] = Counter()
        for event in events:
            detail = event.get("detail") or {}
            job_id = str(detail.get("job_id"))
            raw[job_id] += 1
            per_job[job_id].add(str(detail.get("status")))
        wrong: dict[str, str] = {}
        for job_id, job in every_job.items():
            if not job.status.is_terminal:
                continue
            seen = per_job.get(job_id, set())
            if seen != {job.status.value}:
                wrong[job_id] = f"table {job.status.value}, events {sorted(seen) or 'none'}"
        unknown = set(per_job) - set(every_job) - {self.warm_up}
        if wrong:
            in_stream = truth.stream_endings(set(wrong))
            handed: list[tuple[list[str], Any]] = getattr(stack, "notifier_calls", [])
            wrong = {
                j: f"{why} (stream: {'/'.join(in_stream.get(j, [])) or 'no ending'}; notifier: "
                + (
                    "; ".join(str(answer)[:160] for ids, answer in handed if j in ids)
                    or "never given it"
                )
                + ")"
                for j, why in wrong.items()
            }
        duplicates = sum(n - 1 for n in raw.values() if n > 1)
        report.checks.append(
            Check(
                "one completion event per job (de-duplicated)",
                not wrong and not unknown,
                f"{len(set(per_job) - {self.warm_up})} jobs with events, "
                f"{duplicates} duplicate deliveries removed"
                + (f"; wrong: {_sample(wrong)}" if wrong else "")
                + (f"; events of unknown jobs: {len(unknown)}" if unknown else ""),
            )
        )
        crossed = {}
        for job_id, job in jobs.items():
            if job.status.value != "succeeded":
                continue
            index = accepted[job_id].index
            text = (job.result.text if job.result else None) or ""
            if text.strip() != f"done {index}":
                crossed[job_id] = repr(text[:40])
        report.checks.append(
            Check(
                "each succeeded job carries its own answer",
                not crossed,
                "results match their jobs" if not crossed else _sample(crossed),
            )
        )
        report.statuses = Counter(job.status.value for job in jobs.values())
        for job_id, job in jobs.items():
            if job.finished_at is not None:
                report.latencies.append(job.finished_at.timestamp() - accepted[job_id].submitted_at)
        errors = Counter(
            job.error.code for job in jobs.values() if job.error and job.status.value != "succeeded"
        )
        faults = stack.aws_faults.stats() if stack.aws_faults else truth.fault_stats
        dead = truth.dead_letters()
        upstream = Counter(c.answer for calls in self.upstream.calls.values() for c in calls)
        attempts = Counter(job.attempts for job in jobs.values())
        report.injected = {
            "aws_faults": sum(faults["injected"].values()),
            "upstream_errors": sum(upstream[str(status)] for status, _, _ in UPSTREAM_ERRORS),
            "stalls": upstream["stall"],
            "kills": stack.kills,
            "restarts": stack.restarts,
            "duplicates": self.duplicates_sent,
            "swallowed": len(getattr(stack, "swallowed", [])),
        }
        report.facts = [
            ("jobs / tenants / workers", f"{config.jobs} / {config.tenants} / {config.workers}"),
            (
                "AWS calls / faults injected",
                f"{faults['calls']} / "
                + ", ".join(f"{k} {v}" for k, v in sorted(faults["injected"].items())),
            ),
            (
                "AWS faults by service",
                "; ".join(
                    f"{s}: {sum(k.values())}" for s, k in sorted(faults["by_service"].items())
                ),
            ),
            (
                "model calls (answer: count)",
                ", ".join(f"{k} {v}" for k, v in sorted(upstream.items())),
            ),
            (
                "workers killed mid-job",
                f"{stack.kills} ({len(self.kill)} planned, "
                f"{len(self.upstream.kill_misses)} missed; the restarts killed the rest)",
            ),
            ("worker pool restarts", str(stack.restarts)),
            ("duplicate deliveries sent", str(self.duplicates_sent)),
            ("agent runs per job (runs: jobs)", _counts(runs)),
            ("claims per job (attempts: jobs)", _counts(attempts)),
            ("errors of jobs not succeeded", _counts(errors) or "none"),
            (
                "jobs queue DLQ",
                f"{sum(dead.values())} message(s)"
                + (
                    f"; of jobs not terminal: {_sample(stuck_dead)}"
                    if (stuck_dead := {j: str(n) for j, n in dead.items() if j in stuck})
                    else ""
                ),
            ),
        ]


# ------------------------------------------------------------------ the truth, read directly


class TruthView(Protocol):
    """What the judgement reads (Truth, or a test's stand-in)."""

    events: list[dict[str, Any]]
    fault_stats: dict[str, Any]

    def jobs(self, job_ids: set[str]) -> dict[str, Any]: ...

    def all_jobs(self, tenants: set[str]) -> dict[str, Any]: ...

    def dead_letters(self) -> Counter[str]: ...

    def stream_endings(self, job_ids: set[str]) -> dict[str, list[str]]: ...


class Truth:
    """What the emulator holds, read without faults (straight to the emulator, not through the
    fault front), and a queue on the event bus that receives every completion event."""

    def __init__(self, stack: Any) -> None:
        import boto3

        from claude_jobs.adapters.jobs_table import DynamoJobRepository

        credentials = stack.aws_credentials
        self._session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            region_name="us-east-1",
        )
        self._url = stack.emulator_url
        self._settings = stack.settings
        self._dynamodb = self._client("dynamodb")
        self._sqs = self._client("sqs")
        self._repo = DynamoJobRepository(self._dynamodb, stack.settings.jobs_table)
        self._events_queue = ""
        self.events: list[dict[str, Any]] = []
        self.fault_stats: dict[str, Any] = {"calls": 0, "injected": {}, "by_service": {}}

    def _client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._url)  # type: ignore[call-overload]

    def subscribe(self) -> None:
        """A rule on the bus matching every completion event, to a queue read at the end."""
        name = f"{self._settings.event_bus_name}-ledger"
        self._events_queue = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(
            QueueUrl=self._events_queue, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        events = self._client("events")
        events.put_rule(
            Name=name,
            EventBusName=self._settings.event_bus_name,
            EventPattern=json.dumps({"source": ["claude-jobs"]}),
        )
        events.put_targets(
            Rule=name,
            EventBusName=self._settings.event_bus_name,
            Targets=[{"Id": "ledger", "Arn": arn}],
        )

    def send_job_message(self, job_id: str, tenant: str) -> None:
        """The job's message once more, as a duplicate delivery would bring it."""
        from claude_jobs.adapters.queue import job_message
        from claude_jobs.models import Job

        job = self._repo.get(job_id)
        body = (
            job_message(job)
            if isinstance(job, Job)
            else json.dumps({"job_id": job_id, "tenant_id": tenant})
        )
        self._sqs.send_message(QueueUrl=self._settings.jobs_queue_url, MessageBody=body)

    def jobs(self, job_ids: set[str]) -> dict[str, Any]:
        found = {}
        for job_id in job_ids:
            job = self._repo.get(job_id)
            if job is not None:
                found[job_id] = job
        return found

    def all_jobs(self, tenants: set[str]) -> dict[str, Any]:
        """Every job of the ledger's tenants the table holds (a full scan)."""
        ids: set[str] = set()
        paginator = self._dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=self._settings.jobs_table):
            for item in page["Items"]:
                tenant = item.get("tenant_id", {}).get("S")
                job_id = item.get("job_id", {}).get("S")
                if tenant in tenants and job_id:
                    ids.add(job_id)
        return self.jobs(ids)

    def stream_endings(self, job_ids: set[str]) -> dict[str, list[str]]:
        """Job id → the terminal statuses its stream records show (read from the start)."""
        from botocore.config import Config

        streams = self._session.client(
            "dynamodbstreams",
            endpoint_url=self._url,
            config=Config(account_id_endpoint_mode="disabled"),
        )
        arn = self._dynamodb.describe_table(TableName=self._settings.jobs_table)["Table"][
            "LatestStreamArn"
        ]
        found: dict[str, list[str]] = defaultdict(list)
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                answer = streams.get_records(ShardIterator=iterator, Limit=1000)
                for record in answer["Records"]:
                    new = record["dynamodb"].get("NewImage") or {}
                    old = record["dynamodb"].get("OldImage") or {}
                    job_id = new.get("job_id", {}).get("S")
                    status = new.get("status", {}).get("S")
                    before = old.get("status", {}).get("S")
                    if job_id in job_ids and status != before and status in TERMINAL:
                        found[job_id].append(str(status))
                if not answer["Records"]:
                    break
                iterator = answer.get("NextShardIterator")
        return dict(found)

    def dead_letters(self) -> Counter[str]:
        """Job id → messages of it in the jobs queue's DLQ (read, not removed)."""
        from claude_jobs.resources import JOBS_DLQ

        prefix = self._settings.jobs_queue_url.rsplit("/", 1)[1].removesuffix("-jobs")
        try:
            url = self._sqs.get_queue_url(QueueName=JOBS_DLQ.name(prefix))["QueueUrl"]
        except Exception:
            return Counter()
        found: Counter[str] = Counter()
        while batch := self._sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60
        ).get("Messages", []):
            for message in batch:
                found[str(json.loads(message["Body"]).get("job_id"))] += 1
        return found

    def drain_events(self, expected: set[str], quiet_seconds: float) -> None:
        """Read the completion events until every expected job has one, or none has come for
        `quiet_seconds` (the notifier trails the table by its polling)."""
        last = time.monotonic()
        while True:
            batch = self._sqs.receive_message(
                QueueUrl=self._events_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            for message in batch:
                self.events.append(json.loads(message["Body"]))
                self._sqs.delete_message(
                    QueueUrl=self._events_queue, ReceiptHandle=message["ReceiptHandle"]
                )
            if batch:
                last = time.monotonic()
            have = {str((e.get("detail") or {}).get("job_id")) for e in self.events}
            if not batch and (expected <= have or time.monotonic() - last > quiet_seconds):
                return


# ------------------------------------------------------------------ printing


def _sample(found: dict[str, str], n: int = 3) -> str:
    shown = "; ".join(f"{k}: {v}" for k, v in list(found.items())[:n])
    return f"{len(found)}: {shown}" + (" …" if len(found) > n else "")


def _counts(counter: Counter[Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def render(report: Report) -> str:
    lines = ["", "| check | result | detail |", "| --- | --- | --- |"]
    for check in report.checks:
        lines.append(f"| {check.name} | {'PASS' if check.passed else 'FAIL'} | {check.detail} |")
    lines += ["", "| fact | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in report.facts]
    lines.append(f"| final statuses | {_counts(report.statuses)} |")
    if report.latencies:
        lines.append(
            "| latency submit → terminal | "
            f"p50 {percentile(report.latencies, 50):.1f} s, "
            f"p99 {percentile(report.latencies, 99):.1f} s, "
            f"max {max(report.latencies):.1f} s, mean {statistics.fmean(report.latencies):.1f} s |"
        )
    lines.append(f"| wall time | {report.wall_seconds:.0f} s |")
    lines += [
        "",
        "Emulated: AWS faults are answered by a front of the emulator (throttling and 500s",
        "before the call; 500s after it was applied); a killed worker is its invocation's thread",
        "stopped by an uncatchable exception with its CLI ended (no result recorded, the message",
        "not deleted: it comes back after the visibility timeout, as after a crash; `finally`",
        "clean-ups still run; kills land only while an agent runs); a restart stops the pool,",
        "kills the agent runs still going after 2 s, drops the warm environments and starts a",
        "new pool; a duplicate delivery is a second message with",
        "the job's body. Timings are the local stack's on this machine, not AWS's.",
        f"Overall: {'PASS' if report.passed else 'FAIL'}",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """The stack logs every fault it meets, and its functions print their metrics: a ledger
    run shows only its table."""
    if not quiet:
        yield
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    original = sys.stdout
    with open(os.devnull, "w") as sink:
        try:
            with contextlib.redirect_stdout(sink):
                yield
        finally:
            root.setLevel(level)
            # A logger first built during the run (Powertools' binds sys.stdout when it is
            # made) must not keep writing to the closed sink after it.
            _rebind_handlers(sink, original)


def _rebind_handlers(old: object, new: TextIO) -> None:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_reliability", description=__doc__.split("\n\n")[0]
    )
    defaults = LedgerConfig()
    for name, value in vars(defaults).items():
        if isinstance(value, bool):
            parser.add_argument(f"--{name.replace('_', '-')}", type=_bool, default=value)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return parser


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def run_ledger(config: LedgerConfig) -> Report:
    return Ledger(config).run()


def run(args: argparse.Namespace) -> bool:
    """Entry point of `python -m benchmarks reliability` (default configuration)."""
    report = run_ledger(LedgerConfig())
    print(render(report), flush=True)
    return report.passed


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report = run_ledger(LedgerConfig(**vars(args)))
    print(render(report), flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
