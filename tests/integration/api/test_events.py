"""GET /v1/jobs/{job_id}/events through the status function's handler, on moto: the page
shape, cursors (hostile ones are 422, never 5xx), the tenant check and `done`."""

from __future__ import annotations

import pytest

from claude_jobs.models import JobStatus
from claude_jobs.ports import Transition

from .conftest import OTHER_TENANT, Api
from .test_status import finish, submitted


def test_a_queued_job_answers_its_queued_event_and_is_not_done(api: Api) -> None:
    # Given a queued job
    job_id = submitted(api)
    # When its owner reads its events
    answer = api.job_events(job_id)
    # Then it is a page with the `queued` status event, not done, with Retry-After
    assert answer.status == 200, answer.text
    body = answer.json
    assert [(e["seq"], e["type"], e["status"]) for e in body["items"]] == [(1, "status", "queued")]
    assert body["next_cursor"] == "1" and body["done"] is False
    assert answer.headers["Retry-After"] == "2"
    assert "segment" not in body["items"][0]  # absent unless known


def test_stored_events_are_read_after_the_cursor_and_done_at_the_end(api: Api) -> None:
    # Given a job that ran, with events stored by its worker in two batches
    job_id = submitted(api)
    store = api.container.event_store
    at = "2026-11-30T00:00:00.000Z"
    store.append(
        job_id,
        [
            {"seq": 1, "at": at, "type": "status", "status": "queued"},
            {"seq": 2, "at": at, "type": "status", "status": "running"},
            {"seq": 3, "at": at, "type": "tool_use", "tool": "Bash", "input": '{"command":"ls"}'},
        ],
    )
    store.append(
        job_id,
        [
            {"seq": 4, "at": at, "type": "tool_result", "tool": "Bash", "is_error": False},
            {"seq": 5, "at": at, "type": "text", "text": "done", "truncated": False},
            {
                "seq": 6,
                "at": at,
                "type": "usage",
                "input_tokens": 9,
                "output_tokens": 4,
                "total_cost_usd": 0.001,
            },
            {"seq": 7, "at": at, "type": "status", "status": "succeeded"},
        ],
    )
    finish(api, job_id)
    # When its events are read after seq 2
    body = api.job_events(job_id, after="2").json
    # Then they are 3..7 in order, and the page is done
    assert [e["seq"] for e in body["items"]] == [3, 4, 5, 6, 7]
    assert body["items"][0] == {
        "seq": 3,
        "at": "2026-11-30T00:00:00Z",
        "type": "tool_use",
        "tool": "Bash",
        "input": '{"command":"ls"}',
    }
    assert body["done"] is True and body["next_cursor"] == "7"
    # And after the last one: nothing more, done, no Retry-After
    last = api.job_events(job_id, after="7")
    assert last.json == {"items": [], "next_cursor": "7", "done": True}
    assert "Retry-After" not in last.headers


def test_a_job_cancelled_while_queued_ends_with_cancelled(api: Api) -> None:
    # Given a job cancelled before any worker saw it
    job_id = submitted(api)
    assert api.cancel_job(job_id).status == 202
    # Then its events are queued then cancelled, done
    body = api.job_events(job_id, wait="5").json
    assert [e["status"] for e in body["items"]] == ["queued", "cancelled"]
    assert body["done"] is True
    assert api.container.job_repository.get(job_id).status is JobStatus.CANCELLED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "after",
    [
        "abc",
        "-1",
        "1.5",
        "1e9",
        "9999999",
        "",
        " ",
        "0x10",
        "\uff11\uff12",
        "1;DROP",
        "%00",
        "9" * 5000,
    ],
)
def test_a_hostile_cursor_is_a_422_problem(api: Api, after: str) -> None:
    # Given a job
    job_id = submitted(api)
    # When its events are asked for after a cursor this API never returned
    answer = api.job_events(job_id, after=after)
    # Then the answer is a 422 problem naming the parameter, never a 5xx
    body = answer.is_problem(422)
    assert body["errors"][0]["loc"] == ["query", "after"]


@pytest.mark.parametrize("wait", ["21", "-1", "x"])
def test_an_invalid_wait_is_a_422_problem(api: Api, wait: str) -> None:
    job_id = submitted(api)
    assert api.job_events(job_id, wait=wait).is_problem(422)["errors"][0]["loc"] == [
        "query",
        "wait",
    ]


def test_another_tenants_job_and_an_unknown_one_are_404(api: Api) -> None:
    # Given a job of one tenant
    job_id = submitted(api)
    # Then another tenant, and anyone asking for an unknown id, get 404
    api.job_events(job_id, tenant=OTHER_TENANT).is_problem(404)
    api.job_events("00000000-0000-4000-8000-000000000000").is_problem(404)
    api.job_events("../../etc").is_problem(404)


def test_over_1000_events_are_bounded_and_paged_through_with_cursors(api: Api) -> None:
    # Given a running job whose worker records 1,500 tool calls into the events table
    from claude_agent_sdk import AssistantMessage, ToolUseBlock

    from claude_jobs.models import Usage
    from claude_jobs.worker.progress import ProgressRecorder
    from claude_jobs.worker.scrub import Scrubber

    job_id = submitted(api)
    repo = api.container.job_repository
    job = repo.transition(Transition(job_id=job_id, to=JobStatus.RUNNING, add_attempts=1))
    progress = ProgressRecorder(
        api.container.event_store, job, Scrubber(), flush_seconds=3600
    ).open()
    for n in range(1500):
        block = ToolUseBlock(f"tu-{n}", "Bash", {"command": f"echo {n}"})
        progress.message(AssistantMessage(content=[block], model="m"))
    progress.finish("succeeded", Usage(input_tokens=3, output_tokens=2, total_cost_usd=0.1))
    finish(api, job_id)
    # When a reader pages through them from the start, cursor by cursor
    seen: list[dict[str, object]] = []
    cursor = "0"
    pages = 0
    while True:
        body = api.job_events(job_id, after=cursor).json
        pages += 1
        assert len(body["items"]) <= 200
        seen += body["items"]
        cursor = body["next_cursor"]
        if body["done"]:
            break
        assert pages < 20
    # Then it saw at most 1,000 events, each seq once and in order, ending with the ending
    assert len(seen) <= 1000 and pages >= 5
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert [e["type"] for e in seen[-2:]] == ["usage", "status"]
    assert seen[-1]["status"] == "succeeded"
