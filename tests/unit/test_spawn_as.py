"""How the worker starts the CLI as the agent's user (`isolation.spawn_as`); what the agent ends
up as is checked through the real CLI in `tests/worker/test_worker_cli.py` (root only)."""

from __future__ import annotations

import pytest

from claude_jobs.worker import isolation
from claude_jobs.worker.isolation import SETPRIV, AgentIdentity, spawn_as

AGENT = AgentIdentity(uid=61001, gid=61001, name="uid 61001")


def test_without_a_user_switch_the_command_runs_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert spawn_as(AGENT, ["claude", "-p"]) == (["claude", "-p"], {})
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert spawn_as(AgentIdentity(), ["claude"]) == (["claude"], {})


def test_as_root_setpriv_switches_every_id_and_drops_the_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(isolation, "_has_setpriv", lambda: True)
    argv, kwargs = spawn_as(AGENT, ["claude", "--", "-p"])
    assert argv == [
        SETPRIV,
        "--reuid=61001",
        "--regid=61001",
        "--clear-groups",
        "--",
        "claude",
        "--",
        "-p",
    ]
    assert kwargs == {}


def test_as_root_without_setpriv_python_switches_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(isolation, "_has_setpriv", lambda: False)
    assert spawn_as(AGENT, ["claude"]) == (
        ["claude"],
        {"user": 61001, "group": 61001, "extra_groups": []},
    )
