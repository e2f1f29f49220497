"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.network import sockets_blocked

# Never let a test reach a real AWS account, whatever the machine has configured.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_AGENT_SDK_SKIP_VERSION_CHECK": "1",
        "POWERTOOLS_SERVICE_NAME": "claude-jobs-test",
        "POWERTOOLS_METRICS_NAMESPACE": "ClaudeJobsTest",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)


#: This test process's agent uids: its own block of 100, apart from the local stack's default
#: range. A root worker ends every process of a job's uid wherever it runs, so two worker
#: processes on one machine (pytest-xdist workers, two suites at once) must not share uids.
_UID_BLOCK = 62000 + 100 * random.SystemRandom().randrange(0, 2000)


def agent_uid_range() -> str:
    return f"{_UID_BLOCK}-{_UID_BLOCK + 99}"


@pytest.fixture
def aws() -> Iterator[None]:
    """Every AWS call inside the test goes to moto's in-memory emulation."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def provisioned(aws: None):  # type: ignore[no-untyped-def]
    """The stateful resources, created from the same definitions the CDK app uses."""
    from claude_jobs_tools.provision import provision

    return provision("test", secret_value="sk-ant-test-not-a-real-key")


# ---------------------------------------------------------------- how each test may run

TESTS = Path(__file__).parent
#: Pure tests (`make unit`): any bind or connect of an IP socket fails them.
SOCKETLESS = ("unit", "contract")
#: Run after the parallel run (`make test`), on their own workers: what starts whole stacks
#: (each with its workers and CLIs, and the reliability ledger's measurements) and the worker
#: image's layout. Among themselves they run on SERIAL_WORKERS workers (`serial_group_of`).
SERIAL = (
    "e2e/",
    "worker/test_image.py",
    "worker/test_image_segments.py",
)
#: Fixtures of the worker image's layout (tests/worker/test_image.py): one non-root runtime
#: user for worker and agent, whose processes a finished job's cleanup ends, so two such tests
#: at once would end each other's. A test that uses one runs alone, wherever it is.
SERIAL_FIXTURES = frozenset({"task_root", "image_site", "runtime_python"})
#: e2e modules whose every test starts its own stack (none shared within the module): their
#: tests may run on any serial worker, beside each other.
STANDALONE = ("e2e/test_reliability_ledger.py", "e2e/test_fresh_stack.py")
#: One xdist worker each (`--dist loadgroup`): a session fixture expensive to build twice.
GROUPS = {"infra/": "synth", "artifacts/": "artifacts"}


#: Serial work started first (`serial_rank`): the image layout's tests, one after another on one
#: worker, mostly wait (segments of a few seconds, warm reuse), so they run beside the stacks
#: rather than after them; then the longest stack test. Begun last, each was the serial part's
#: tail, with the cores idle.
FIRST = ("runtime-user", "e2e/test_fresh_stack.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ranks: dict[str, int] = {}
    for item in items:
        where = item.path.relative_to(TESTS).as_posix() if item.path.is_relative_to(TESTS) else ""
        if where.split("/", 1)[0] in SOCKETLESS:
            item.add_marker(pytest.mark.socketless)
        fixtures = set(getattr(item, "fixturenames", ()))
        if where.startswith(SERIAL) or fixtures & SERIAL_FIXTURES:
            item.add_marker(pytest.mark.serial)
            serial_group = serial_group_of(where, fixtures)
            if serial_group:
                item.add_marker(pytest.mark.xdist_group(serial_group))
            ranks[item.nodeid] = serial_rank(where, serial_group)
        for prefix, group in GROUPS.items():
            if where.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: ranks.get(item.nodeid, len(FIRST)))  # stable: else as collected


def serial_rank(where: str, serial_group: str | None) -> int:
    """Where a serial test's work starts in the serial part: FIRST's order, then the rest."""
    for rank, first in enumerate(FIRST):
        if serial_group == first or where.startswith(first):
            return rank
    return len(FIRST)


def serial_group_of(where: str, fixtures: set[str]) -> str | None:
    """The xdist worker a serial test shares (`--dist loadgroup`), or None (it may run beside
    any): the image layout's tests one at a time (one runtime user: each one's cleanup ends
    that user's processes); an e2e module's tests together (its stack starts once)."""
    if fixtures & SERIAL_FIXTURES:
        return "runtime-user"
    if where.startswith(STANDALONE):
        return None
    if where.startswith("e2e/"):
        # The session stack's tests together; any other module's own stack started once.
        return "e2e-stack" if "stack" in fixtures else f"e2e:{where.split('::', 1)[0]}"
    return None


@pytest.fixture(autouse=True)
def _sockets_blocked_when_socketless(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("socketless") is None:
        yield
        return
    with sockets_blocked():
        yield
