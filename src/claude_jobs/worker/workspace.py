"""Long jobs: the working directory carried from one segment to the next.

Each segment runs in a fresh sandbox (a fresh uid and directory, as every run). When a segment
ends before its job does, the worker packs the job's working directory — after every process of
the job was ended — into a compressed tar archive beside the job's other documents
(`tenant/<tenant>/jobs/<job>/workspace.tar.gz`), and the next segment unpacks it into its new
working directory before the agent starts, so the files the agent made, changed or deleted are
as it left them. The walk is the artifacts' (`artifacts.walk_tree`): no link is followed, and
only directories and regular files are carried (symbolic links, FIFOs, sockets, devices and hard
links are left out, each logged). At most `WORKSPACE_MAX_FILES` files and
`WORKSPACE_MAX_BYTES` bytes together: a workspace over a limit cannot be carried, and the job
fails with `workspace_too_large` rather than going on with part of its files. Unpacking uses
tarfile's `data` filter (no absolute or escaping names, no links, no special files) and hands
everything to the agent's user. The archive is deleted when the job ends (and expires with the
job's documents otherwise).
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .artifacts import ArtifactLimits, walk_tree
from .ports import WorkspaceStore as WorkspaceStore

WORKSPACE_NAME = "workspace.tar.gz"
#: Directory levels of the working directory that are carried.
WORKSPACE_MAX_DEPTH = 64


class WorkspaceTooLargeError(Exception):
    """The working directory is over a limit: it cannot be carried to the next segment."""


class WorkspaceArchiveError(ValueError):
    """A stored archive holds something `pack` never writes (it was tampered with)."""


def limits(max_files: int, max_bytes: int) -> ArtifactLimits:
    return ArtifactLimits(
        max_files,
        max_bytes,
        count_setting="WORKSPACE_MAX_FILES",
        bytes_setting="WORKSPACE_MAX_BYTES",
        max_depth=WORKSPACE_MAX_DEPTH,
        max_entries=max_files * 4 + 1000,
    )


def pack(work_dir: Path, bounds: ArtifactLimits, into: IO[bytes]) -> list[str]:
    """Write `work_dir`'s directories and regular files into `into` as a tar.gz; return the
    notes of what was left out by kind. WorkspaceTooLargeError when a limit applies."""
    with tarfile.open(fileobj=into, mode="w:gz", compresslevel=6) as archive:
        directories: set[str] = set()

        def take(path: str, body: IO[bytes], size: int) -> None:
            parts = path.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in directories:
                    directories.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o700
                    archive.addfile(info)
            info = tarfile.TarInfo(path)
            info.size = size
            info.mode = 0o600
            archive.addfile(info, body)

        walked = walk_tree(work_dir, bounds, take)
    if walked.limited:
        raise WorkspaceTooLargeError(
            "the working directory cannot be carried to the job's next segment: "
            + "; ".join(walked.notes)
        )
    if walked.failed:
        raise OSError("the working directory could not be packed: " + "; ".join(walked.notes))
    return walked.notes


def unpack(source: IO[bytes], work_dir: Path, give: Callable[[Path], None]) -> None:
    """Unpack an archive made by `pack` into the (empty) `work_dir`, handing every directory and
    file to the agent's user with `give`. Only directories and regular files under plain
    relative names are taken; anything else raises WorkspaceArchiveError."""
    with tarfile.open(fileobj=source, mode="r:gz") as archive:
        for member in archive:
            parts = _member_parts(member.name)
            if member.isdir():
                _make_dirs(work_dir, parts)
            elif member.isreg():
                parent = _make_dirs(work_dir, parts[:-1])
                body = archive.extractfile(member)
                assert body is not None  # a regular file's
                _write_new(parent / parts[-1], body, member.size)
            else:
                raise WorkspaceArchiveError(f"{member.name!r}: not a directory or regular file")
    for root, directories, files in os.walk(work_dir, followlinks=False):
        for name in (*directories, *files):
            give(Path(root) / name)


def _member_parts(name: str) -> list[str]:
    """A member's name as path parts: relative, no `.`/`..`/empty part, no NUL."""
    trimmed = name[:-1] if name.endswith("/") else name
    parts = trimmed.split("/")
    if not trimmed or "\x00" in trimmed or any(part in ("", ".", "..") for part in parts):
        raise WorkspaceArchiveError(f"{name!r}: not a plain relative name")
    return parts


def _make_dirs(work_dir: Path, parts: list[str]) -> Path:
    """`work_dir/parts…`, each level made (0o700) or found to be a real directory (no link)."""
    path = work_dir
    for part in parts:
        path = path / part
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise WorkspaceArchiveError(f"{path.name!r}: not a directory") from None
    return path


def _write_new(path: Path, body: IO[bytes], size: int) -> None:
    """Create `path` (never an existing file or link) with `size` bytes of `body`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise WorkspaceArchiveError(f"{path.name!r}: named twice") from None
    with os.fdopen(fd, "wb") as out:
        left = size
        while left > 0:
            chunk = body.read(min(left, 1024 * 1024))
            if not chunk:
                raise WorkspaceArchiveError(f"{path.name!r}: truncated")
            out.write(chunk)
            left -= len(chunk)


def save(
    store: WorkspaceStore, tenant_id: str, job_id: str, work_dir: Path, bounds: ArtifactLimits
) -> list[str]:
    """Pack and store the job's working directory (spooled to /tmp past 8 MiB)."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        notes = pack(work_dir, bounds, spool)
        size = spool.tell()
        spool.seek(0)
        store.save(tenant_id, job_id, spool, size)
    return notes


def restore(
    store: WorkspaceStore, tenant_id: str, job_id: str, work_dir: Path, give: Callable[[Path], None]
) -> bool:
    """Unpack the job's stored working directory into `work_dir`; False when none is stored."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        if not store.load(tenant_id, job_id, spool):
            return False
        spool.seek(0)
        unpack(spool, work_dir, give)
    return True
