"""A job's progress events end to end on in-memory ports: the worker (`JobProcessor` with a
scripted agent that emits SDK messages) writes them, the job service reads them back after a
cursor, long-polls, says `done`, and shows the transitions no worker recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import AssistantMessage, TextBlock, ToolResultBlock, ToolUseBlock, UserMessage

from claude_jobs.documents import JobDocuments
from claude_jobs.errors import JobNotFoundError, RequestValidationError
from claude_jobs.job_service import JobService
from claude_jobs.models import EventPage, Job, JobRequest, JobStatus
from claude_jobs.settings import Settings
from claude_jobs.worker.agent import AgentOutcome, AgentRequest, AgentStartError
from claude_jobs.worker.processor import JobProcessor, WorkerFault
from claude_jobs.worker.progress import ProgressEvents
from tests.fakes import (
    Finish,
    InMemoryDocumentStore,
    InMemoryEventStore,
    InMemoryJobRepository,
    InMemoryQueue,
    RaiseFault,
    ScriptedRunner,
    WaitForStop,
)
from tests.fakes.agent import Step
from tests.fakes.worker import worker_ports

KEY = "sk-ant-api03-" + "r" * 40


class World:
    def __init__(self, tmp_path: Path, sleep: Callable[[float], None] = lambda s: None) -> None:
        self.repo = InMemoryJobRepository()
        self.events = InMemoryEventStore()
        self.settings = Settings(max_attempts=2)
        self.service = JobService(
            self.repo,
            InMemoryQueue(),
            self.settings,
            documents=JobDocuments(InMemoryDocumentStore()),
            events=self.events,
            sleep=sleep,
        )
        self.sandbox = tmp_path

    def submit(self, tenant: str = "acme") -> Job:
        return self.service.submit(tenant, JobRequest(prompt="List the files.")).job

    def run(self, job: Job, *steps: Step) -> None:
        processor = JobProcessor(
            worker_ports(
                self.repo,
                JobDocuments(InMemoryDocumentStore()),
                runner=ScriptedRunner(*steps),
                key=lambda: KEY,
                settings=self.settings,
                progress=ProgressEvents(self.events, flush_seconds=3600),
                sandbox_dir=str(self.sandbox),
            )
        )
        processor.process(job.job_id, 900)

    def page(self, job: Job, after: int = 0, tenant: str = "acme", wait: int = 0) -> EventPage:
        return self.service.events(tenant, job.job_id, after, wait)


def agent_using_bash(request: AgentRequest) -> AgentOutcome:
    """A run as the SDK reports it: a Bash call, its result, a closing text (printing the key)."""
    request.on_message(
        AssistantMessage(
            content=[ToolUseBlock("tu-1", "Bash", {"command": "ls"})],
            model="m",
            usage={"input_tokens": 5, "output_tokens": 3},
            message_id="m1",
        )
    )
    request.on_message(UserMessage(content=[ToolResultBlock("tu-1", "a.txt", is_error=False)]))
    request.on_message(
        AssistantMessage(content=[TextBlock(f"One file. {KEY}")], model="m", message_id="m2")
    )
    return Finish(text="One file.")(request)


def kinds(page: EventPage) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event in page.items:
        data = event.model_dump(mode="json")
        out.append((data["seq"], data["type"], data.get("status") or data.get("tool") or ""))
    return out


def test_a_run_reads_back_in_order_and_is_done_when_all_is_returned(tmp_path: Path) -> None:
    # Given a job run by the worker with an agent that calls Bash and prints the key
    world = World(tmp_path)
    job = world.submit()
    world.run(job, agent_using_bash)
    # When its events are read from the start
    page = world.page(job)
    # Then they are the run in order, scrubbed, and the page is the last one
    assert kinds(page) == [
        (1, "status", "queued"),
        (2, "status", "running"),
        (3, "tool_use", "Bash"),
        (4, "usage", ""),
        (5, "tool_result", "Bash"),
        (6, "text", ""),
        (7, "usage", ""),
        (8, "status", "succeeded"),
    ]
    assert KEY not in page.model_dump_json()
    assert page.done is True and page.next_cursor == "8"
    # And reading after a cursor gives only newer events; after the last, none (still done)
    assert [e.seq for e in world.page(job, after=5).items] == [6, 7, 8]
    last = world.page(job, after=8)
    assert last.items == [] and last.done is True and last.next_cursor == "8"


def test_a_run_cancelled_while_running_ends_with_cancelled(tmp_path: Path) -> None:
    # Given a running job whose agent runs until it is asked to stop, and a cancel meanwhile
    world = World(tmp_path)
    job = world.submit()

    def cancelled_meanwhile(request: AgentRequest) -> AgentOutcome:
        request.on_message(
            AssistantMessage(content=[TextBlock("working")], model="m", message_id="m1")
        )
        world.service.cancel("acme", job.job_id)
        return WaitForStop()(request)

    world.run(job, cancelled_meanwhile)
    # Then its events end with the final usage and `cancelled`, stored by the worker
    page = world.page(job)
    assert [k[1:] for k in kinds(page)][-3:] == [
        ("text", ""),
        ("usage", ""),
        ("status", "cancelled"),
    ]
    assert page.done is True
    assert world.events.events(job.job_id)[-1]["status"] == "cancelled"


def test_a_queued_job_shows_queued_and_a_cancelled_one_its_ending(tmp_path: Path) -> None:
    # Given a queued job (no worker has seen it: nothing is stored)
    world = World(tmp_path)
    job = world.submit()
    # Then its events show it queued, not done
    page = world.page(job)
    assert kinds(page) == [(1, "status", "queued")] and page.done is False
    assert world.page(job, after=1).items == []
    # When it is cancelled while queued
    world.service.cancel("acme", job.job_id)
    # Then a reader that saw `queued` gets `cancelled` next, and is done
    rest = world.page(job, after=1)
    assert kinds(rest) == [(2, "status", "cancelled")] and rest.done is True
    assert world.page(job, after=2).done is True and world.page(job, after=2).items == []
    assert kinds(world.page(job)) == [(1, "status", "queued"), (2, "status", "cancelled")]
    assert world.events.events(job.job_id) == []  # shown, not stored: no write was paid


def test_a_released_attempt_and_its_retry_keep_one_sequence(tmp_path: Path) -> None:
    # Given a job whose first attempt hits an infrastructure fault (released, retried)
    world = World(tmp_path)
    job = world.submit()
    with pytest.raises(WorkerFault):
        world.run(job, RaiseFault(AgentStartError("the CLI could not start")))
    assert world.repo.get(job.job_id).status is JobStatus.QUEUED  # type: ignore[union-attr]
    between = world.page(job)
    assert [e[2] for e in kinds(between)] == ["queued", "running"] and not between.done
    # When the retry runs to the end
    world.run(job, agent_using_bash)
    # Then the events continue the first attempt's sequence: no repeat, no reorder
    page = world.page(job)
    seqs = [e.seq for e in page.items]
    assert seqs == list(range(1, len(seqs) + 1))
    statuses = [k[2] for k in kinds(page) if k[1] == "status"]
    assert statuses == ["queued", "running", "running", "succeeded"]


def test_a_job_failed_without_a_run_shows_its_ending(tmp_path: Path) -> None:
    # Given a job failed on its last attempt by an infrastructure fault
    world = World(tmp_path)
    job = world.submit()
    fault = RaiseFault(AgentStartError("the CLI could not start"))
    with pytest.raises(WorkerFault):
        world.run(job, fault)
    world.run(job, fault)  # max_attempts = 2: this attempt fails the job
    assert world.repo.get(job.job_id).status is JobStatus.FAILED  # type: ignore[union-attr]
    # Then its events end with `failed` (shown after the last stored one) and are done
    page = world.page(job)
    assert [k[2] for k in kinds(page)] == ["queued", "running", "running", "failed"]
    assert page.done is True


def test_another_tenants_job_is_not_found_and_a_hostile_cursor_is_refused(
    tmp_path: Path,
) -> None:
    # Given a job of tenant acme
    world = World(tmp_path)
    job = world.submit()
    # Then another tenant cannot read its events
    with pytest.raises(JobNotFoundError):
        world.page(job, tenant="other")
    # and a cursor out of range is a validation error, never a crash
    for after in (-1, 10**7):
        with pytest.raises(RequestValidationError):
            world.page(job, after=after)


def test_a_long_poll_answers_with_the_next_event(tmp_path: Path) -> None:
    # Given a reader long-polling a queued job after its `queued` event; the worker runs the
    # job while the reader waits (the service's sleep)
    world: World

    def sleep(seconds: float) -> None:
        if world.repo.get(job.job_id).status is JobStatus.QUEUED:  # type: ignore[union-attr]
            world.run(job, agent_using_bash)

    world = World(tmp_path, sleep=sleep)
    job = world.submit()
    # When it waits
    page = world.page(job, after=1, wait=20)
    # Then it gets the events that came meanwhile
    assert page.items and page.items[0].seq == 2
    assert page.done is True


def test_a_long_poll_of_a_job_with_nothing_new_ends_empty(tmp_path: Path) -> None:
    # Given a queued job whose reader saw `queued`
    import time

    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        time.sleep(seconds)

    world = World(tmp_path, sleep=sleep)
    job = world.submit()
    # When it waits a second with nothing happening
    page = world.page(job, after=1, wait=1)
    # Then the answer is empty and not done, after polling meanwhile
    assert page.items == [] and page.done is False and page.next_cursor == "1"
    assert len(calls) >= 2


class CountingEvents:
    """The in-memory event store, counting reads (a recording fake)."""

    def __init__(self, inner: InMemoryEventStore) -> None:
        self._inner = inner
        self.reads = 0

    def read(self, job_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        self.reads += 1
        return self._inner.read(job_id, after, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_long_poll_sees_a_job_cancelled_while_queued_through_its_status_reads(
    tmp_path: Path,
) -> None:
    # Given a reader long-polling a queued job after its `queued` event, the job cancelled
    # during the first pause (no worker writes an event for it), and an events table that
    # counts its reads
    from claude_jobs import long_poll

    pauses: list[float] = []
    world: World

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            world.service.cancel("acme", job.job_id)

    world = World(tmp_path, sleep=sleep)
    counting = CountingEvents(world.events)
    world.service.context.events = counting
    job = world.submit()
    # When it waits
    page = world.page(job, after=1, wait=20)
    # Then the answer is the cancellation, seen at the first status read (every
    # STATUS_EVERY-th step; the steps between probe the events table only)
    assert kinds(page) == [(2, "status", "cancelled")]
    assert page.done is True
    assert len(pauses) == long_poll.STATUS_EVERY
    # one read for the first look, one probe a step, then the full look's reads
    assert counting.reads >= 1 + long_poll.STATUS_EVERY
    assert counting.reads <= 1 + long_poll.STATUS_EVERY + 2


def test_a_long_poll_answers_on_the_step_after_an_event_is_stored(tmp_path: Path) -> None:
    # Given a reader long-polling a job that has been queued for a minute, run by the worker
    # during the poll's second pause
    from datetime import timedelta

    from claude_jobs import long_poll

    pauses: list[float] = []
    world: World

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            world.run(job, agent_using_bash)

    world = World(tmp_path, sleep=sleep)
    job = world.submit()
    world.service.context.clock = lambda: job.created_at + timedelta(seconds=60)
    # When it waits after `queued`
    page = world.page(job, after=1, wait=20)
    # Then it answered after that pause with the new events, polling slowly meanwhile (the
    # job had been quiet for a minute)
    assert page.items and page.items[0].seq == 2 and page.done is True
    assert pauses == [long_poll.MAX_PAUSE] * 2


class StoredOnFirstPause:
    """The service's sleep: during a long-poll's first pause the worker stores `events` (at
    seqs 2 and on) for the job, as if it ran meanwhile."""

    def __init__(self, *kinds: tuple[str, str]) -> None:
        self.kinds = kinds
        self.pauses: list[float] = []
        self.world: World | None = None
        self.job: Job | None = None

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if len(self.pauses) == 1 and self.world is not None and self.job is not None:
            at = "2026-01-01T00:00:00.000Z"
            events = [
                {
                    "seq": seq,
                    "at": at,
                    "type": kind,
                    **({"status": value} if kind == "status" else {"tool": value, "input": "ls"}),
                }
                for seq, (kind, value) in enumerate(self.kinds, start=2)
            ]
            self.world.events.append(self.job.job_id, events)


def _counting_job_reads(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the jobs the service reads from now on, in order."""
    job_reads: list[str] = []
    read_job = world.repo.get

    def counted_get(job_id: str) -> Job | None:
        job_reads.append(job_id)
        return read_job(job_id)

    monkeypatch.setattr(world.repo, "get", counted_get)
    return job_reads


