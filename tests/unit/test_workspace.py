"""Long jobs carry the working directory from one segment to the next (worker/workspace.py):
what the agent made is there again, what it planted to leak or escape is not."""

from __future__ import annotations

import io
import os
import subprocess
import sysconfig
import tarfile
from pathlib import Path

import pytest

from claude_jobs.worker.workspace import (
    WorkspaceArchiveError,
    WorkspaceTooLargeError,
    limits,
    pack,
    restore,
    save,
    unpack,
)
from tests.fakes.workspace import MemoryWorkspaceStore

ROOT = Path(__file__).resolve().parents[2]
BOUNDS = limits(max_files=100, max_bytes=1_000_000)


def _carry(source: Path, target: Path) -> list[Path]:
    store = MemoryWorkspaceStore()
    save(store, "t", "j", source, BOUNDS)
    given: list[Path] = []
    assert restore(store, "t", "j", target, given.append)
    return given


def test_files_and_directories_are_carried_as_the_agent_left_them(tmp_path: Path) -> None:
    # Given a working directory with nested files, an empty file and a binary one
    source, target = tmp_path / "a", tmp_path / "b"
    (source / "src" / "pkg").mkdir(parents=True)
    (source / "src" / "pkg" / "mod.py").write_text("print('hi')\n")
    (source / "notes.md").write_text("# notes\n")
    (source / "empty").write_bytes(b"")
    (source / "out").mkdir()
    (source / "out" / "data.bin").write_bytes(bytes(range(256)) * 10)
    target.mkdir()
    # When it is carried to a new segment's working directory
    given = _carry(source, target)
    # Then the same files hold the same bytes, and every one was handed to the agent
    for relative in ("src/pkg/mod.py", "notes.md", "empty", "out/data.bin"):
        assert (target / relative).read_bytes() == (source / relative).read_bytes()
    assert {p.relative_to(target).as_posix() for p in given} >= {
        "src",
        "src/pkg",
        "src/pkg/mod.py",
        "notes.md",
        "out",
        "out/data.bin",
    }


def test_links_and_special_files_the_agent_planted_are_not_carried(tmp_path: Path) -> None:
    # Given a hostile agent's links to the worker's secrets, to the root and out of the
    # directory, a FIFO and a hard link
    source, target = tmp_path / "a", tmp_path / "b"
    source.mkdir()
    target.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("AWS_SECRET_ACCESS_KEY=not-for-the-agent")
    (source / "environ").symlink_to("/proc/self/environ")
    (source / "secret-link").symlink_to(secret)
    (source / "root").symlink_to("/")
    (source / "up").symlink_to("..")
    os.mkfifo(source / "pipe")
    (source / "kept.txt").write_text("kept")
    os.link(secret, source / "hard")
    # When the directory is carried
    _carry(source, target)
    # Then only the regular file arrives; nothing of the secret, no link, no FIFO
    assert sorted(p.name for p in target.iterdir()) == ["kept.txt"]
    for path in target.rglob("*"):
        assert "not-for-the-agent" not in path.read_text()


def test_a_directory_over_a_limit_cannot_be_carried(tmp_path: Path) -> None:
    # Given more bytes than the workspace may carry
    (tmp_path / "big").write_bytes(b"x" * 2048)
    # When it is packed under a 1 KiB limit
    with pytest.raises(WorkspaceTooLargeError, match="WORKSPACE_MAX_BYTES"):
        pack(tmp_path, limits(max_files=10, max_bytes=1024), io.BytesIO())
    # And more files than it may carry
    for n in range(5):
        (tmp_path / f"f{n}").write_text("x")
    with pytest.raises(WorkspaceTooLargeError, match="WORKSPACE_MAX_FILES"):
        pack(tmp_path, limits(max_files=3, max_bytes=10_000), io.BytesIO())


def _archive(*members: tuple[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_a_tampered_archive_cannot_write_outside_the_directory(tmp_path: Path) -> None:
    # Given an archive whose member climbs out of the working directory
    target = tmp_path / "work"
    target.mkdir()
    # When it is unpacked, Then it is refused and nothing lands outside
    with pytest.raises(WorkspaceArchiveError):
        unpack(_archive(("../escape.txt", b"evil")), target, lambda path: None)
    assert not (tmp_path / "escape.txt").exists()
    # And an absolute name (which `pack` never writes) is refused too: nothing lands anywhere
    with pytest.raises(WorkspaceArchiveError):
        unpack(_archive(("/tmp/planted-by-archive", b"evil")), target, lambda path: None)
    assert not (target / "tmp").exists()
    assert not Path("/tmp/planted-by-archive").exists()
    # And a member named twice cannot overwrite the first
    with pytest.raises(WorkspaceArchiveError):
        unpack(_archive(("twice", b"one"), ("twice", b"two")), target, lambda path: None)
    assert (target / "twice").read_bytes() == b"one"


def test_a_tampered_archive_cannot_plant_a_link(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("environ")
        link.type = tarfile.SYMTYPE
        link.linkname = "/proc/self/environ"
        archive.addfile(link)
    buffer.seek(0)
    target = tmp_path / "work"
    target.mkdir()
    with pytest.raises(WorkspaceArchiveError):
        unpack(buffer, target, lambda path: None)
    assert not (target / "environ").is_symlink()


def test_no_stored_workspace_restores_nothing(tmp_path: Path) -> None:
    assert not restore(MemoryWorkspaceStore(), "t", "j", tmp_path, lambda path: None)


#: Carries a directory with the workspace module on the interpreter it runs on.
_CARRY = """
import sys, tarfile
from pathlib import Path
from claude_jobs.worker.workspace import limits, restore, save
class Store(dict):
    def save(self, tenant_id, job_id, body, size):
        self[tenant_id, job_id] = body.read(size)
    def load(self, tenant_id, job_id, into):
        into.write(self[tenant_id, job_id])
        return True
source, target = Path(sys.argv[1]), Path(sys.argv[2])
store = Store()
save(store, "t", "j", source, limits(max_files=10, max_bytes=10_000))
assert restore(store, "t", "j", target, lambda path: None)
print(hasattr(tarfile, "data_filter"), (target / "d" / "f.txt").read_text())
"""


def test_the_workspace_is_carried_on_a_python_without_extraction_filters(tmp_path: Path) -> None:
    # Given Debian 12's interpreter (3.11.2: tarfile has no extraction filters), when there is one
    python = Path("/usr/bin/python3")
    probe = (
        subprocess.run(
            [
                python,
                "-c",
                "import sys, tarfile; print(sys.version_info[:2] == (3, 11), "
                "hasattr(tarfile, 'data_filter'))",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if python.exists()
        else []
    )
    if probe != ["True", "False"]:
        pytest.skip("no Python 3.11 without tarfile's extraction filters here")
    source, target = tmp_path / "a", tmp_path / "b"
    (source / "d").mkdir(parents=True)
    (source / "d" / "f.txt").write_text("kept")
    target.mkdir()
    # When a segment's working directory is carried to the next with it
    site = Path(sysconfig.get_paths()["purelib"])  # the same 3.11 ABI: its packages load
    run = subprocess.run(
        [python, "-c", _CARRY, source, target],
        env={"PYTHONPATH": f"{ROOT / 'src'}:{site}", "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it arrives (no `filter=` needed)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "kept"]
