"""botocore's user-agent parts, cleaned once (`claude_jobs_tools.local.user_agent`).

The header a client sends must be the very string botocore made before, and every part must be
cleaned as botocore's own function cleans it; the kept parts must be what later calls use.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore import useragent

from claude_jobs_tools.local import user_agent


def _header_of_a_call(session_name: str) -> str:
    """The User-Agent of a real client's call (answered before it leaves the process)."""
    seen: list[str] = []
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client: Any = session.client("sqs", endpoint_url="http://127.0.0.1:9")

    def answer(request: Any, **_: Any) -> Any:
        value = request.headers["User-Agent"]
        seen.append(value.decode() if isinstance(value, bytes) else value)
        raise RuntimeError(session_name)

    client.meta.events.register("before-send", answer)
    with pytest.raises(RuntimeError):
        client.list_queues()
    return seen[0]


@pytest.mark.parametrize(
    ("part", "allow_hash"),
    [
        ("Boto3", False),
        ("1.40.0", False),
        ("python#3.11", False),
        ("python#3.11", True),
        ("ü spaces/and:colons", True),
        ("", False),
        ("A!$%&'*+-.^_`|~,z", False),
    ],
)
def test_a_part_is_cleaned_as_botocore_cleans_it(part: str, allow_hash: bool) -> None:
    # Given the parts kept
    user_agent.install()
    kept: Any = useragent.sanitize_user_agent_string_component
    # Then each is cleaned as botocore's function cleans it, the second time from the cache
    assert kept(part, allow_hash) == kept.original(part, allow_hash)
    before = kept.cache_info().hits
    assert kept(part, allow_hash) == kept.original(part, allow_hash)
    assert kept.cache_info().hits == before + 1


def test_a_clients_header_is_the_same_string_and_made_from_kept_parts() -> None:
    # Given botocore's header before the install (or its original function after one)
    kept: Any = useragent.sanitize_user_agent_string_component
    if getattr(kept, "kept", False):
        useragent.sanitize_user_agent_string_component = kept.original
    try:
        plain = _header_of_a_call("plain")
        # When the parts are kept
        user_agent.install()
        user_agent.install()  # (idempotent: one cache)
        first = _header_of_a_call("first")
        hits = useragent.sanitize_user_agent_string_component.cache_info().hits  # type: ignore[attr-defined]
        second = _header_of_a_call("second")
        # Then the header is the same string, the second call's made from kept parts
        assert plain == first == second
        assert "Boto3/" in plain
        after: Any = useragent.sanitize_user_agent_string_component
        assert after.cache_info().hits >= hits + 10
    finally:
        user_agent.install()
