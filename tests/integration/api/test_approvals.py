"""POST /v1/jobs/{job_id}/approvals/{approval_id} and GET /v1/approvals through the real
handlers, on moto (the job put into `awaiting_approval` through the repository)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from claude_jobs.clock import utcnow
from claude_jobs.models import JobStatus
from claude_jobs_tools.provision import Provisioned
from tests.support.approvals import make_wait

from .conftest import OTHER_TENANT, TENANT, Api

PROMPT = {"prompt": "Push the fix."}


def drain(provisioned: Provisioned) -> list[dict[str, Any]]:
    """Every message now on the jobs queue (deleted as read)."""
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        response = sqs.receive_message(
            QueueUrl=provisioned.settings.jobs_queue_url, MaxNumberOfMessages=10
        )
        messages = response.get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(
                QueueUrl=provisioned.settings.jobs_queue_url, ReceiptHandle=m["ReceiptHandle"]
            )


def waiting_job(api: Api, tenant: str = TENANT, **wait: Any) -> tuple[str, str]:
    answer = api.submit_job(PROMPT, tenant=tenant)
    assert answer.status == 202, answer.text
    job_id: str = answer.json["job_id"]
    job = make_wait(api.container.job_repository, job_id, **wait)
    assert job.pending_approval is not None
    return job_id, job.pending_approval.approval_id


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_allow_queues_the_job_again_with_the_decision(api: Api, provisioned: Provisioned) -> None:
    # Given a job whose call has waited 30 minutes for a decision
    job_id, approval_id = waiting_job(api, waited=timedelta(minutes=30))
    before = api.container.job_repository.get(job_id)
    assert before is not None and before.deadline_at is not None
    drain(provisioned)
    # When its owner allows the call
    started = utcnow()
    answer = api.decide(job_id, approval_id, {"decision": "allow"})
    # Then the answer is the job, queued again, with nothing pending
    assert answer.status == 200, answer.text
    body = answer.json
    assert body["status"] == "queued" and "pending_approval" not in body
    assert answer.headers["ETag"].startswith('"')
    # And the job carries the decision for the worker, continuing its run
    job = api.container.job_repository.get(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.pending_approval is None and job.continuing
    decision = job.approval_decision
    assert decision is not None
    assert (decision.approval_id, decision.tool_use_id, decision.tool) == (
        approval_id,
        "toolu_01ABC",
        "Bash",
    )
    assert decision.decision == "allow" and decision.message is None
    # And its deadline moved by the time it waited (30 minutes, give or take the test's run)
    assert job.deadline_at is not None
    moved = (job.deadline_at - before.deadline_at).total_seconds()
    assert 30 * 60 <= moved <= 30 * 60 + (utcnow() - started).total_seconds() + 1
    # And its message is on the queue, as submit sends it
    assert drain(provisioned) == [{"job_id": job_id, "tenant_id": TENANT}]
    # And the reconciler's note says it is due now (a lost send is re-driven after grace)
    item = boto3.client("dynamodb").get_item(
        TableName=provisioned.settings.jobs_table, Key={"job_id": {"S": job_id}}
    )["Item"]
    assert abs(int(item["message_due"]["N"]) - started.timestamp()) <= 5
    # And it left the approval index
    assert "approval_tenant" not in item and "approval_key" not in item


def test_deny_with_a_message_is_recorded(api: Api) -> None:
    job_id, approval_id = waiting_job(api)
    message = "Do not push to main; open a pull request."
    answer = api.decide(job_id, approval_id, {"decision": "deny", "message": message})
    assert answer.status == 200, answer.text
    job = api.container.job_repository.get(job_id)
    assert job is not None and job.approval_decision is not None
    assert job.approval_decision.decision == "deny"
    assert job.approval_decision.message == message


def test_another_tenants_job_is_404_and_unchanged(api: Api) -> None:
    job_id, approval_id = waiting_job(api)
    api.decide(job_id, approval_id, {"decision": "allow"}, tenant=OTHER_TENANT).is_problem(404)
    assert api.get_job(job_id).json["status"] == "awaiting_approval"


def test_a_second_decision_is_409(api: Api) -> None:
    job_id, approval_id = waiting_job(api)
    assert api.decide(job_id, approval_id, {"decision": "allow"}).status == 200
    problem = api.decide(job_id, approval_id, {"decision": "deny"}).is_problem(409)
    assert problem["type"].endswith("approval_conflict")
    assert "queued" in problem["detail"]
    job = api.container.job_repository.get(job_id)
    assert job is not None and job.approval_decision is not None
    assert job.approval_decision.decision == "allow"  # the first one stands


def test_a_stale_approval_id_is_409(api: Api) -> None:
    job_id, approval_id = waiting_job(api)
    problem = api.decide(job_id, "apr-older", {"decision": "allow"}).is_problem(409)
    assert approval_id in problem["detail"]
    assert api.get_job(job_id).json["status"] == "awaiting_approval"


def test_an_expired_approval_is_409(api: Api) -> None:
    job_id, approval_id = waiting_job(api, expires_in=timedelta(seconds=-1))
    problem = api.decide(job_id, approval_id, {"decision": "allow"}).is_problem(409)
    assert "expired" in problem["detail"]


def test_a_job_that_never_waited_is_409(api: Api) -> None:
    job_id = api.submit_job(PROMPT).json["job_id"]
    problem = api.decide(job_id, "apr-x", {"decision": "allow"}).is_problem(409)
    assert "queued" in problem["detail"]


def test_an_unknown_job_is_404(api: Api) -> None:
    api.decide("00000000-0000-4000-8000-000000000000", "apr-x", {"decision": "allow"}).is_problem(
        404
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"decision": "maybe"}, ["body", "decision"]),
        ({}, ["body", "decision"]),
        ({"decision": "allow", "extra": 1}, ["body", "extra"]),
        ({"decision": "deny", "message": "x" * 4001}, ["body", "message"]),
        ({"decision": "allow", "answers": {"Which branch?": "main"}}, ["body", "answers"]),
    ],
)
def test_bad_bodies_are_422(api: Api, body: dict[str, Any], loc: list[str]) -> None:
    job_id, approval_id = waiting_job(api)
    problem = api.decide(job_id, approval_id, body).is_problem(422)
    assert loc in [e["loc"] for e in problem["errors"]]
    assert api.get_job(job_id).json["status"] == "awaiting_approval"


def test_a_question_needs_answers_to_be_allowed(api: Api) -> None:
    job_id, approval_id = waiting_job(api, tool="AskUserQuestion")
    problem = api.decide(job_id, approval_id, {"decision": "allow"}).is_problem(422)
    assert ["body", "answers"] in [e["loc"] for e in problem["errors"]]
    answers = {"Which branch should I push to?": "feature/x"}
    answer = api.decide(job_id, approval_id, {"decision": "allow", "answers": answers})
    assert answer.status == 200, answer.text
    job = api.container.job_repository.get(job_id)
    assert job is not None and job.approval_decision is not None
    assert job.approval_decision.answers == answers


def test_cancel_while_waiting_ends_the_job_at_once(api: Api) -> None:
    # Given a waiting job
    job_id, approval_id = waiting_job(api)
    usage = api.container.job_repository.tenant_usage(TENANT)
    # When it is cancelled
    answer = api.cancel_job(job_id)
    # Then it is cancelled now, its slot freed, and nothing waits any more
    assert answer.status == 202
    body = answer.json
    assert body["status"] == "cancelled" and body["finished_at"]
    assert "pending_approval" not in body
    after = api.container.job_repository.tenant_usage(TENANT)
    assert (after.pending, after.running) == (usage.pending - 1, usage.running)
    assert api.list_approvals().json["items"] == []
    # And a decision arriving after it is a 409
    api.decide(job_id, approval_id, {"decision": "allow"}).is_problem(409)


def test_a_decision_losing_a_race_with_cancel_is_409(api: Api) -> None:
    # Given a waiting job that is cancelled between the decision's read and its write
    job_id, approval_id = waiting_job(api)
    repo = api.container.job_repository
    original = repo.get

    def read_then_cancel(read_id: str) -> Any:
        job = original(read_id)
        repo.get = original  # type: ignore[method-assign]
        api.container.job_service.cancel(TENANT, job_id)
        return job

    repo.get = read_then_cancel  # type: ignore[method-assign,assignment]
    try:
        answer = api.decide(job_id, approval_id, {"decision": "allow"})
    finally:
        repo.get = original  # type: ignore[method-assign]
    # Then the decision is refused, and the job stays cancelled
    assert "cancelled" in answer.is_problem(409)["detail"]
    assert api.get_job(job_id).json["status"] == "cancelled"


def test_get_shows_the_pending_approval(api: Api) -> None:
    job_id, approval_id = waiting_job(api)
    body = api.get_job(job_id).json
    assert body["status"] == "awaiting_approval"
    pending = body["pending_approval"]
    assert pending["approval_id"] == approval_id and pending["tool"] == "Bash"
    assert pending["rule"] == "Bash(git push:*)"
    assert "tool_use_id" not in pending


def test_the_list_shows_only_the_tenants_waiting_jobs_oldest_first(api: Api) -> None:
    # Given three waiting jobs of the tenant (asked 30, 20 and 10 minutes ago), one of
    # another tenant, and a queued job of the tenant
    ids = [waiting_job(api, waited=timedelta(minutes=m))[0] for m in (10, 30, 20)]
    waiting_job(api, tenant=OTHER_TENANT)
    api.submit_job(PROMPT)
    # When the tenant lists its approvals, two at a time
    first = api.list_approvals(limit="2")
    assert first.status == 200, first.text
    page = first.json
    second = api.list_approvals(limit="2", next_token=page["next_token"]).json
    # Then it sees its three waiting jobs, oldest request first, and nothing else
    items = page["items"] + second["items"]
    assert [i["job_id"] for i in items] == [ids[1], ids[2], ids[0]]
    assert all(i["pending_approval"]["tool"] == "Bash" for i in items)
    assert "tool_use_id" not in items[0]["pending_approval"]
    assert "next_token" not in second
    # And the other tenant sees only its own
    assert len(api.list_approvals(tenant=OTHER_TENANT).json["items"]) == 1


def test_the_list_refuses_another_tenants_token_and_a_job_list_token(api: Api) -> None:
    for _ in range(2):
        waiting_job(api)
        api.submit_job(PROMPT)
    token = api.list_approvals(limit="1").json["next_token"]
    api.list_approvals(tenant=OTHER_TENANT, next_token=token).is_problem(422)
    jobs_token = api.list_jobs(limit="1").json["next_token"]
    api.list_approvals(next_token=jobs_token).is_problem(422)
    api.list_approvals(limit="0").is_problem(422)


def test_a_long_poll_answers_when_the_job_starts_waiting(api: Api) -> None:
    # Given a running job, and a poll that sees it start waiting on its second read
    answer = api.submit_job(PROMPT)
    job_id = answer.json["job_id"]
    repo = api.container.job_repository
    original = repo.control
    calls = {"n": 0}

    def control_then_wait(read_id: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            repo.control = original  # type: ignore[method-assign]
            make_wait(repo, job_id)
        return original(read_id)

    repo.control = control_then_wait  # type: ignore[method-assign,assignment]
    try:
        started = utcnow()
        polled = api.get_job(job_id, query={"wait": "20"})
    finally:
        repo.control = original  # type: ignore[method-assign]
    # Then the long poll answers at once with the waiting job, not after 20 s
    assert polled.json["status"] == "awaiting_approval"
    assert (utcnow() - started).total_seconds() < 10
