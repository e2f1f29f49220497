"""Progress events in the worker (worker/progress.py) on an in-memory event store: the SDK's
messages become ordered, scrubbed, bounded events, written in batches; a retried attempt
continues the sequence; a failing store never fails the run."""

from __future__ import annotations

from typing import Any

from claude_agent_sdk import AssistantMessage, TextBlock, ToolResultBlock, ToolUseBlock, UserMessage

from claude_jobs.models import EventPage, Job, JobStatus, Usage
from claude_jobs.worker.metering import Metered
from claude_jobs.worker.progress import (
    FLUSH_EVENTS,
    RESERVED_EVENTS,
    ProgressRecorder,
    cut_bytes,
)
from claude_jobs.worker.scrub import REDACTED, Scrubber
from tests.fakes import InMemoryEventStore
from tests.support.jobs import make_job

FAKE_KEY = "sk-ant-api03-" + "k" * 40
TOKEN = "cj-job-tokentokentoken"


def running_job(attempts: int = 1) -> Job:
    return make_job(status=JobStatus.RUNNING, attempts=attempts)


def recorder(store: InMemoryEventStore, job: Job | None = None, **options: Any) -> ProgressRecorder:
    options.setdefault("flush_seconds", 3600.0)  # batches by count and at the end only
    return ProgressRecorder(store, job or running_job(), Scrubber(), **options).open()


