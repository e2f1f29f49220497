"""Artifact collection from a workspace's out/ directory, against hostile layouts: links to the
worker's secrets, FIFOs, sockets, hard links, caps on count and bytes."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO

import pytest

from claude_jobs.worker.artifacts import (
    MAX_DEPTH,
    MAX_NOTES,
    ArtifactLimits,
    Collected,
    collect_artifacts,
)

LIMITS = ArtifactLimits(max_count=100, max_bytes=10_000)


class Stored(dict[str, bytes]):
    def __call__(self, path: str, body: IO[bytes], size: int) -> None:
        data = body.read()
        assert len(data) == size
        self[path] = data


def collect(work: Path, limits: ArtifactLimits = LIMITS) -> tuple[Collected, Stored]:
    stored = Stored()
    return collect_artifacts(work, limits, stored), stored


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path


def test_regular_files_under_out_are_uploaded_in_path_order(work: Path) -> None:
    # Given files under out/, nested, and a file outside out/
    (work / "out" / "b.txt").write_bytes(b"bee")
    (work / "out" / "sub" / "deeper").mkdir(parents=True)
    (work / "out" / "sub" / "deeper" / "a.json").write_bytes(b"{}")
    (work / "out" / "empty").write_bytes(b"")
    (work / "outside.txt").write_bytes(b"not an artifact")
    # When the artifacts are collected
    collected, stored = collect(work)
    # Then exactly the files under out/ are uploaded, with their sizes, in path order
    assert [(a.path, a.size_bytes) for a in collected.artifacts] == [
        ("out/b.txt", 3),
        ("out/empty", 0),
        ("out/sub/deeper/a.json", 2),
    ]
    assert stored == {"out/b.txt": b"bee", "out/empty": b"", "out/sub/deeper/a.json": b"{}"}
    assert collected.notes == []


def test_no_out_directory_means_no_artifacts(tmp_path: Path) -> None:
    # Given a workspace without out/
    # When the artifacts are collected
    collected, stored = collect(tmp_path)
    # Then there are none, and nothing to note
    assert collected.artifacts == [] and collected.notes == [] and stored == {}


def test_a_symlink_to_the_workers_environment_is_not_uploaded(work: Path) -> None:
    # Given a hostile agent's links: to the worker's own environment (its credentials), to
    # a secret file, and a directory link out of the workspace
    secret = work / "proxy-secret"
    secret.write_bytes(b"sk-ant-not-for-the-agent")
    os.symlink("/proc/self/environ", work / "out" / "environ")
    os.symlink(secret, work / "out" / "key.txt")
    os.symlink("/etc", work / "out" / "etc")
    (work / "out" / "ok.txt").write_bytes(b"ok")
    # When the artifacts are collected
    collected, stored = collect(work)
    # Then only the regular file is uploaded; each link is named as skipped
    assert list(stored) == ["out/ok.txt"]
    assert not any(b"sk-ant" in data or b"PATH=" in data for data in stored.values())
    assert collected.notes == [
        "out/environ: skipped, a symbolic link",
        "out/etc: skipped, a symbolic link",
        "out/key.txt: skipped, a symbolic link",
    ]


def test_out_itself_as_a_link_uploads_nothing(tmp_path: Path) -> None:
    # Given out is a link to a directory holding a secret
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret").write_bytes(b"secret")
    os.symlink(elsewhere, tmp_path / "out")
    # When the artifacts are collected
    collected, stored = collect(tmp_path)
    # Then nothing is uploaded, and the note says why
    assert stored == {}
    assert collected.notes == ["out is not a directory (a link or a file): nothing was uploaded"]


def test_fifos_sockets_and_hard_links_are_skipped_without_hanging(work: Path) -> None:
    # Given a FIFO (opening it for reading would block), a socket and a hard link
    os.mkfifo(work / "out" / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(work / "out" / "sock"))
    target = work / "linked-target"
    target.write_bytes(b"twice")
    os.link(target, work / "out" / "hard")
    try:
        # When the artifacts are collected
        collected, stored = collect(work)
    finally:
        server.close()
    # Then none of them is uploaded, each named with what it is
    assert stored == {}
    assert collected.notes == [
        "out/hard: skipped, a hard link (a file with several names)",
        "out/pipe: skipped, a FIFO",
        "out/sock: skipped, a socket",
    ]


def test_the_count_and_byte_caps_apply_and_are_named(work: Path) -> None:
    # Given files of 50, 4, 10, 4, 4 and 4 bytes, under caps of 3 files and 60 bytes
    (work / "out" / "0-big.bin").write_bytes(b"x" * 50)
    for name in "acde":
        (work / "out" / f"{name}.txt").write_bytes(b"1234")
    (work / "out" / "b.txt").write_bytes(b"x" * 10)
    # When the artifacts are collected (in path order)
    collected, stored = collect(work, ArtifactLimits(max_count=3, max_bytes=60))
    # Then b.txt would pass the bytes cap and is left out; c.txt still fits; the count cap
    # stops the rest; each limit is named
    assert list(stored) == ["out/0-big.bin", "out/a.txt", "out/c.txt"]
    assert collected.notes == [
        "out/b.txt (10 bytes): not uploaded, the artifacts would exceed ARTIFACTS_MAX_BYTES "
        "(60 bytes together)",
        "out/d.txt and later files: not uploaded, the job reached ARTIFACTS_MAX_COUNT (3 files)",
    ]


def test_hostile_names_and_depth_are_bounded(work: Path) -> None:
    # Given a name that is not UTF-8, one with a newline, and directories deeper than allowed
    os.close(os.open(os.fsencode(work / "out") + b"/bad-\xff", os.O_CREAT | os.O_WRONLY))
    (work / "out" / "new\nline").write_bytes(b"x")
    deep = work / "out"
    for _ in range(MAX_DEPTH + 2):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"deep")
    # When the artifacts are collected
    collected, stored = collect(work)
    # Then none is uploaded, and each is noted
    assert stored == {}
    assert len(collected.notes) == 3
    assert "its name is not valid UTF-8" in collected.notes[0]
    assert "deeper than" in collected.notes[1]
    assert "control or format characters" in collected.notes[2]


def test_notes_are_bounded(work: Path) -> None:
    # Given many links (a hostile agent floods the notes)
    for i in range(100):
        os.symlink("/proc/self/environ", work / "out" / f"l{i:03d}")
    # When the artifacts are collected
    collected, _ = collect(work)
    # Then at most MAX_NOTES notes are kept, the last counting the rest
    assert len(collected.notes) == MAX_NOTES
    assert collected.notes[-1] == f"{100 - (MAX_NOTES - 1)} more files were not uploaded"


def test_a_failing_store_is_noted_and_the_others_kept(work: Path) -> None:
    # Given two files and a store that fails on one
    (work / "out" / "a.txt").write_bytes(b"a")
    (work / "out" / "b.txt").write_bytes(b"b")
    stored: dict[str, bytes] = {}

    def upload(path: str, body: IO[bytes], size: int) -> None:
        if path == "out/a.txt":
            raise ConnectionError("S3 is away")
        stored[path] = body.read()

    # When the artifacts are collected
    collected = collect_artifacts(work, LIMITS, upload)
    # Then the other file is kept and the failure is noted
    assert [a.path for a in collected.artifacts] == ["out/b.txt"]
    assert collected.notes == ["out/a.txt: could not be uploaded (ConnectionError)"]
