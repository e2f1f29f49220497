"""The shared layer, bundled locally (no Docker) from wheels for arm64 Lambda Python."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import packaging
from infra.packaging import LAMBDA, PACKAGE_SOURCE
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.synth


def _asset_dirs(synth: Synthesized) -> list[Path]:
    assets = json.loads(
        (synth.outdir / f"{synth.built.service.stack_name}.assets.json").read_text()
    )
    return [synth.outdir / a["source"]["path"] for a in assets["files"].values()]


def test_layer_holds_the_runtime_package_and_arm64_wheels(synth: Synthesized) -> None:
    """Given the synthesized layer asset, it has the runtime package without the worker and its
    dependencies, compiled for aarch64 and the functions' Python, and leaves boto3 to the
    runtime."""
    layer_dirs = [d for d in _asset_dirs(synth) if (d / "python" / "claude_jobs").is_dir()]
    assert len(layer_dirs) == 1
    site = layer_dirs[0] / "python"
    shipped = sorted(p.relative_to(site / "claude_jobs") for p in (site / "claude_jobs").rglob("*"))
    assert [p for p in shipped if (site / "claude_jobs" / p).is_file()] == (
        packaging.layer_package_files()
    )
    assert (site / "claude_jobs" / "models.py").is_file()
    assert not (site / "claude_jobs" / "worker").exists()
    assert not (site / "claude_jobs_tools").exists()
    assert (site / "aws_lambda_powertools").is_dir()
    assert (site / "jsonschema").is_dir()
    tag = (LAMBDA.python_version or "").replace(".", "")
    native = list((site / "pydantic_core").glob("*.so"))
    assert [p.name for p in native] == [f"_pydantic_core.cpython-{tag}-aarch64-linux-gnu.so"]
    assert not (site / "boto3").exists()
    assert not list(site.rglob("__pycache__"))
    assert not list(site.rglob("*.pyc"))


def test_function_assets_hold_exactly_their_handler_directory(synth: Synthesized) -> None:
    """Given the synthesized zip function assets, each holds what `infra.packaging` builds for
    that function (the artifact tests run those builds)."""
    handler_dirs = [d for d in _asset_dirs(synth) if (d / "handler.py").is_file()]
    expected = {
        tuple(str(p) for p in packaging.function_files(name)) for name in packaging.zip_functions()
    }
    found = {
        tuple(sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()))
        for d in handler_dirs
    }
    assert len(handler_dirs) == len(packaging.zip_functions()) == 9
    assert found == expected


def test_a_source_change_rebuilds_the_layer_without_the_package_index(
    synth: Synthesized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the wheels installed by the session's synth, building the layer again (as after
    an edit of claude_jobs) copies the cached wheels and the current source, and installs
    nothing: synth stays offline."""

    def no_install(*_args: object) -> None:
        raise AssertionError("the wheels were installed again")

    monkeypatch.setattr(packaging, "install", no_install)
    packaging.build_layer(tmp_path)
    site = tmp_path / "python"
    assert (site / "pydantic" / "__init__.py").is_file()
    source = PACKAGE_SOURCE / "resources.py"
    assert (site / "claude_jobs" / "resources.py").read_bytes() == source.read_bytes()
