"""What the worker reads of a session from the agent: its transcript (through the artifacts'
no-follow opens, capped) and its CLI's mirror frames (the job's own session only, capped)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from claude_jobs.worker.artifacts import FileTooLargeError, UnsafeEntryError, read_file
from claude_jobs.worker.sessions import RecordingSessions, SessionTooLargeError, entries_bytes


class Recorded:
    def __init__(self) -> None:
        self.appended: list[tuple[Any, list[Any]]] = []

    async def append(self, key: Any, entries: list[Any]) -> None:
        self.appended.append((key, entries))

    async def load(self, key: Any) -> None:
        return None

    async def list_subkeys(self, key: Any) -> list[str]:
        return []

    async def delete(self, key: Any) -> None:
        return None


def test_a_frame_for_another_session_is_dropped() -> None:
    # Given the job's session store, warm (its CLI started under an id of its own)
    store = Recorded()
    sessions = RecordingSessions(store, "acme", alias=("warm-id", "mine"), session_id="mine")
    entry: list[Any] = [{"type": "user", "uuid": "u1", "sessionId": "theirs"}]
    # When frames name another session of the tenant, the warm id and the job's own
    asyncio.run(sessions.append({"project_key": "p", "session_id": "theirs"}, entry))
    asyncio.run(sessions.append({"project_key": "p", "session_id": "warm-id"}, entry))
    asyncio.run(sessions.append({"project_key": "p", "session_id": "mine"}, entry))
    # Then only the last two are stored, both under the job's session, and the first counted
    assert [key["session_id"] for key, _ in store.appended] == ["mine", "mine"]
    assert sessions.refused == 1


def test_appends_past_the_cap_are_refused_from_then_on() -> None:
    store = Recorded()
    small: list[Any] = [{"type": "user", "uuid": "a"}]
    size = entries_bytes(small)
    sessions = RecordingSessions(store, "acme", session_id="s", max_bytes=size * 2)
    key: Any = {"project_key": "p", "session_id": "s"}
    asyncio.run(sessions.append(key, small))
    big: list[Any] = [{"type": "user", "uuid": "b", "pad": "x" * 100}]
    with pytest.raises(SessionTooLargeError):
        asyncio.run(sessions.append(key, big))
    # A later small append is refused too (no gap in the stored session)
    with pytest.raises(SessionTooLargeError):
        asyncio.run(sessions.append(key, [{"type": "user", "uuid": "c"}]))
    assert len(store.appended) == 1
    assert sessions.too_large is not None and "SESSION_MAX_BYTES" in sessions.too_large


def test_read_file_follows_no_link_anywhere_on_the_path(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "t.jsonl").write_text("SECRET\n")
    root = tmp_path / "sandbox"
    (root / "home" / "projects").mkdir(parents=True)
    (root / "home" / "projects" / "t.jsonl").write_text("mine\n")
    uid = os.geteuid()
    assert read_file(root, "home/projects/t.jsonl", max_bytes=100, owner=uid) == b"mine\n"
    # A link as the file, or as a directory on the way, is refused
    os.remove(root / "home" / "projects" / "t.jsonl")
    os.symlink(secret / "t.jsonl", root / "home" / "projects" / "t.jsonl")
    with pytest.raises(UnsafeEntryError, match="symbolic link"):
        read_file(root, "home/projects/t.jsonl", max_bytes=100, owner=uid)
    os.remove(root / "home" / "projects" / "t.jsonl")
    os.rmdir(root / "home" / "projects")
    os.symlink(secret, root / "home" / "projects")
    with pytest.raises(UnsafeEntryError, match="symbolic link"):
        read_file(root, "home/projects/t.jsonl", max_bytes=100, owner=uid)
    # A missing one is just missing
    with pytest.raises(FileNotFoundError):
        read_file(root, "home/nothing.jsonl", max_bytes=100, owner=uid)


def test_read_file_refuses_another_owner_a_hard_link_and_a_large_file(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("x" * 50)
    uid = os.geteuid()
    with pytest.raises(UnsafeEntryError, match="another user"):
        read_file(tmp_path, "t.jsonl", max_bytes=100, owner=uid + 1)
    with pytest.raises(FileTooLargeError):
        read_file(tmp_path, "t.jsonl", max_bytes=49, owner=uid)
    os.link(tmp_path / "t.jsonl", tmp_path / "other")
    with pytest.raises(UnsafeEntryError, match="hard link"):
        read_file(tmp_path, "t.jsonl", max_bytes=100, owner=uid)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafeEntryError, match="FIFO"):
        read_file(tmp_path, "fifo", max_bytes=100, owner=uid)