def turn(*blocks: Any, message_id: str = "msg-1", tokens: int = 10) -> AssistantMessage:
    usage = {"input_tokens": tokens, "output_tokens": tokens // 2}
    return AssistantMessage(content=list(blocks), model="m", usage=usage, message_id=message_id)


def results(*blocks: ToolResultBlock) -> UserMessage:
    return UserMessage(content=list(blocks))


def shown(store: InMemoryEventStore, job_id: str = "job-1") -> list[dict[str, Any]]:
    """The stored events as the API shows them (validated by its model)."""
    page = EventPage.model_validate(
        {"items": store.events(job_id), "next_cursor": "0", "done": False}
    )
    return [e.model_dump(mode="json", exclude_none=True) for e in page.items]


def test_a_run_becomes_status_tool_use_tool_result_text_usage_in_order() -> None:
    # Given a recorder of a job's first run, with a meter that has seen the model's calls
    store = InMemoryEventStore()
    progress = recorder(store)
    progress.use_meter(lambda: Metered(input_tokens=12, output_tokens=7, cost_usd=0.0042))
    # When the agent calls Bash, gets its result, writes text and the run ends
    progress.message(
        turn(TextBlock("Let me look."), ToolUseBlock("tu-1", "Bash", {"command": "ls -la"}))
    )
    progress.message(results(ToolResultBlock("tu-1", "a\nb", is_error=False)))
    progress.message(turn(TextBlock("Two files."), message_id="msg-2"))
    progress.finish("succeeded", Usage(input_tokens=30, output_tokens=9, total_cost_usd=0.01))
    # Then the events tell it in order, with strictly increasing seqs from 1
    events = shown(store)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [(e["type"], e.get("status") or e.get("tool") or e.get("text")) for e in events] == [
        ("status", "queued"),
        ("status", "running"),
        ("text", "Let me look."),
        ("tool_use", "Bash"),
        ("usage", None),
        ("tool_result", "Bash"),
        ("text", "Two files."),
        ("usage", None),
        ("status", "succeeded"),
    ]
    assert events[3]["input"] == '{"command":"ls -la"}'
    assert events[4] | {"at": ""} == {
        "seq": 5,
        "at": "",
        "type": "usage",
        "input_tokens": 12,
        "output_tokens": 7,
        "total_cost_usd": 0.0042,
    }
    assert events[5]["is_error"] is False
    assert events[7]["total_cost_usd"] == 0.01 and events[7]["input_tokens"] == 30
    # and the queued event carries the job's creation time
    assert events[0]["at"] == "2026-11-30T00:00:00Z"


def test_secrets_are_scrubbed_before_anything_is_cut_or_stored() -> None:
    # Given a recorder that knows the key and the job's proxy token
    store = InMemoryEventStore()
    progress = recorder(store)
    progress.use_secrets(FAKE_KEY, TOKEN)
    aws = "AKIAIOSFODNN7EXAMPLE"
    secret = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    # When a hostile agent prints them in text and in a tool's input
    progress.message(
        turn(
            TextBlock(f"key {FAKE_KEY} token {TOKEN} id {aws} {secret}"),
            ToolUseBlock("tu-1", "Bash", {"command": f"curl -H 'x-api-key: {FAKE_KEY}' {aws}"}),
        )
    )
    progress.close()
    # Then no stored event holds any of them
    stored = repr(store.batches)
    for value in (FAKE_KEY, TOKEN, aws, "wJalrXUtnFEMI"):
        assert value not in stored
    assert REDACTED in shown(store)[2]["text"] and REDACTED in shown(store)[3]["input"]


def test_long_text_and_tool_input_are_cut_to_their_bounds() -> None:
    # Given a recorder
    store = InMemoryEventStore()
    progress = recorder(store)
    # When the agent writes 10 KB of multi-byte text and a tool input of 5,000 chars
    progress.message(
        turn(TextBlock("é" * 5000), ToolUseBlock("tu-1", "Write", {"content": "x" * 5000}))
    )
    progress.close()
    text, tool = shown(store)[2:4]
    # Then the text is at most 2 KiB of whole characters, marked truncated
    assert len(text["text"].encode()) <= 2048 and text["truncated"] is True
    assert set(text["text"]) == {"é"}
    # and the input is at most 512 characters
    assert len(tool["input"]) <= 512 and tool["input"].startswith('{"content":"xxx')
    assert cut_bytes("short", 2048) == ("short", False)


def test_more_than_1000_events_are_bounded_and_the_ending_is_kept() -> None:
    # Given a recorder of a job whose agent calls a tool 1,500 times
    store = InMemoryEventStore()
    progress = recorder(store)
    for n in range(1500):
        progress.message(turn(ToolUseBlock(f"tu-{n}", "Bash", {"command": f"echo {n}"})))
    progress.finish("succeeded", Usage(input_tokens=1, output_tokens=1, total_cost_usd=0.5))
    # Then at most 1,000 events are kept, seqs from 1 without a gap or repeat
    events = shown(store)
    assert 1000 - RESERVED_EVENTS <= len(events) <= 1000
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # and the last ones are the final usage and the terminal status
    assert [e["type"] for e in events[-2:]] == ["usage", "status"]
    assert events[-1]["status"] == "succeeded"
    # (the tool calls past the bound, less the slots kept for the ending, were dropped)
    assert progress.dropped == 1500 - (1000 - RESERVED_EVENTS - 2)


def test_events_are_written_in_batches_not_one_by_one() -> None:
    # Given a recorder
    store = InMemoryEventStore()
    progress = recorder(store)
    opened = store.appends
    # When 100 events arrive
    for n in range(100):
        progress.message(turn(TextBlock(f"line {n}")))
    progress.close()
    # Then they took a handful of writes: one per full batch (and the rest at the end)
    assert opened == 1  # queued + running, at once
    assert store.appends - opened == -(-100 // FLUSH_EVENTS)
    assert len(store.events("job-1")) == 102


def test_a_retried_attempt_continues_after_the_stored_events() -> None:
    # Given a job whose first attempt stored some events and died
    store = InMemoryEventStore()
    first = recorder(store)
    first.message(turn(TextBlock("first attempt")))
    first.close()
    stored = store.last_seq("job-1")
    # When its second attempt runs
    second = recorder(store, running_job(attempts=2))
    second.message(turn(TextBlock("second attempt")))
    second.finish("succeeded", Usage())
    # Then its events follow the first attempt's: no second `queued`, no repeated seq
    events = shown(store)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "running", "succeeded"]
    assert events[stored]["status"] == "running"


def test_a_later_segment_continues_the_sequence_and_names_its_segment() -> None:
    # Given a long job whose first segment stored its events (same attempt)
    store = InMemoryEventStore()
    first = recorder(store, segment=1)
    first.message(turn(TextBlock("segment one")))
    first.close()
    # When its next segment runs in another invocation, with the same attempt count
    second = recorder(store, segment=2)
    second.finish("succeeded", Usage())
    # Then it continues after the stored events, and its status events carry the segment
    events = shown(store)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [(e["status"], e.get("segment")) for e in events if e["type"] == "status"]
    assert statuses == [("queued", None), ("running", 1), ("running", 2), ("succeeded", 2)]


def test_a_stale_attempt_writing_meanwhile_does_not_duplicate_or_reorder_seqs() -> None:
    # Given two attempts of one job writing at the same time (a stale one still running)
    store = InMemoryEventStore()
    stale = recorder(store, flush_events=2)
    fresh = recorder(store, running_job(attempts=2), flush_events=2)
    # When both write batches
    for n in range(5):
        stale.message(turn(TextBlock(f"stale {n}")))
        fresh.message(turn(TextBlock(f"fresh {n}")))
    stale.close()
    fresh.close()
    # Then every stored seq appears once, in order, and no event was lost
    events = store.events("job-1")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    texts = [e["text"] for e in events if e["type"] == "text"]
    assert sorted(texts) == sorted(
        [f"stale {n}" for n in range(5)] + [f"fresh {n}" for n in range(5)]
    )


def test_a_failing_store_never_fails_the_run() -> None:
    # Given a store that fails its next writes
    store = InMemoryEventStore()
    progress = recorder(store, flush_events=1)
    store.fail_next = 2
    # When events arrive and a hostile message shape too
    progress.message(turn(TextBlock("lost")))
    progress.message(turn(TextBlock("lost too")))
    progress.message(object())
    progress.message(turn(TextBlock("kept")))
    progress.finish("succeeded", Usage())
    # Then nothing raised, the lost events are counted and later ones are stored in order
    events = store.events("job-1")
    assert progress.lost == 2
    assert [e.get("text") for e in events if e["type"] == "text"] == ["kept"]
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})


def test_batches_also_go_out_after_a_short_wait() -> None:
    # Given a recorder that flushes after 10 ms
    store = InMemoryEventStore()
    progress = recorder(store, flush_seconds=0.01)
    # When one event arrives and the writer gets a moment
    progress.message(turn(TextBlock("soon")))
    import time

    for _ in range(500):
        if store.last_seq("job-1") == 3:
            break
        time.sleep(0.01)
    # Then it was stored before the run ended
    assert store.last_seq("job-1") == 3
    progress.close()
