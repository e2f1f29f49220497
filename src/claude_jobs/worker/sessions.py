"""A job's conversation: its transcript loaded from the session store before the agent starts,
and saved back while and after it runs.

Only the worker touches the store. Before the run it loads the job's session (scoped to the
job's tenant: `TenantSessions`) and materialises it inside the job's sandbox, where the CLI
looks for it (`<CLAUDE_CONFIG_DIR>/projects/<cwd key>/<session>.jsonl`, subagent transcripts
beside it), owned by the agent's user; the CLI is then started with `--resume <session>`. A
session with no transcript yet (a new job, or one that never started) starts fresh under the
session's id (`--session-id`). The agent sees that one transcript and nothing else: no store,
no credentials, no other session.

While the agent runs, the SDK mirrors each transcript line the CLI writes to the store
(`--session-mirror`, flushed per turn and when the run ends). After the run `save` compares the
transcript file in the sandbox with what was loaded and mirrored, and appends whatever the
mirror missed (a run stopped between two flushes): the session is complete up to the last line
the CLI wrote.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters.session_store import TenantSessions, TranscriptStore
from ..observability import deferred_logger

if TYPE_CHECKING:
    from claude_agent_sdk.types import SessionKey, SessionStoreEntry

    from ..models import Job
    from .sandbox import Sandbox

log = deferred_logger()

#: Seconds each store call may take while a session is materialised.
LOAD_TIMEOUT_SECONDS = 60.0


class RecordingSessions(TenantSessions):
    """A tenant's view of the store that remembers the uuids of what it appended (the SDK's
    mirror), so that `save` appends only what is missing.

    `alias` (warm start): the CLI was started under a session id of its own before its job was
    known; what it writes under that id (keys and each entry's `sessionId`) is stored under the
    job's session, exactly as if the CLI had been started with it."""

    def __init__(
        self, store: TranscriptStore, tenant_id: str, alias: tuple[str, str] | None = None
    ) -> None:
        super().__init__(store, tenant_id)
        self.appended: set[str] = set()
        self.alias = alias

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if self.alias is not None and key.get("session_id") == self.alias[0]:
            started_as, session_id = self.alias
            key = {**key, "session_id": session_id}
            entries = [
                {**entry, "sessionId": session_id}  # type: ignore[typeddict-unknown-key]
                if isinstance(entry, dict) and entry.get("sessionId") == started_as
                else entry
                for entry in entries
            ]
        await super().append(key, entries)
        if not key.get("subpath"):
            self.appended.update(str(e["uuid"]) for e in entries if isinstance(e.get("uuid"), str))


@dataclass
class AgentSession:
    """The conversation a run continues (or starts)."""

    session_id: str
    #: True: a transcript was materialised and the CLI resumes it; False: a fresh start under
    #: `session_id`.
    resume: bool
    #: The tenant-scoped store the SDK mirrors the transcript to.
    store: RecordingSessions
    #: The materialised main transcript's path (where the CLI goes on writing).
    transcript: Path | None = None
    #: uuids of the entries that were loaded.
    loaded: set[str] = field(default_factory=set)


class SessionKeeper:
    def __init__(self, store: TranscriptStore) -> None:
        self._store = store

    def prepare(self, job: Job, sandbox: Sandbox) -> AgentSession | None:
        """Load the job's session into its sandbox. Store failures raise (an infrastructure
        fault: the job is retried)."""
        if job.session_id is None:
            return None
        session = AgentSession(
            session_id=job.session_id,
            resume=False,
            store=RecordingSessions(self._store, job.tenant_id),
        )
        session.transcript = transcript_path(sandbox, job.session_id)
        entries = asyncio.run(self._materialise(session, sandbox))
        session.resume = bool(entries)
        session.loaded = {str(e["uuid"]) for e in entries if isinstance(e.get("uuid"), str)}
        return session

    async def _materialise(self, session: AgentSession, sandbox: Sandbox) -> list[Any]:
        from claude_agent_sdk._internal.session_resume import _materialize_subkeys

        store = session.store
        entries = (
            await asyncio.wait_for(store.load(store.key(session.session_id)), LOAD_TIMEOUT_SECONDS)
            or []
        )
        if not entries:
            return []
        assert session.transcript is not None
        project_dir = session.transcript.parent
        project_dir.mkdir(parents=True, exist_ok=True)
        _write_jsonl(session.transcript, entries)
        await _materialize_subkeys(
            store,  # type: ignore[arg-type]
            sandbox.config_dir,
            project_dir,
            store.tenant_id,
            session.session_id,
            LOAD_TIMEOUT_SECONDS,
        )
        _give_tree(sandbox, sandbox.config_dir / "projects")
        return list(entries)

    def started_as(self, session: AgentSession, session_id: str, sandbox: Sandbox) -> AgentSession:
        """A fresh session (nothing to resume) run by a CLI started under `session_id` ahead of
        its job (warm start): what it writes is stored under the job's session."""
        if session.resume:
            raise ValueError("a resumed session cannot be run under another id")
        return AgentSession(
            session_id=session_id,
            resume=False,
            store=RecordingSessions(
                self._store, session.store.tenant_id, alias=(session_id, session.session_id)
            ),
            transcript=transcript_path(sandbox, session_id),
        )

    def unbound(self, session_id: str) -> AgentSession:
        """The session a warm CLI is started under: its own id, no tenant; nothing goes
        through this store (the job that adopts the CLI brings its own, `started_as`)."""
        return AgentSession(
            session_id=session_id, resume=False, store=RecordingSessions(_NoStore(), "")
        )

    def save(self, session: AgentSession) -> None:
        """Append to the store the transcript lines the CLI wrote that neither were loaded nor
        reached it through the mirror. Never raises: a run's outcome is recorded whatever
        happens here (the mirror has saved the session up to its last flush)."""
        try:
            missing = self._missing(session)
            if missing:
                store = session.store
                asyncio.run(store.append(store.key(session.session_id), missing))
                log.info(
                    "session %s: %s transcript line(s) saved after the run",
                    session.session_id,
                    len(missing),
                )
        except Exception as exc:
            log.warning("session %s could not be saved: %s", session.session_id, type(exc).__name__)

    def _missing(self, session: AgentSession) -> list[Any]:
        path = session.transcript
        if path is None or not path.is_file():
            return []
        known = session.loaded | session.store.appended
        missing: list[Any] = []
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(entry, dict):
                    continue
                uuid = entry.get("uuid")
                # Lines without a uuid (titles, tags) reach the store through the mirror only:
                # nothing tells whether it has them already.
                if isinstance(uuid, str) and uuid not in known:
                    missing.append(entry)
        return missing


class _NoStore:
    """A transcript store that refuses every call (a warm CLI's, before it has a job)."""

    async def append(self, key: Any, entries: Any) -> None:
        raise RuntimeError("no session store before the job is known")

    async def load(self, key: Any) -> None:
        raise RuntimeError("no session store before the job is known")

    async def list_subkeys(self, key: Any) -> list[str]:
        raise RuntimeError("no session store before the job is known")

    async def delete(self, key: Any) -> None:
        raise RuntimeError("no session store before the job is known")


def transcript_path(sandbox: Sandbox, session_id: str) -> Path:
    """Where the CLI keeps the session's transcript for a run in `sandbox`."""
    from claude_agent_sdk._internal.sessions import project_key_for_directory

    return (
        sandbox.config_dir
        / "projects"
        / project_key_for_directory(sandbox.work_dir)
        / (f"{session_id}.jsonl")
    )


def _write_jsonl(path: Path, entries: list[Any]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for entry in entries:
            if isinstance(entry, dict) and "type" in entry:
                entry = {"type": entry["type"], **entry}  # the CLI scans for `{"type":` first
            out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
    path.chmod(0o600)


def _give_tree(sandbox: Sandbox, root: Path) -> None:
    """Hand a materialised tree to the agent's user."""
    if not root.exists():
        return
    sandbox.give(root)
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            sandbox.give(Path(directory) / name)
