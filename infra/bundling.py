"""Local bundling of the shared Lambda layer: no Docker.

The layer is `claude_jobs` plus its runtime dependencies, installed from platform-specific wheels
for the Lambda runtime and architecture (`--python-platform aarch64-manylinux2014
--python-version 3.14 --only-binary :all:`), so a developer's x86 laptop builds the same layer
the arm64 functions load. The pinned dependency list is `infra/layer-requirements.txt`
(`make layer-lock` regenerates it); boto3 is left out because the Lambda runtime provides it.

The installed wheels are cached under `infra/.build/wheels-<hash>/`, keyed by the pins and the
target, so repeated synths (and the test session) install once, and a change to the package's
source needs no network: only the copy of `claude_jobs` changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent
LAYER_SOURCE = REPO_ROOT / "layers" / "shared"
PACKAGE_SOURCE = REPO_ROOT / "src" / "claude_jobs"
LAYER_REQUIREMENTS = INFRA_DIR / "layer-requirements.txt"
BUILD_DIR = INFRA_DIR / ".build"

#: What the wheels are chosen for: must match the functions' runtime and architecture.
PYTHON_VERSION = "3.14"
PLATFORM = "aarch64-manylinux2014"
_BUNDLER_VERSION = "1"  # bump to invalidate cached bundles when this module changes


def _source_files() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE_SOURCE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def wheels_hash() -> str:
    """What the installed dependencies depend on: the pins and the target."""
    digest = hashlib.sha256()
    digest.update(f"{_BUNDLER_VERSION}|{PYTHON_VERSION}|{PLATFORM}\n".encode())
    digest.update(LAYER_REQUIREMENTS.read_bytes())
    return digest.hexdigest()


def layer_hash() -> str:
    """A stable hash of everything that goes into the layer: the asset's hash."""
    digest = hashlib.sha256(wheels_hash().encode())
    for path in _source_files():
        digest.update(str(path.relative_to(PACKAGE_SOURCE)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _installer() -> list[str]:
    """uv from this virtualenv when it has it (fast, cached), else pip."""
    uv = Path(sys.executable).parent / "uv"
    if uv.is_file():
        return [
            str(uv), "pip", "install", "--quiet", "--no-python-downloads",
            "--python-platform", PLATFORM, "--python-version", PYTHON_VERSION,
        ]  # fmt: skip
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--platform", "manylinux2014_aarch64", "--python-version", PYTHON_VERSION,
        "--implementation", "cp",
    ]  # fmt: skip


_INSTALL_OPTIONS = ("--only-binary", ":all:", "--no-deps", "--no-compile")


def install_wheels(site: Path) -> None:
    """Install the pinned wheels (hashes checked) into `site`."""
    site.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_PYTHON", "PIP_TARGET"))}
    target_args = ["--target", str(site), "-r", str(LAYER_REQUIREMENTS)]
    subprocess.run([*_installer(), *_INSTALL_OPTIONS, *target_args], check=True, env=env)
    # Console scripts of the wheels are for another machine: not needed in a layer.
    shutil.rmtree(site / "bin", ignore_errors=True)


def cached_wheels() -> Path:
    """The installed dependencies for the current pins, installed once and reused: only a pin
    change needs the package index, so synth runs offline after the first time."""
    final = BUILD_DIR / f"wheels-{wheels_hash()[:16]}"
    if not final.is_dir():
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="wheels-", dir=BUILD_DIR))
        try:
            install_wheels(staging)
            if final.exists():  # another process finished first
                shutil.rmtree(staging)
            else:
                staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def build_layer(target: Path) -> None:
    """The layer's content in `target`: `python/` with the wheels and `claude_jobs`."""
    site = target / "python"
    shutil.copytree(cached_wheels(), site, dirs_exist_ok=True)
    shutil.copytree(
        PACKAGE_SOURCE,
        site / "claude_jobs",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )


@jsii.implements(ILocalBundling)
class LocalLayerBundler:
    """Bundles the layer on this machine; CDK never falls back to Docker."""

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        build_layer(Path(output_dir))
        return True


def layer_bundling() -> BundlingOptions:
    return BundlingOptions(
        # Required by the API, never pulled: local bundling always succeeds.
        image=DockerImage.from_registry("local-bundling-only"),
        # jsii passes the options positionally; its typing lists them as keywords.
        local=cast(ILocalBundling, LocalLayerBundler()),
    )
