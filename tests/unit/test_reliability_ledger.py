"""The reliability ledger's judgement: each check passes on a clean record and fails on the
fault it is there to catch (no stack: the emulator's truth and the upstream's log are given)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from benchmarks.bench_reliability import (
    Ledger,
    LedgerConfig,
    ModelCall,
    Report,
    Submitted,
    percentile,
    render,
)
from claude_jobs.models import Job, JobResult, JobStatus
from tests.support.jobs import make_job

T0 = 1_800_000_000.0


def job(index: int, status: JobStatus = JobStatus.SUCCEEDED, answer: str | None = None) -> Job:
    return make_job(
        f"job-{index}",
        tenant=f"ledger-{'abc'[index % 3]}",
        status=status,
        created_at=datetime.fromtimestamp(T0, UTC),
        finished_at=datetime.fromtimestamp(T0 + 10, UTC) if status.is_terminal else None,
        attempts=1,
        result=JobResult(text=answer if answer is not None else f"done {index}")
        if status is JobStatus.SUCCEEDED
        else None,
    )


def event(job_id: str, status: str = "succeeded") -> dict[str, Any]:
    return {"source": "claude-jobs", "detail": {"job_id": job_id, "status": status}}


@dataclass
class FakeTruth:
    table: dict[str, Job]
    events: list[dict[str, Any]]
    fault_stats: dict[str, Any] = field(
        default_factory=lambda: {"calls": 100, "injected": {"throttle": 5}, "by_service": {}}
    )

    def jobs(self, ids: set[str]) -> dict[str, Job]:
        return {i: j for i, j in self.table.items() if i in ids}

    def all_jobs(self, tenants: set[str]) -> dict[str, Job]:
        return {i: j for i, j in self.table.items() if j.tenant_id in tenants}

    def dead_letters(self) -> Counter[str]:
        return Counter()

    def stream_endings(self, job_ids: set[str]) -> dict[str, list[str]]:
        return {}


@dataclass
class FakeStack:
    aws_faults: Any = None
    kills: int = 1
    restarts: int = 1


def judged(sabotage: Callable[[Ledger, FakeTruth], None] | None = None) -> Report:
    ledger = Ledger(LedgerConfig(jobs=3, kill_rate=0, duplicate_rate=0))
    ledger.warm_up = "warm-up"
    table = {f"job-{i}": job(i) for i in range(3)}
    for i in range(3):
        ledger.submitted[i] = Submitted(i, f"ledger-{'abc'[i]}", T0, job_id=f"job-{i}")
        ledger.upstream.calls[i] = [ModelCall(T0 + 5, f"session-{i}", "ok")]
    truth = FakeTruth(table, [event(f"job-{i}") for i in range(3)])
    if sabotage is not None:
        sabotage(ledger, truth)
    report = Report(ledger.config)
    ledger._judge(report, FakeStack(), truth)
    return report


def failed(report: Report) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


def test_a_clean_record_passes_every_check() -> None:
    report = judged()
    assert report.passed, render(report)
    assert len(report.checks) == 7
    assert sorted(report.latencies) == [10.0, 10.0, 10.0]
    assert "Overall: PASS" in render(report)


def lose(ledger: Ledger, truth: FakeTruth) -> None:
    del truth.table["job-1"]
    truth.events = [e for e in truth.events if e["detail"]["job_id"] != "job-1"]


def leave_running(ledger: Ledger, truth: FakeTruth) -> None:
    truth.table["job-2"] = job(2, JobStatus.RUNNING)
    truth.events = [e for e in truth.events if e["detail"]["job_id"] != "job-2"]


def call_after_the_end(ledger: Ledger, truth: FakeTruth) -> None:
    ledger.upstream.calls[0].append(ModelCall(T0 + 11, "session-late", "ok"))


def publish_two_endings(ledger: Ledger, truth: FakeTruth) -> None:
    truth.events.append(event("job-0", "failed"))


def publish_nothing(ledger: Ledger, truth: FakeTruth) -> None:
    truth.events = truth.events[1:]


def cross_answers(ledger: Ledger, truth: FakeTruth) -> None:
    truth.table["job-1"] = job(1, answer="done 2")


def refuse_a_submission(ledger: Ledger, truth: FakeTruth) -> None:
    ledger.submitted[0].job_id = None
    ledger.submitted[0].last_error = "503 unavailable"
    del truth.table["job-0"]
    truth.events = truth.events[1:]


def leave_a_stray(ledger: Ledger, truth: FakeTruth) -> None:
    truth.table["job-9"] = job(9, JobStatus.QUEUED)


@pytest.mark.parametrize(
    ("sabotage", "caught_by"),
    [
        (lose, {"no job lost", "every job in exactly one terminal state"}),
        (leave_running, {"every job in exactly one terminal state"}),
        (call_after_the_end, {"no agent run after its job ended"}),
        (publish_two_endings, {"one completion event per job (de-duplicated)"}),
        (publish_nothing, {"one completion event per job (de-duplicated)"}),
        (cross_answers, {"each succeeded job carries its own answer"}),
        (refuse_a_submission, {"every submission accepted (client retries)"}),
        (leave_a_stray, {"no other job left behind"}),
    ],
)
def test_each_fault_fails_its_check(
    sabotage: Callable[[Ledger, FakeTruth], None], caught_by: set[str]
) -> None:
    # Given a record with one fault, When it is judged
    report = judged(sabotage)
    # Then exactly the checks meant to catch it fail, and the run fails
    assert failed(report) == caught_by
    assert not report.passed
    assert "Overall: FAIL" in render(report)


def test_duplicate_events_of_one_ending_are_one_event() -> None:
    report = judged(lambda _ledger, truth: truth.events.append(event("job-0")))
    assert report.passed
    (check,) = [c for c in report.checks if c.name.startswith("one completion event")]
    assert "1 duplicate deliveries removed" in check.detail


def test_percentiles() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) in (50.0, 51.0)
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
