"""`WorkerPorts` for a `JobProcessor` on in-memory ports: a scripted agent, a fake proxy, the
current user as the agent's identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from claude_jobs.documents import JobDocuments
from claude_jobs.ports import JobRepository
from claude_jobs.settings import Settings
from claude_jobs.worker.isolation import AgentIdentity, IdentityPool
from claude_jobs.worker.ports import AgentRunner, KeyProxy, WorkerPorts

from .agent import ScriptedRunner
from .proxy import FakeProxy


def worker_ports(
    jobs: JobRepository,
    documents: JobDocuments,
    *,
    runner: AgentRunner | None = None,
    proxy: KeyProxy | None = None,
    key: Callable[[], str] | None = lambda: "sk-ant-real-key",
    settings: Settings | None = None,
    **fields: Any,
) -> WorkerPorts:
    """Ports whose runs start at once (`min_run_seconds=1`); `fields` sets any other."""
    return WorkerPorts(
        jobs=jobs,
        documents=documents,
        runner=runner or ScriptedRunner(),
        proxy=proxy or FakeProxy(),
        key=key,
        settings=settings or Settings(),
        identities=IdentityPool(AgentIdentity()),
        **{"min_run_seconds": 1, **fields},
    )
