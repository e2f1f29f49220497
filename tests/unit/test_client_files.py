"""The client's artifact download paths: an artifact path is hostile input (the agent named
the file), so nothing may land outside the target directory or through a link in it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claude_jobs_client import _artifact_target


@pytest.mark.parametrize(
    "path",
    [
        "out/../../etc/passwd",
        "../x",
        "/etc/passwd",
        "out//x",
        "out/a\\..\\b",
        "out/x\x00y",
        "out/",
        "out",
    ],
)
def test_unsafe_artifact_paths_are_refused(tmp_path: Path, path: str) -> None:
    # Given a hostile artifact path
    # When the client maps it into the download directory
    # Then it refuses, and writes nothing
    with pytest.raises(ValueError, match="unsafe artifact path"):
        _artifact_target(tmp_path, path)
    assert list(tmp_path.iterdir()) == []


def test_a_path_maps_under_the_directory_without_out(tmp_path: Path) -> None:
    # Given a nested artifact path
    # When it is mapped
    target = _artifact_target(tmp_path, "out/reports/2026/summary.md")
    # Then it lands under the directory, its parents made, out/ dropped
    assert target == tmp_path / "reports" / "2026" / "summary.md"
    assert target.parent.is_dir()


def test_a_link_in_the_directory_is_never_written_through(tmp_path: Path) -> None:
    # Given a download directory holding links (planted, or left by an earlier download)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "downloads"
    root.mkdir()
    os.symlink(elsewhere, root / "reports")
    os.symlink(elsewhere / "victim", root / "file.txt")
    # When artifacts would be written through them
    # Then both are refused
    with pytest.raises(ValueError, match="through the link"):
        _artifact_target(root, "out/reports/x.txt")
    with pytest.raises(ValueError, match="a link or a directory"):
        _artifact_target(root, "out/file.txt")
    assert list(elsewhere.iterdir()) == []
