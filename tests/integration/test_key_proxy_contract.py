"""One contract for the worker's `KeyProxy` port: the loopback proxy that holds the real key and
the fake the unit tests use must hand out, bind and end tokens alike.

What the real proxy does with a call (forwarding, metering, refusing) is tested in
tests/worker (test_proxy.py, test_meter_reservations.py); here: the token life cycle only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from claude_jobs.worker.ports import KeyProxy
from tests.fakes import FakeProxy

REAL_KEY = "sk-ant-contract-not-a-real-key"


@pytest.fixture(params=["loopback", "fake"])
def proxy(request: pytest.FixtureRequest) -> Iterator[KeyProxy]:
    if request.param == "fake":
        fake = FakeProxy()
        fake.start()
        yield fake
        fake.close()
        return
    from claude_jobs.worker.proxy import AnthropicDialect, KeyInjectingProxy

    # No call is made: the upstream is never reached.
    real = KeyInjectingProxy(
        "http://127.0.0.1:9", dialect=AnthropicDialect(lambda: REAL_KEY, ["claude-test"])
    )
    real.start()
    yield real
    real.close()


def test_a_started_proxy_is_alive_on_the_loopback(proxy: KeyProxy) -> None:
    assert proxy.alive
    assert proxy.url.startswith("http://127.0.0.1:")


def test_closing_ends_it(proxy: KeyProxy) -> None:
    proxy.close()
    assert not proxy.alive


def test_each_issue_gives_a_new_token_that_is_not_the_key(proxy: KeyProxy) -> None:
    # When tokens are issued for two jobs and twice for one
    tokens = [
        proxy.issue("job-1", limit_usd=1.0, models=["claude-test"]),
        proxy.issue("job-2"),
        proxy.issue("job-1"),
    ]
    # Then each is new, and none holds the key
    assert len(set(tokens)) == 3
    assert all(t and REAL_KEY not in t for t in tokens)


def test_a_token_issued_ahead_is_bound_to_a_job_later(proxy: KeyProxy) -> None:
    # Given a token bound to no job that may spend nothing (a warm CLI's)
    token = proxy.issue("", limit_usd=0.0)
    # When a job adopts it, then that succeeds (no error)
    proxy.assign(token, "job-1", limit_usd=0.5, models=["claude-test"])


def test_only_a_live_token_can_be_bound(proxy: KeyProxy) -> None:
    # Given a token that was revoked, and one never issued
    token = proxy.issue("job-1")
    proxy.revoke(token)
    # Then neither can be bound to a job
    for dead in (token, "cj-job-never-issued"):
        with pytest.raises(KeyError):
            proxy.assign(dead, "job-2")


def test_a_revoked_token_has_no_meter_and_revoking_twice_is_quiet(proxy: KeyProxy) -> None:
    token = proxy.issue("job-1", limit_usd=1.0)
    proxy.revoke(token)
    assert proxy.metered(token) is None
    proxy.revoke(token)  # no error
    proxy.revoke("cj-job-never-issued")
