"""Progress events: the AWS calls (and DynamoDB write units) a job costs with progress on.

Each job runs through the worker's real `JobProcessor` (claim, run, record) against an
in-process emulator (moto), with a scripted agent that hands the run's claude-agent-sdk
messages to the worker as the real one does — `turns` turns of a text block, a Bash call and
its result — as fast as they come (a burst) or spaced out (a trickle). The same jobs run with
progress off (`NoProgress`) for the baseline. botocore's `before-call` hook counts every call
the worker's clients make; write units are DynamoDB's rule (1 per KiB of item, rounded up).

The bound: a job's event writes are ≈ 1 (the claim's `queued` + `running`) + events / 25
(full batches) + 1 (the end), and at most one per `FLUSH_SECONDS` while events trickle in;
never one per event. Readers pay one GetItem (the job) + one Query (its events) per look.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

DESCRIPTION = "progress events: AWS calls and write units per job, progress on vs off"
TENANT = "tenant-bench"
#: (label, turns, seconds between turns)
SCENARIOS = (
    ("1 turn, burst", 1, 0.0),
    ("10 turns, burst", 10, 0.0),
    ("100 turns, burst", 100, 0.0),
    ("400 turns (over the 1,000-event bound)", 400, 0.0),
    ("8 turns, one every 0.5 s", 8, 0.5),
)


@contextlib.contextmanager
def emulator() -> Iterator[None]:
    from moto import mock_aws

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    with mock_aws():
        yield


class Calls:
    """Counts API calls by `service.Operation`, and PutItem write units on the events table."""

    def __init__(self, events_table: str) -> None:
        self.calls: Counter[str] = Counter()
        self.event_wcu = 0
        self._events_table = events_table

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call", self._count)
        client.meta.events.register("before-parameter-build.dynamodb.PutItem", self._units)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def _units(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") != self._events_table:
            return
        size = 0
        for name, value in params.get("Item", {}).items():
            ((kind, data),) = value.items()
            size += len(name.encode()) + (len(str(data).encode()) if kind in ("S", "N") else 1)
        self.event_wcu += -(-size // 1024)

    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.event_wcu = 0


def agent(turns: int, gap: float) -> Callable[[Any], Any]:
    """A scripted run that reports `turns` turns through `on_message`, as the SDK would."""
    from claude_agent_sdk import (
        AssistantMessage,
        TextBlock,
        ToolResultBlock,
        ToolUseBlock,
        UserMessage,
    )

    from claude_jobs.models import Usage
    from claude_jobs.worker.agent import AgentOutcome

    def run(request: Any) -> AgentOutcome:
        for n in range(turns):
            if gap:
                time.sleep(gap)
            request.on_message(
                AssistantMessage(
                    content=[
                        TextBlock(f"Step {n}: listing the files."),
                        ToolUseBlock(f"tu-{n}", "Bash", {"command": f"ls -la dir{n}"}),
                    ],
                    model="m",
                    usage={"input_tokens": 100 + n, "output_tokens": 20},
                    message_id=f"msg-{n}",
                )
            )
            request.on_message(UserMessage(content=[ToolResultBlock(f"tu-{n}", "a\nb")]))
        usage = Usage(input_tokens=120 * turns, output_tokens=20 * turns, total_cost_usd=0.01)
        return AgentOutcome("succeeded", text="done", usage=usage)

    return run


def run_job(
    container: Any, calls: Calls, sandbox: str, progress: bool, turns: int, gap: float
) -> tuple[int, int, int]:
    """One job through the worker; its (worker AWS calls, events stored, event write units)."""
    from claude_jobs.models import JobRequest
    from claude_jobs.worker.isolation import AgentIdentity, IdentityPool
    from claude_jobs.worker.ports import WorkerPorts
    from claude_jobs.worker.processor import JobProcessor
    from claude_jobs.worker.progress import NoProgress, ProgressEvents
    from claude_jobs_tools.scripted_agent import FakeProxy, PollThenAnswer, ScriptedRunner

    job = container.job_service.submit(TENANT, JobRequest(prompt="Work.")).job
    ports = WorkerPorts(
        jobs=container.job_repository,
        documents=container.job_documents,
        runner=ScriptedRunner(PollThenAnswer(agent(turns, gap))),
        proxy=FakeProxy().start(),
        key=lambda: "sk-ant-bench-key-0123456789",
        settings=container.settings,
        identities=IdentityPool(AgentIdentity()),
        progress=ProgressEvents(container.event_store) if progress else NoProgress(),
        sandbox_dir=sandbox,
        min_run_seconds=1,
    )
    processor = JobProcessor(ports)
    calls.reset()
    processed = processor.process(job.job_id, 900)
    assert processed.action == "ran", processed
    made, units = calls.total(), calls.event_wcu
    stored = len(container.event_store.read(job.job_id, 0, 2000))
    return made, stored, units


def run(args: argparse.Namespace) -> bool:
    import boto3

    from claude_jobs.wiring import Container
    from claude_jobs_tools.provision import provision

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    rows = []
    with emulator(), contextlib.redirect_stdout(io.StringIO()):
        settings = provision("bench-progress").settings  # no key: the agent is scripted
        calls = Calls(settings.events_table)

        class CountingContainer(Container):
            def client(self, service: str) -> Any:
                with self._lock:
                    if service not in self._clients:
                        made = boto3.client(service)  # type: ignore[call-overload]
                        self._clients[service] = calls.attach(made)
                    return self._clients[service]

        container = CountingContainer(settings)
        sandbox = tempfile.mkdtemp(prefix="bench-progress-")
        for label, turns, gap in SCENARIOS:
            off, _, _ = run_job(container, calls, sandbox, False, turns, gap)
            on, stored, units = run_job(container, calls, sandbox, True, turns, gap)
            rows.append((label, off, on, stored, units))
    print(
        f"{'job':<40} {'AWS calls off':>13} {'on':>5} {'added':>6} "
        f"{'events kept':>11} {'event WCU':>9} {'calls/event':>11}"
    )
    ok = True
    for label, off, on, stored, units in rows:
        added = on - off
        print(
            f"{label:<40} {off:>13} {on:>5} {added:>6} {stored:>11} {units:>9} "
            f"{added / max(stored, 1):>11.3f}"
        )
        # The bound: batches, never one write per event (+ the claim's and the end's).
        ok = ok and added <= 2 + -(-stored // 25) + 8 and stored <= 1000
    print(
        "added = the event writes (PutItem per batch of ≤ 25, flushed every 1 s while events "
        "trickle, and at the end); a first claim reads nothing back. A reader: 1 GetItem + "
        "1 Query per look (a long poll looks every 0.5 s)."
    )
    return ok


if __name__ == "__main__":
    import sys

    sys.exit(0 if run(argparse.Namespace(rounds=None)) else 1)
