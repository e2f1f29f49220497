"""Artifacts: the files the agent leaves under `out/` in its working directory, uploaded when
the job ends (after every process of the job was ended, before its sandbox is removed).

The agent is semi-trusted and the worker may read what the agent may not (Lambda: the same
uid, and the worker's own `/proc/self/environ` holds its AWS credentials). So the walk never
follows a link: every directory and file is opened relative to its parent's descriptor with
`O_NOFOLLOW`, and only what `fstat` of the opened descriptor calls a regular file with one link
is read — symbolic links, FIFOs, sockets, devices and hard links are skipped, each with a note.
FIFOs are opened `O_NONBLOCK` so a planted one cannot hang the worker. At most
`ARTIFACTS_MAX_COUNT` files and `ARTIFACTS_MAX_BYTES` bytes together are uploaded, in path
order; what is left out is named in the job's `artifact_notes` with the limit that applied.
Nothing here fails the job: the agent has run, and its result is recorded either way.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..models import Artifact
from .ports import ArtifactSink as ArtifactSink

OUT_DIR = "out"
#: The job's `documents` entry naming its artifacts' key prefix.
ARTIFACTS_PREFIX_NAME = "artifacts/"
#: A path under out/ longer than this (UTF-8 bytes) is not uploaded (object keys are ≤ 1 KiB).
MAX_PATH_BYTES = 512
#: Directory levels below out/ that are walked.
MAX_DEPTH = 16
#: Notes kept on the job (the rest are counted in a last note).
MAX_NOTES = 20
#: Directory entries looked at, at most (a hostile agent may create millions).
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class ArtifactLimits:
    max_count: int
    max_bytes: int
    #: The settings the notes name when a limit applies.
    count_setting: str = "ARTIFACTS_MAX_COUNT"
    bytes_setting: str = "ARTIFACTS_MAX_BYTES"
    max_depth: int = MAX_DEPTH
    max_entries: int = MAX_ENTRIES
    #: The job's uid: a file or directory owned by anyone else is skipped (None: any owner).
    owner: int | None = None


@dataclass
class Collected:
    artifacts: list[Artifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: A limit left something out (count, bytes, depth or entries), not only a kind of file.
    limited: bool = False
    #: A file could not be handed over (the store failed).
    failed: bool = False
    _dropped: int = 0

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES - 1:
            self.notes.append(text)
        else:
            self._dropped += 1

    def finish(self) -> Collected:
        if self._dropped:
            self.notes.append(f"{self._dropped} more files were not uploaded")
            self._dropped = 0
        return self


def artifact_key(prefix: str, path: str) -> str:
    """The object key of an artifact: its job's artifacts prefix and its `out/…` path."""
    return prefix + path


