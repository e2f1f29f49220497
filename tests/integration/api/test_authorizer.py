"""The TOKEN authorizer handler, and the way its answer reaches the routes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from claude_jobs.observability import get_logger
from claude_jobs.wiring import Container
from claude_jobs_tools.api_gateway_events import method_arn, rest_event
from tests.events import load_event
from tests.lambda_context import lambda_context

from .conftest import Api, load_handler

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def authorizer(container: Container) -> Any:
    module = load_handler("authorizer")
    module.authorizer.container = container
    return module


def token_event(authorization: str | None) -> dict[str, Any]:
    event = load_event("authorizer_token.json")
    event["authorizationToken"] = authorization
    return event


def test_a_valid_key_gets_an_allow_policy_for_the_whole_stage(
    authorizer: Any, container: Container
) -> None:
    # Given a key of tenant-a
    key, record = container.key_service.create("tenant-a", "ci", NOW)
    # When the authorizer gets the sample TOKEN event carrying it
    policy = authorizer.lambda_handler(token_event(f"Bearer {key}"), lambda_context("authorizer"))
    # Then it allows every route of the stage, for tenant-a, with the key's id as context
    assert policy["principalId"] == "tenant-a"
    (statement,) = policy["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*/*",
    }
    assert policy["context"] == {"tenant_id": "tenant-a", "key_id": record.key_id}
    # And the scheme is case-insensitive
    assert authorizer.lambda_handler(token_event(f"bearer {key}"), lambda_context("authorizer"))[
        "principalId"
    ]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer cjk_unknown_test-key-nope",
        "Bearer " + "x" * 5000,
    ],
)
def test_missing_or_unknown_keys_are_unauthorized(
    authorizer: Any, authorization: str | None
) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.lambda_handler(token_event(authorization), lambda_context("authorizer"))


def test_revoked_and_expired_keys_are_unauthorized(authorizer: Any, container: Container) -> None:
    revoked, record = container.key_service.create("tenant-a", "old", NOW)
    container.key_service.revoke(record.key_id)
    expired, _ = container.key_service.create(
        "tenant-a", "short", datetime.now(UTC) - timedelta(days=2), expires_days=1
    )
    for key in (revoked, expired):
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            authorizer.lambda_handler(token_event(f"Bearer {key}"), lambda_context("authorizer"))


def test_a_malformed_method_arn_is_denied(authorizer: Any, container: Container) -> None:
    key, _ = container.key_service.create("tenant-a", "ci", NOW)
    event = token_event(f"Bearer {key}")
    event["methodArn"] = "not-an-arn"
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.lambda_handler(event, lambda_context("authorizer"))


def test_the_authorizers_context_is_what_the_routes_read(
    authorizer: Any, api: Api, container: Container
) -> None:
    # Given two tenants' keys, and a job of tenant-a submitted through the chain
    key_a, _ = container.key_service.create("tenant-a", "a", NOW)
    key_b, _ = container.key_service.create("tenant-b", "b", NOW)

    def request(key: str, method: str, path: str, body: str | None = None) -> Any:
        event = token_event(f"Bearer {key}")
        event["methodArn"] = method_arn(method, path)
        policy = authorizer.lambda_handler(event, lambda_context("authorizer"))
        event = rest_event(
            method,
            path,
            body=body,
            authorizer={**policy["context"], "principalId": policy["principalId"]},
        )
        return api.call(api.submit if method == "POST" else api.status, event)

    job_id = request(key_a, "POST", "/v1/jobs", '{"prompt": "hi"}').json["job_id"]
    # Then tenant-a sees it and tenant-b gets 404
    assert request(key_a, "GET", f"/v1/jobs/{job_id}").status == 200
    request(key_b, "GET", f"/v1/jobs/{job_id}").is_problem(404)
    assert request(key_b, "GET", "/v1/jobs").json == {"items": []}


class Lines(logging.Handler):
    """Every log line, formatted exactly as the function writes it."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_keys_never_reach_the_logs(authorizer: Any, api: Api, container: Container) -> None:
    # Given the functions' log output captured line by line
    logger = get_logger()
    lines = Lines(logger.registered_formatter)
    logger._logger.addHandler(lines)
    try:
        key, _ = container.key_service.create("tenant-a", "a", NOW)
        # When a good key, a bad key and failing requests go through the chain
        authorizer.lambda_handler(token_event(f"Bearer {key}"), lambda_context("authorizer"))
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            authorizer.lambda_handler(
                token_event("Bearer cjk_000000000000_test-key-wrong"), lambda_context("authorizer")
            )
        event = load_event("apigw_get_job.json")
        event["headers"]["Authorization"] = f"Bearer {key}"
        api.call(api.status, event)
        api.call(api.submit, load_event("apigw_submit_job.json"))
    finally:
        logger._logger.removeHandler(lines)
    # Then requests were logged with their request id, and no key appears anywhere
    text = "\n".join(lines.lines)
    assert "d7b0a1c2-7b61-11e6-9a41-93e8deadbeef" in text  # the status request's id
    assert key not in text
    assert "test-key-wrong" not in text and "test-key-not-real" not in text
    assert "Authorization" not in text
