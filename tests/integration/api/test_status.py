"""GET /v1/jobs/{job_id}, GET /v1/jobs and GET /v1/health through the status function's handler."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from claude_jobs import long_poll
from claude_jobs.job_service import JobService, long_poll_reads
from claude_jobs.models import JobStatus
from claude_jobs.ports import Transition
from claude_jobs.wiring import Container
from tests.events import load_event

from .conftest import OTHER_TENANT, TENANT, Api, with_query

PROMPT = {"prompt": "hello"}


def submitted(api: Api, tenant: str = TENANT, **body: Any) -> str:
    answer = api.submit_job({**PROMPT, **body}, tenant=tenant)
    assert answer.status == 202, answer.text
    job_id: str = answer.json["job_id"]
    return job_id


def finish(api: Api, job_id: str, text: str = "done") -> None:
    repo = api.container.job_repository
    repo.transition(Transition(job_id=job_id, to=JobStatus.RUNNING, add_attempts=1))
    repo.transition(
        Transition(
            job_id=job_id,
            to=JobStatus.SUCCEEDED,
            set_fields={
                "result": {"text": text, "is_error": False},
                "usage": {"input_tokens": 10, "output_tokens": 5, "total_cost_usd": 0.01},
                "finished_at": "2026-11-22T12:00:05+00:00",
            },
        )
    )


def test_get_a_queued_job_carries_etag_and_retry_after(api: Api) -> None:
    # Given a queued job
    job_id = submitted(api, metadata={"team": "ops"}, max_turns=3)
    # When its owner reads it
    answer = api.get_job(job_id)
    # Then it is the job view, with an ETag, and a Retry-After since it is not finished
    assert answer.status == 200
    body = answer.json
    assert body["job_id"] == job_id and body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["metadata"] == {"team": "ops"}
    assert body["request"]["max_turns"] == 3
    assert "prompt" not in body["request"]
    assert body["links"] == {"self": f"/v1/jobs/{job_id}"}
    assert answer.headers["ETag"].startswith('"')
    assert answer.headers["Retry-After"] == "2"


def test_a_finished_job_has_result_and_usage_and_no_retry_after(api: Api) -> None:
    job_id = submitted(api)
    finish(api, job_id, "forty-two")
    answer = api.get_job(job_id)
    body = answer.json
    assert body["status"] == "succeeded"
    assert body["result"] == {"text": "forty-two", "is_error": False}
    assert body["usage"]["output_tokens"] == 5
    assert body["attempts"] == 1
    assert "Retry-After" not in answer.headers


def test_if_none_match_answers_304_until_the_job_changes(api: Api) -> None:
    # Given a job read once
    job_id = submitted(api)
    tag = api.get_job(job_id).headers["ETag"]
    # When it is read again with its ETag
    unchanged = api.get_job(job_id, If_None_Match=tag)
    # Then the answer is 304 without a body, with the same ETag
    assert unchanged.status == 304
    assert unchanged.text is None
    assert unchanged.headers["ETag"] == tag
    # And once the job changes, the same ETag gets the new job
    finish(api, job_id)
    changed = api.get_job(job_id, If_None_Match=f'W/{tag}, "other"')
    assert changed.status == 200
    assert changed.headers["ETag"] != tag
    assert changed.json["status"] == "succeeded"


def test_another_tenants_job_is_404(api: Api) -> None:
    job_id = submitted(api)
    problem = api.get_job(job_id, tenant=OTHER_TENANT).is_problem(404)
    assert problem["instance"] == f"/v1/jobs/{job_id}"


@pytest.mark.parametrize("job_id", ["00000000-0000-4000-8000-000000000000", "%00", "a" * 2048])
def test_unknown_job_is_404(api: Api, job_id: str) -> None:
    api.get_job(job_id).is_problem(404)


def test_without_authorizer_context_is_401(api: Api) -> None:
    job_id = submitted(api)
    api.get_job(job_id, tenant=None).is_problem(401)
    api.list_jobs(tenant=None).is_problem(401)


@pytest.mark.parametrize("wait", ["21", "-1", "abc", "1.5", "", "99999999999"])
def test_wait_out_of_range_is_422(api: Api, wait: str) -> None:
    job_id = submitted(api)
    problem = api.get_job(job_id, query={"wait": wait}).is_problem(422)
    assert problem["errors"][0]["loc"] == ["query", "wait"]


def test_long_poll_answers_as_soon_as_the_job_is_terminal(api: Api, container: Container) -> None:
    # Given a queued job, and a status function whose service polls with a recording sleep
    # that lets the worker finish the job during the first pause
    job_id = submitted(api)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            finish(api, job_id, "finished while you waited")

    container.job_service = JobService(
        container.job_repository,
        container.job_service.context.queue,
        container.settings,
        sleep=sleep,
    )
    # When the owner long-polls for up to 20 s
    answer = api.get_job(job_id, query={"wait": "20"})
    # Then the answer is the finished job, right after the poll that saw it finish
    assert answer.status == 200
    assert answer.json["status"] == "succeeded"
    assert answer.json["result"]["text"] == "finished while you waited"
    assert len(pauses) == 1
    assert "Retry-After" not in answer.headers


class ReadCountingRepository:
    """The real repository, counting full job reads and control reads (a recording fake)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.full_reads = 0
        self.control_reads = 0

    def get(self, job_id: str) -> Any:
        self.full_reads += 1
        return self._inner.get(job_id)

    def control(self, job_id: str) -> Any:
        self.control_reads += 1
        return self._inner.control(job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _service_at(container: Container, repo: Any, job_id: str, quiet: float, sleep: Any) -> None:
    """The status function's service reading through `repo`, with a clock that says the job
    has been quiet for `quiet` seconds (and not a moment longer) when the wait begins."""
    job = container.job_repository.get(job_id)
    assert job is not None
    now = (job.started_at or job.created_at) + timedelta(seconds=quiet)
    container.job_service = JobService(
        repo,
        container.job_service.context.queue,
        container.settings,
        clock=lambda: now,
        sleep=sleep,
    )


def test_long_poll_of_a_job_that_just_changed_reads_fast_then_backs_off(
    api: Api, container: Container
) -> None:
    # Given a job submitted a moment ago that a worker finishes after the long-poll's eighth
    # pause, and a status service that reads through a counting repository
    job_id = submitted(api)
    repo = ReadCountingRepository(container.job_repository)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 8:
            finish(api, job_id, "seen quickly")

    _service_at(container, repo, job_id, 0.0, sleep)
    # When the owner long-polls for up to 20 s
    answer = api.get_job(job_id, query={"wait": "20"})
    # Then the answer is the finished job, read in full after the poll that saw it end
    assert answer.json["status"] == "succeeded"
    assert answer.json["result"]["text"] == "seen quickly"
    # and the first pauses were 100 ms (a job about to end is seen soon), then longer, each
    # pause followed by one cheap control read, the job read in full only twice
    assert len(pauses) == 8
    assert pauses[:3] == [long_poll.MIN_PAUSE] * 3
    assert pauses == sorted(pauses) and pauses[-1] > pauses[0]
    assert sum(pauses) < 1.5
    assert repo.control_reads == 8
    assert repo.full_reads == 2


def test_long_poll_of_a_job_quiet_for_a_minute_reads_it_every_few_seconds(
    api: Api, container: Container
) -> None:
    # Given a job queued a minute ago (its caller asks again after a 20 s wait), finished by a
    # worker during the poll's third pause
    job_id = submitted(api)
    repo = ReadCountingRepository(container.job_repository)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            finish(api, job_id)

    _service_at(container, repo, job_id, 60.0, sleep)
    # When the owner long-polls again
    answer = api.get_job(job_id, query={"wait": "20"})
    # Then every pause was the longest one: the ramp is not paid again by a new request
    assert answer.json["status"] == "succeeded"
    assert pauses == [long_poll.MAX_PAUSE] * 3
    assert repo.control_reads == 3


def test_long_poll_reads_fast_again_once_it_sees_the_job_start(
    api: Api, container: Container
) -> None:
    # Given a job queued for a minute that a worker starts during the poll's first pause and
    # finishes during its fourth
    job_id = submitted(api)
    pauses: list[float] = []
    repo = container.job_repository

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            repo.transition(Transition(job_id=job_id, to=JobStatus.RUNNING, add_attempts=1))
        if len(pauses) == 4:
            repo.transition(
                Transition(
                    job_id=job_id,
                    to=JobStatus.SUCCEEDED,
                    set_fields={"result": {"text": "x", "is_error": False}},
                )
            )

    _service_at(container, repo, job_id, 60.0, sleep)
    # When its owner long-polls
    answer = api.get_job(job_id, query={"wait": "20"})
    # Then the poll slowed for the quiet job, and went fast again after seeing it start
    assert answer.json["status"] == "succeeded"
    assert pauses[0] == long_poll.MAX_PAUSE
    assert pauses[1:] == [long_poll.MIN_PAUSE] * 3


def test_long_poll_reads_per_waiting_minute_are_bounded() -> None:
    # Given the long-poll's schedule, When a caller waits a minute for a job that does not end
    # (asking again with ?wait=20 each time), Then it reads at most 60 times in that minute,
    # on either route, and several times in the first second (short jobs end then)
    assert long_poll.reads_per_waiting_minute() <= 60
    assert long_poll.reads_per_waiting_minute(events=True) <= 60
    assert long_poll_reads(60) <= 60
    assert long_poll_reads(0) == 0
    assert 5 <= long_poll_reads(1) <= 20


def test_long_poll_of_a_job_that_stays_queued_answers_it_queued(api: Api) -> None:
    job_id = submitted(api)
    answer = api.get_job(job_id, query={"wait": "1"})
    assert answer.status == 200
    assert answer.json["status"] == "queued"
    assert answer.headers["Retry-After"] == "2"


def test_long_poll_of_another_tenants_job_is_404(api: Api) -> None:
    job_id = submitted(api)
    api.get_job(job_id, tenant=OTHER_TENANT, query={"wait": "5"}).is_problem(404)


# ---------------------------------------------------------------- listing


def test_list_pages_through_own_jobs_newest_first(api: Api) -> None:
    # Given five jobs of tenant-a and one of tenant-b
    ids = [submitted(api) for _ in range(5)]
    submitted(api, tenant=OTHER_TENANT)
    # When tenant-a pages through with limit=2
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        query = {"limit": "2", **({"next_token": token} if token else {})}
        answer = api.list_jobs(**query)
        assert answer.status == 200
        body = answer.json
        assert len(body["items"]) <= 2
        seen += [item["job_id"] for item in body["items"]]
        pages += 1
        token = body.get("next_token")
        if not token:
            break
    # Then it sees exactly its own jobs, newest first, as job views
    assert seen == ids[::-1]
    assert pages >= 3


def test_list_defaults_and_an_empty_tenant(api: Api) -> None:
    submitted(api)
    body = api.list_jobs().json
    assert [item["status"] for item in body["items"]] == ["queued"]
    assert "next_token" not in body
    assert api.list_jobs(tenant="nobody-here").json == {"items": []}


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ({"limit": "0"}, ["query", "limit"]),
        ({"limit": "101"}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"next_token": "garbage!!"}, ["query", "next_token"]),
        ({"next_token": "eyJ0IjoidGVuYW50LWEiLCJrIjp7ImpvYl9pZCI6MX19"}, ["query", "next_token"]),
        ({"next_token": "W10"}, ["query", "next_token"]),
    ],
)
def test_bad_list_queries_are_422(api: Api, query: dict[str, str], loc: list[str]) -> None:
    problem = api.list_jobs(**query).is_problem(422)
    assert problem["errors"][0]["loc"] == loc