def _name_problem(name: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return "its name has control or format characters"
    return None


class _Window(io.RawIOBase):
    """The first `size` bytes of an open file, seekable (botocore rewinds bodies to retry)."""

    def __init__(self, raw: IO[bytes], size: int) -> None:
        self._raw = raw
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        self._raw.seek(self._pos)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        if n is None or n < 0 or n > left:
            n = left
        data = self._raw.read(n) if n else b""
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def collect_artifacts(
    work_dir: Path | str,
    limits: ArtifactLimits,
    upload: Callable[[str, IO[bytes], int], None],
) -> Collected:
    """Upload the regular files under `work_dir/out` (see the module's rules) with
    `upload(path, body, size)`; return what was uploaded and the notes."""
    return walk_tree(work_dir, limits, upload, under=OUT_DIR)


def walk_tree(
    directory: Path | str,
    limits: ArtifactLimits,
    take: Callable[[str, IO[bytes], int], None],
    *,
    under: str = "",
) -> Collected:
    """Hand every regular file under `directory` (or its subdirectory `under`, which may be
    missing) to `take(path, body, size)` by the module's rules (no link followed; links,
    special files and hard links skipped with a note); paths are relative to `directory`, with
    "/" separators."""
    collected = Collected()
    try:
        root = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        collected.note(f"the working directory could not be opened ({exc.strerror})")
        return collected.finish()
    try:
        start = root
        if under:
            try:
                start = os.open(under, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root)
            except FileNotFoundError:
                return collected.finish()  # no out/: no artifacts
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    collected.note(
                        f"{under} is not a directory (a link or a file): nothing was uploaded"
                    )
                else:
                    collected.note(
                        f"{under}/ could not be opened ({exc.strerror}): nothing was uploaded"
                    )
                return collected.finish()
        try:
            _Walk(limits, take, collected).walk(start, under, 0)
        finally:
            if start != root:
                os.close(start)
    finally:
        os.close(root)
    return collected.finish()


class UnsafeEntryError(Exception):
    """An entry the walk does not read (a link, a special file, a hard link, another user's,
    or one that could not be opened); its message says which, for a note."""


#: Flags of every open of an entry: never through a link, never blocking (a FIFO), never a tty.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


def open_entry(dir_fd: int, name: str, *, owner: int | None = None) -> tuple[int, os.stat_result]:
    """Open `name` in the directory `dir_fd` without following a link; return the descriptor
    and its `fstat` when it is a directory or a regular file with one link (owned by `owner`
    when given), else raise UnsafeEntryError. The one rule every read of what an agent left
    goes through: artifacts, the carried workspace and the session's transcript."""
    # Classify without following or opening first (opening a socket fails, a device may act);
    # then open without following and trust only fstat of what was opened.
    try:
        seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnsafeEntryError(f"it could not be read ({exc.strerror})") from None
    if stat.S_ISLNK(seen.st_mode):
        raise UnsafeEntryError("a symbolic link")
    if not (stat.S_ISDIR(seen.st_mode) or stat.S_ISREG(seen.st_mode)):
        raise UnsafeEntryError(_kind(seen.st_mode))
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeEntryError("a symbolic link") from None
        raise UnsafeEntryError(f"it could not be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise UnsafeEntryError(_kind(info.st_mode))
        if stat.S_ISREG(info.st_mode) and info.st_nlink != 1:
            raise UnsafeEntryError("a hard link (a file with several names)")
        if owner is not None and info.st_uid != owner:
            raise UnsafeEntryError("not the job's (another user owns it)")
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_file(root: Path | str, relative: str, *, max_bytes: int, owner: int | None) -> bytes:
    """The bytes of the regular file `root/relative`, opened component by component with
    `open_entry` (no link followed anywhere below `root`, every directory and the file owned
    by `owner`). FileNotFoundError when a component is missing; UnsafeEntryError when one is
    not what it should be; FileTooLargeError past `max_bytes`."""
    parts = [part for part in relative.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"not a relative path: {relative!r}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for depth, part in enumerate(parts):
            child, info = open_entry(fd, part, owner=owner)
            os.close(fd)
            fd = child
            last = depth == len(parts) - 1
            if last != stat.S_ISREG(info.st_mode):
                raise UnsafeEntryError("not a regular file" if last else "not a directory")
        if info.st_size > max_bytes:
            raise FileTooLargeError(info.st_size, max_bytes)
        chunks: list[bytes] = []
        left = max_bytes + 1  # one more: a file that grew since fstat is seen
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise FileTooLargeError(len(data), max_bytes)
        return data
    finally:
        os.close(fd)


class FileTooLargeError(Exception):
    def __init__(self, size: int, max_bytes: int) -> None:
        super().__init__(f"{size} bytes, over {max_bytes}")
        self.size = size
        self.max_bytes = max_bytes


class _Walk:
    def __init__(
        self,
        limits: ArtifactLimits,
        upload: Callable[[str, IO[bytes], int], None],
        collected: Collected,
    ) -> None:
        self.limits = limits
        self.upload = upload
        self.collected = collected
        self.bytes_left = limits.max_bytes
        self.entries = 0
        self.count_noted = False

    def walk(self, dir_fd: int, rel: str, depth: int) -> None:
        try:
            with os.scandir(dir_fd) as listing:
                names = sorted(entry.name for entry in listing)
        except OSError as exc:
            self.collected.note(f"{rel}/ could not be listed ({exc.strerror})")
            return
        for name in names:
            self.entries += 1
            if self.entries > self.limits.max_entries:
                if self.entries == self.limits.max_entries + 1:
                    self.collected.note(
                        f"{rel or '.'}/ has more than {self.limits.max_entries} entries: the "
                        "rest were not looked at"
                    )
                    self.collected.limited = True
                return
            path = f"{rel}/{name}" if rel else name
            problem = _name_problem(name)
            shown = path if problem is None else f"{rel}/{name!r}"
            if problem is not None:
                self.collected.note(f"{shown}: skipped, {problem}")
                continue
            if len(path.encode()) > MAX_PATH_BYTES:
                self.collected.note(
                    f"{path[:80]}…: skipped, its path is over {MAX_PATH_BYTES} bytes"
                )
                continue
            self._entry(dir_fd, name, path, depth)

    def _entry(self, dir_fd: int, name: str, path: str, depth: int) -> None:
        try:
            fd, info = open_entry(dir_fd, name, owner=self.limits.owner)
        except UnsafeEntryError as exc:
            self.collected.note(f"{path}: skipped, {exc}")
            return
        except OSError as exc:
            self.collected.note(f"{path}: skipped, it could not be read ({exc.strerror})")
            return
        try:
            if stat.S_ISDIR(info.st_mode):
                if depth + 1 >= self.limits.max_depth:
                    self.collected.note(
                        f"{path}/: skipped, deeper than {self.limits.max_depth} levels"
                    )
                    self.collected.limited = True
                    return
                self.walk(fd, path, depth + 1)
                return
            self._file(fd, path, info.st_size)
        finally:
            os.close(fd)

    def _file(self, fd: int, path: str, size: int) -> None:
        if len(self.collected.artifacts) >= self.limits.max_count:
            if not self.count_noted:
                self.count_noted = True
                self.collected.note(
                    f"{path} and later files: not uploaded, the job reached "
                    f"{self.limits.count_setting} ({self.limits.max_count} files)"
                )
            self.collected.limited = True
            return
        if size > self.bytes_left:
            self.collected.note(
                f"{path} ({size} bytes): not uploaded, the artifacts would exceed "
                f"{self.limits.bytes_setting} ({self.limits.max_bytes} bytes together)"
            )
            self.collected.limited = True
            return
        # The descriptor is ours now: read from it, not by name (the name may change).
        raw = os.fdopen(os.dup(fd), "rb", buffering=0)
        try:
            self.upload(path, _Window(raw, size), size)  # type: ignore[arg-type]
        except Exception as exc:  # a store fault: note it, keep the others
            self.collected.note(f"{path}: could not be uploaded ({type(exc).__name__})")
            self.collected.failed = True
            return
        finally:
            raw.close()
        self.bytes_left -= size
        self.collected.artifacts.append(Artifact(path=path, size_bytes=size))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
