"""The fuzz pass's failure filters (`claude_jobs_tools.fuzz_hooks`): each drops only its one
known false alarm."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from claude_jobs_tools.fuzz_hooks import (
    header_whitespace_filter_failure,
    remote_urls_filter_failure,
)


def kept(code: str, headers: dict[str, Any] | None) -> bool:
    failure = SimpleNamespace(code=code)
    case = SimpleNamespace(headers=headers)
    return bool(header_whitespace_filter_failure(None, failure, case, None))


def test_a_header_valid_once_http_drops_its_leading_whitespace_is_not_a_failure() -> None:
    assert not kept("ST201", {"Idempotency-Key": "\t" + "a" * 128})
    assert not kept("ST201", {"Idempotency-Key": "  key"})


def test_every_other_accepted_invalid_request_still_counts() -> None:
    assert kept("ST201", {"Idempotency-Key": "a" * 129})  # too long whatever HTTP does
    assert kept("ST201", {"Idempotency-Key": "\t"})  # nothing left: invalid as delivered
    assert kept("ST201", {"Idempotency-Key": "\t" + "a" * 129})
    assert kept("ST201", {"Idempotency-Key": "valid"})  # no padding: the violation is elsewhere
    assert kept("ST201", None)
    assert kept("ST202", {"Idempotency-Key": "\t" + "a" * 128})  # another check


def kept_submit(
    code: str,
    status: int,
    locs: list[list[Any]],
    label: str = "POST /v1/jobs",
    msg: str = "must be a repository of …",
) -> bool:
    failure = SimpleNamespace(code=code)
    case = SimpleNamespace(operation=SimpleNamespace(label=label))
    body = {"errors": [{"loc": loc, "msg": msg} for loc in locs]}
    response = SimpleNamespace(status_code=status, text=json.dumps(body))
    return bool(remote_urls_filter_failure(None, failure, case, response))


def test_a_repository_or_mcp_url_off_the_deployments_bounds_is_not_a_failure() -> None:
    assert not kept_submit("ST202", 422, [["body", "repository", "url"]])
    assert not kept_submit("ST202", 422, [["body", "repository", "ref"]])
    assert not kept_submit("ST202", 422, [["body", "pull_request", "base"]])
    assert not kept_submit(
        "ST202", 422, [["body", "mcp_servers", 0, "url"], ["body", "repository", "url"]]
    )


def test_every_other_rejected_submit_still_counts() -> None:
    assert kept_submit("ST202", 422, [["body", "prompt"]])
    assert kept_submit("ST202", 422, [["body", "repository", "url"], ["body", "prompt"]])
    assert kept_submit("ST202", 422, [["body", "mcp_servers", 0, "name"]])
    assert kept_submit("ST202", 500, [["body", "repository", "url"]])
    assert kept_submit("ST202", 422, [])
    assert kept_submit("ST201", 422, [["body", "repository", "url"]])
    assert kept_submit("ST202", 422, [["body", "repository", "url"]], label="POST /v1/uploads")


def test_a_pull_request_without_a_repository_is_not_a_failure() -> None:
    needs = "Value error, pull_request needs a repository"
    assert not kept_submit("ST202", 422, [["body"]], msg=needs)
    assert kept_submit("ST202", 422, [["body"]], msg="Value error, something else")
