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

What comes from the sandbox is the agent's, and is read as such (docs/security.md):
- The mirror's frames come from the CLI's stdout, which the agent may be able to write (its
  own CLI runs as its uid): a frame is stored only when it names the job's own session (or the
  warm CLI's id standing for it, `started_as`); any other is dropped and counted.
- `save` runs after the job's sweep (nothing of the agent runs any more) and reads the
  transcript with `artifacts.read_file`: no link followed anywhere below the sandbox's root,
  every directory and the file owned by the job's uid, a regular file with one link.
- A session's stored transcripts are at most `SESSION_MAX_BYTES`: a load finds the size first
  and refuses a larger session before reading it; an append (the mirror's or `save`'s) that
  would make it larger is refused. Either way the job ends `session_too_large`, and what the
  store holds stays a session under the cap, which the next job can resume.
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
from .artifacts import FileTooLargeError, UnsafeEntryError, read_file
from .sdk_seam import materialize_subagent_transcripts

if TYPE_CHECKING:
    from claude_agent_sdk.types import SessionKey, SessionStoreEntry

    from ..models import Job
    from .sandbox import Sandbox

log = deferred_logger()

#: Seconds each store call may take while a session is materialised.
LOAD_TIMEOUT_SECONDS = 60.0
#: The error code of a job whose session is over `SESSION_MAX_BYTES` (docs/worker.md).
SESSION_TOO_LARGE = "session_too_large"
#: The default cap (settings `SESSION_MAX_BYTES`).
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class SessionTooLargeError(Exception):
    """The session's transcripts are (or would become) larger than `SESSION_MAX_BYTES`."""