def _world_storing(tmp_path: Path, *kinds: tuple[str, str]) -> tuple[World, Job]:
    sleep = StoredOnFirstPause(*kinds)
    world = World(tmp_path, sleep=sleep)
    job = world.submit()
    sleep.world, sleep.job = world, job
    return world, job


def test_a_long_poll_answers_a_running_jobs_new_events_from_its_probe_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reader long-polling a job after `queued`, whose worker stores `running` and a
    # tool call during the first pause (the job's and the events' reads are counted)
    world, job = _world_storing(tmp_path, ("status", "running"), ("tool_use", "Bash"))
    counting = CountingEvents(world.events)
    world.service.context.events = counting
    job_reads = _counting_job_reads(world, monkeypatch)
    # When it waits
    page = world.page(job, after=1, wait=20)
    # Then the probe that found them is the answer: not done, both events, the job read once
    # (the first look) and the events twice (the first look, the probe)
    assert kinds(page) == [(2, "status", "running"), (3, "tool_use", "Bash")]
    assert page.done is False and page.next_cursor == "3"
    assert len(job_reads) == 1 and counting.reads == 2


def test_a_long_poll_whose_probe_finds_the_end_looks_again_job_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reader long-polling a job after `queued`; during the first pause the worker
    # stores the run's events up to `succeeded` but the job's terminal write has not landed
    world, job = _world_storing(tmp_path, ("status", "running"), ("status", "succeeded"))
    counting = CountingEvents(world.events)
    world.service.context.events = counting
    job_reads = _counting_job_reads(world, monkeypatch)
    # When it waits
    page = world.page(job, after=1, wait=20)
    # Then the answer comes from a full look after the probe: the job read again, then the
    # events (first look, probe, full look); not done, since the job is not terminal yet (the
    # next look says so once it is)
    assert kinds(page) == [(2, "status", "running"), (3, "status", "succeeded")]
    assert page.done is False
    assert len(job_reads) == 2 and counting.reads == 3