def test_another_tenants_next_token_is_refused(api: Api) -> None:
    for _ in range(3):
        submitted(api, tenant=OTHER_TENANT)
    token = api.list_jobs(tenant=OTHER_TENANT, limit="1").json["next_token"]
    api.list_jobs(next_token=token).is_problem(422)


# ---------------------------------------------------------------- health and routing


def test_health_needs_no_key(api: Api) -> None:
    answer = api.call(api.status, load_event("apigw_health.json"))
    assert answer.status == 200
    assert answer.json == {"status": "ok"}


def test_unknown_route_is_a_404_problem(api: Api) -> None:
    event = with_query(load_event("apigw_health.json"))
    event["path"] = event["resource"] = "/v1/nothing"
    api.call(api.status, event).is_problem(404)


def _token(cursor: dict[str, Any], tenant: str = TENANT) -> str:
    import base64
    import json

    raw = json.dumps({"t": tenant, "k": cursor}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        {"tenant_id": TENANT, "created_key": 5, "job_id": "j"},
        {"tenant_id": TENANT, "created_key": "c", "job_id": "j" * 3000},
        {"tenant_id": TENANT, "created_key": "c", "job_id": "j", "extra": {"a": 1}},
        {"tenant_id": TENANT},
    ],
)
def test_forged_next_tokens_are_422_not_a_dynamodb_error(api: Api, cursor: dict[str, Any]) -> None:
    # Tokens are not signed: a caller can forge one for its own tenant. DynamoDB would refuse a
    # malformed start key (a 5xx), so the shape is checked first.
    api.list_jobs(next_token=_token(cursor)).is_problem(422)