def entries_bytes(entries: list[Any]) -> int:
    """The size of `entries` as the store keeps them (one compact JSON line each)."""
    return sum(
        len(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        for entry in entries
    )


class RecordingSessions(TenantSessions):
    """A tenant's view of the store that remembers the uuids of what it appended (the SDK's
    mirror), so that `save` appends only what is missing.

    `alias` (warm start): the CLI was started under a session id of its own before its job was
    known; what it writes under that id (keys and each entry's `sessionId`) is stored under the
    job's session, exactly as if the CLI had been started with it.

    Only the job's own session is written: an append for any other session id (a frame the
    agent forged on its CLI's stdout) is dropped and counted in `refused`. `max_bytes`: the
    session's size cap; `stored_bytes` starts at what was loaded, and an append past the cap
    raises SessionTooLargeError (and sets `too_large`)."""

    def __init__(
        self,
        store: TranscriptStore,
        tenant_id: str,
        alias: tuple[str, str] | None = None,
        *,
        session_id: str | None = None,
        max_bytes: int | None = None,
    ) -> None:
        super().__init__(store, tenant_id)
        self.appended: set[str] = set()
        self.alias = alias
        self.own = {session_id, *(alias or ())} - {None}
        self.max_bytes = max_bytes
        self.stored_bytes = 0
        self.refused = 0
        self.too_large: str | None = None

    def admit(self, size: int) -> None:
        """Count `size` more bytes into the session, or raise SessionTooLargeError (and every
        later append then: a session is never stored with a gap)."""
        if self.too_large is not None:
            raise SessionTooLargeError(self.too_large)
        if self.max_bytes is not None and self.stored_bytes + size > self.max_bytes:
            self.too_large = (
                f"the session's transcript would exceed SESSION_MAX_BYTES ({self.max_bytes} "
                f"bytes): {self.stored_bytes} stored, {size} more"
            )
            raise SessionTooLargeError(self.too_large)
        self.stored_bytes += size

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if key.get("session_id") not in self.own:
            self.refused += 1
            log.warning(
                "dropped %s transcript entries for a session that is not the job's",
                len(entries),
            )
            return
        if self.alias is not None and key.get("session_id") == self.alias[0]:
            started_as, session_id = self.alias
            key = {**key, "session_id": session_id}
            entries = [
                {**entry, "sessionId": session_id}  # type: ignore[typeddict-unknown-key]
                if isinstance(entry, dict) and entry.get("sessionId") == started_as
                else entry
                for entry in entries
            ]
        self.admit(entries_bytes(entries))
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
    #: The sandbox's root and the job's uid: the transcript is read below that root, owned by
    #: that uid (None: the worker's own), never through a link.
    root: Path | None = None
    owner: int | None = None
    #: Why the session could not be saved whole: over `SESSION_MAX_BYTES` (the job then ends
    #: `session_too_large`); None when it was.
    too_large: str | None = None

    @property
    def over_cap(self) -> str | None:
        """Why the session is over its cap (from `save` or the mirror), or None."""
        return self.too_large or self.store.too_large


class SessionKeeper:
    def __init__(self, store: TranscriptStore, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._store = store
        self.max_bytes = max_bytes

    def prepare(self, job: Job, sandbox: Sandbox) -> AgentSession | None:
        """Load the job's session into its sandbox. Store failures raise (an infrastructure
        fault: the job is retried); a session over `max_bytes` raises SessionTooLargeError
        before it is read."""
        if job.session_id is None:
            return None
        session = AgentSession(
            session_id=job.session_id,
            resume=False,
            store=self._recording(job.tenant_id, job.session_id),
            root=sandbox.root,
            owner=_owner(sandbox),
        )
        session.transcript = transcript_path(sandbox, job.session_id)
        entries = asyncio.run(self._materialise(session, sandbox))
        session.resume = bool(entries)
        session.loaded = {str(e["uuid"]) for e in entries if isinstance(e.get("uuid"), str)}
        return session

    async def _materialise(self, session: AgentSession, sandbox: Sandbox) -> list[Any]:
        store = session.store
        key = store.key(session.session_id)
        sized = getattr(self._store, "stored_bytes", None)
        if sized is not None:  # known before anything is read
            size = await asyncio.wait_for(sized(key), LOAD_TIMEOUT_SECONDS)
            if size > self.max_bytes:
                raise SessionTooLargeError(
                    f"the session's transcript is {size} bytes, over SESSION_MAX_BYTES "
                    f"({self.max_bytes} bytes): it cannot be resumed"
                )
            store.stored_bytes = size
            if size == 0:
                # Nothing stored (a new session: most jobs): the listing said so already, and
                # no part is ever empty, so reading it again would find nothing.
                return []
        entries = await asyncio.wait_for(store.load(key), LOAD_TIMEOUT_SECONDS) or []
        if not entries:
            return []
        loaded = entries_bytes(entries)
        if loaded > self.max_bytes:
            raise SessionTooLargeError(
                f"the session's transcript is {loaded} bytes, over SESSION_MAX_BYTES "
                f"({self.max_bytes} bytes): it cannot be resumed"
            )
        store.stored_bytes = max(store.stored_bytes, loaded)
        assert session.transcript is not None
        project_dir = session.transcript.parent
        project_dir.mkdir(parents=True, exist_ok=True)
        _write_jsonl(session.transcript, entries)
        await materialize_subagent_transcripts(
            store,
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
                self._store,
                session.store.tenant_id,
                alias=(session_id, session.session_id),
                session_id=session.session_id,
                max_bytes=self.max_bytes,
            ),
            transcript=transcript_path(sandbox, session_id),
            root=sandbox.root,
            owner=_owner(sandbox),
        )

    def _recording(self, tenant_id: str, session_id: str) -> RecordingSessions:
        return RecordingSessions(
            self._store, tenant_id, session_id=session_id, max_bytes=self.max_bytes
        )

    def unbound(self, session_id: str) -> AgentSession:
        """The session a warm CLI is started under: its own id, no tenant; nothing goes
        through this store (the job that adopts the CLI brings its own, `started_as`)."""
        return AgentSession(
            session_id=session_id, resume=False, store=RecordingSessions(_NoStore(), "")
        )

    def save(self, session: AgentSession) -> None:
        """Append to the store the transcript lines the CLI wrote that neither were loaded nor
        reached it through the mirror. Call it once nothing of the job runs (after its sweep):
        the transcript is the agent's file. Never raises: a run's outcome is recorded whatever
        happens here (the mirror has saved the session up to its last flush); a session over
        its cap sets `session.too_large`."""
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
        except SessionTooLargeError as exc:
            session.too_large = str(exc)
            log.warning("session %s not saved: %s", session.session_id, exc)
        except Exception as exc:
            log.warning("session %s could not be saved: %s", session.session_id, type(exc).__name__)
        if session.store.refused:
            log.warning(
                "session %s: %s transcript frame(s) for other sessions were dropped",
                session.session_id,
                session.store.refused,
            )

    def _missing(self, session: AgentSession) -> list[Any]:
        path = session.transcript
        if path is None or session.root is None:
            return []
        try:
            data = read_file(
                session.root,
                path.relative_to(session.root).as_posix(),
                max_bytes=self.max_bytes,
                owner=session.owner,
            )
        except FileNotFoundError:
            return []
        except FileTooLargeError as exc:
            raise SessionTooLargeError(
                f"the session's transcript file is over SESSION_MAX_BYTES ({self.max_bytes} "
                f"bytes): {exc}"
            ) from None
        except UnsafeEntryError as exc:
            log.warning("session %s: the transcript was not read: %s", session.session_id, exc)
            return []
        known = session.loaded | session.store.appended
        missing: list[Any] = []
        for line in data.decode("utf-8", errors="replace").splitlines():
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


def _owner(sandbox: Sandbox) -> int:
    """The uid the agent's files are owned by: the job's, or the worker's own (one user)."""
    uid = sandbox.owner_uid
    return os.geteuid() if uid is None else uid


def transcript_path(sandbox: Sandbox, session_id: str) -> Path:
    """Where the CLI keeps the session's transcript for a run in `sandbox`."""
    from claude_agent_sdk import project_key_for_directory

    return (
        sandbox.config_dir
        / "projects"
        / project_key_for_directory(sandbox.work_dir)
        / (f"{session_id}.jsonl")
    )


def write_transcript(path: Path, entries: list[Any]) -> None:
    """Write a materialised transcript in place (its owner and mode kept)."""
    _write_jsonl(path, entries)


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
