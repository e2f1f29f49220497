"""The fuzz pass's failure filters (`claude_jobs_tools.fuzz_hooks`): each drops only its one
known false alarm."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from claude_jobs_tools.fuzz_hooks import header_whitespace_filter_failure


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
