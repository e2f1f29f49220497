"""The shared layer, bundled locally (no Docker) from wheels for arm64 Lambda Python."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import bundling
from infra.bundling import PYTHON_VERSION
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.synth


def test_layer_holds_the_package_and_arm64_wheels_for_the_runtime(synth: Synthesized) -> None:
    """Given the synthesized layer asset, it has claude_jobs and its dependencies, compiled
    for aarch64 and the functions' Python, and leaves boto3 to the runtime."""
    assets = json.loads(
        (synth.outdir / f"{synth.built.service.stack_name}.assets.json").read_text()
    )
    layer_dirs = [
        synth.outdir / a["source"]["path"]
        for a in assets["files"].values()
        if (synth.outdir / a["source"]["path"] / "python" / "claude_jobs").is_dir()
    ]
    assert len(layer_dirs) == 1
    site = layer_dirs[0] / "python"
    assert (site / "claude_jobs" / "resources.py").is_file()
    assert (site / "aws_lambda_powertools").is_dir()
    tag = PYTHON_VERSION.replace(".", "")
    native = list((site / "pydantic_core").glob("*.so"))
    assert [p.name for p in native] == [f"_pydantic_core.cpython-{tag}-aarch64-linux-gnu.so"]
    assert not (site / "boto3").exists()
    assert not list(site.rglob("__pycache__"))


def test_function_assets_hold_only_their_handler_directory(synth: Synthesized) -> None:
    assets = json.loads(
        (synth.outdir / f"{synth.built.service.stack_name}.assets.json").read_text()
    )
    handler_dirs = [
        synth.outdir / a["source"]["path"]
        for a in assets["files"].values()
        if (synth.outdir / a["source"]["path"] / "handler.py").is_file()
    ]
    assert len(handler_dirs) == 5
    for directory in handler_dirs:
        assert not list(directory.rglob("__pycache__"))


def test_a_source_change_rebuilds_the_layer_without_the_package_index(
    synth: Synthesized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the wheels installed by the session's synth, building the layer again (as after
    an edit of claude_jobs) copies the cached wheels and the current source, and installs
    nothing: synth stays offline."""

    def no_install(_site: Path) -> None:
        raise AssertionError("the wheels were installed again")

    monkeypatch.setattr(bundling, "install_wheels", no_install)
    bundling.build_layer(tmp_path)
    site = tmp_path / "python"
    assert (site / "pydantic" / "__init__.py").is_file()
    source = bundling.PACKAGE_SOURCE / "resources.py"
    assert (site / "claude_jobs" / "resources.py").read_bytes() == source.read_bytes()
