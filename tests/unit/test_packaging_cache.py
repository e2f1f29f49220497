"""The wheel cache of the artifact builds (`infra.packaging.cached_install`) when several
processes (pytest-xdist workers) fill it at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import packaging


def test_an_install_another_process_finished_first_is_used_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty cache, and another process that finishes the same install just before
    # this one moves its copy into place
    monkeypatch.setattr(packaging, "BUILD_DIR", tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("example==1.0\n")

    def install(_: Path, site: Path, target: Any = None) -> None:
        (site / "mine.py").write_text("")

    rename = Path.rename

    def rename_after_the_other(self: Path, target: Path) -> Path:
        Path(target).mkdir()
        (Path(target) / "theirs.py").write_text("")
        return rename(self, target)

    monkeypatch.setattr(packaging, "install", install)
    monkeypatch.setattr(Path, "rename", rename_after_the_other)
    # When this process finishes its install
    site = packaging.cached_install(requirements, packaging.HOST)
    # Then it uses the other's copy, and leaves no staging directory behind
    assert sorted(p.name for p in site.iterdir()) == ["theirs.py"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("site-")] == [site.name]
