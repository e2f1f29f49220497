"""Error mapping: every error becomes one RFC 9457 problem, decided in one place."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from claude_jobs.api.problems import (
    PROBLEM_CONTENT_TYPE,
    TYPE_PREFIX,
    problem,
    problem_for,
    render,
)
from claude_jobs.errors import (
    ClaudeJobsError,
    DispatchError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyReplayError,
    JobNotFoundError,
    PayloadTooLargeError,
    RequestValidationError,
    TenantLimitError,
    TransitionConflictError,
    UnauthorizedError,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (UnauthorizedError(), 401, "unauthorized"),
        (JobNotFoundError("No job x."), 404, "job_not_found"),
        (IdempotencyConflictError(), 409, "idempotency_conflict"),
        (IdempotencyReplayError("j", "h"), 409, "idempotency_replay"),
        (TransitionConflictError(), 409, "transition_conflict"),
        (PayloadTooLargeError(), 413, "payload_too_large"),
        (RequestValidationError("bad"), 422, "validation_error"),
        (DispatchError("queue down"), 503, "dispatch_failed"),
    ],
)
def test_domain_errors_map_to_their_status(error: ClaudeJobsError, status: int, code: str) -> None:
    prob = problem_for(error)
    assert (prob.status, prob.code) == (status, code)
    assert prob.type == TYPE_PREFIX + code
    assert prob.detail == error.detail


def test_a_subclass_inherits_its_bases_status() -> None:
    class GoneError(JobNotFoundError):
        code = "gone"

    assert problem_for(GoneError()).status == 404


def test_validation_errors_carry_each_field() -> None:
    error = RequestValidationError(
        "bad", [FieldError(("body", "max_turns"), "too big"), FieldError(("body",), "x")]
    )
    status, headers, body = render(problem_for(error), "req-1", "/v1/jobs")
    assert status == 422
    assert headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert json.loads(body) == {
        "type": TYPE_PREFIX + "validation_error",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "bad",
        "instance": "/v1/jobs",
        "request_id": "req-1",
        "errors": [{"loc": ["body", "max_turns"], "msg": "too big"}, {"loc": ["body"], "msg": "x"}],
    }


@pytest.mark.parametrize(
    "code",
    ["ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"],
)
def test_aws_throttling_is_429_with_retry_after(code: str) -> None:
    error = ClientError({"Error": {"Code": code, "Message": "slow down"}}, "PutItem")
    prob = problem_for(error)
    assert prob.status == 429
    assert int(prob.headers["Retry-After"]) >= 1


def test_an_item_too_large_for_dynamodb_is_413() -> None:
    error = ClientError(
        {
            "Error": {
                "Code": "ValidationException",
                "Message": "Item size has exceeded the maximum allowed size",
            }
        },
        "TransactWriteItems",
    )
    assert problem_for(error).status == 413
    other = ClientError({"Error": {"Code": "ValidationException", "Message": "bad key"}}, "Query")
    assert problem_for(other).status == 500


def test_a_429_problem_can_be_rendered_for_any_layer() -> None:
    status, headers, body = render(problem(429, "Too many requests."), "r")
    assert status == 429 and headers["Retry-After"] == "1"
    assert json.loads(body)["title"] == "Too Many Requests"


def test_unexpected_errors_are_500_and_reveal_nothing() -> None:
    secret = "sk-ant-test-leaked-in-an-exception"
    for error in (
        RuntimeError(secret),
        ClientError({"Error": {"Code": "AccessDenied", "Message": secret}}, "GetItem"),
    ):
        prob = problem_for(error)
        assert prob.status == 500
        assert secret not in render(prob, "r")[2]


def test_401_tells_the_scheme_and_503_when_to_retry() -> None:
    assert problem_for(UnauthorizedError()).headers["WWW-Authenticate"].startswith("Bearer")
    assert problem_for(DispatchError()).headers["Retry-After"] == "1"
    assert "instance" not in json.loads(render(problem_for(DispatchError()), "r")[2])


def test_a_tenant_over_its_pending_cap_is_told_when_to_come_back() -> None:
    # Given the tenant-limit error of a submission, with the service's time to come back
    error = TenantLimitError("100 jobs pending", retry_after_seconds=10)
    # When it is mapped
    status, headers, body = render(problem_for(error), "req-1", "/v1/jobs")
    # Then it is a 429 tenant_limit problem that says when to retry
    assert status == 429
    assert headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    assert headers["Retry-After"] == "10"
    parsed = json.loads(body)
    assert parsed["type"] == TYPE_PREFIX + "tenant_limit" and parsed["status"] == 429
    assert parsed["detail"] == "100 jobs pending"
