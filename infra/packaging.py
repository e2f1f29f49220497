"""What ships, and how it is put together: the Lambda layer, the zip functions, the worker image.

- **The shared layer**: `python/` holds the runtime package `src/claude_jobs/` without its
  `worker/` subpackage (only the worker image runs it) and the wheels pinned in
  `layers/shared/requirements.txt`. boto3 and its dependencies are left to the Lambda runtime.
- **A zip function**: its directory `functions/<name>/`, without caches and tests.
- **The worker image**: `src/claude_jobs/` and `functions/worker/handler.py` (its Dockerfile's
  COPY lines) on the wheels pinned in `functions/worker/requirements.txt`.

The pinned lists are derived from `pyproject.toml`, at the versions of `requirements/dev.lock`:
the layer's from `[project].dependencies` (the runtime list), the image's from that list plus
the `worker` extra. `make layer-lock` and `make worker-lock` regenerate them
(`python -m infra.packaging lock layer|worker`).

The CDK app builds for Lambda (arm64, Python 3.14: `LAMBDA`); the artifact tests build the
same files, from the same pins, for this machine's interpreter (`HOST`). Installed wheels are
cached under `infra/.build/`, keyed by the pins and the target, so after the first install a
build needs no package index. No CDK import here: the artifact tests use this module as is.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent
PYPROJECT = REPO_ROOT / "pyproject.toml"
DEV_LOCK = REPO_ROOT / "requirements" / "dev.lock"
PACKAGE_SOURCE = REPO_ROOT / "src" / "claude_jobs"
FUNCTIONS_DIR = REPO_ROOT / "functions"
#: The layer asset's source directory: what the layer build needs (its pinned requirements).
LAYER_SOURCE = REPO_ROOT / "layers" / "shared"
LAYER_REQUIREMENTS = LAYER_SOURCE / "requirements.txt"
WORKER_REQUIREMENTS = FUNCTIONS_DIR / "worker" / "requirements.txt"
BUILD_DIR = INFRA_DIR / ".build"

#: Subpackages of `claude_jobs` the layer leaves out: the worker runs from its image only. The
#: GitHub client is in it for GitHub events (submit, notifier), with PyJWT and cryptography for
#: a GitHub App's JWT.
LAYER_OMITS = ("worker",)
#: What every Python Lambda runtime provides: boto3 and its dependencies.
LAMBDA_RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
#: Left out of a zip function's directory (CDK's `exclude` of its asset).
FUNCTION_EXCLUDE = ("__pycache__", "*.pyc", "tests")
_CACHE_VERSION = "2"  # bump to invalidate cached installs when this module changes


@dataclass(frozen=True)
class Target:
    """Which wheels to install: for a Lambda runtime, or for an interpreter of this machine."""

    name: str
    python_version: str | None = None  # None: the interpreter's own (`interpreter`)
    platform: str | None = None  # uv's --python-platform
    pip_platform: str | None = None  # pip's --platform
    interpreter: str | None = None

    def uv_args(self) -> list[str]:
        if self.interpreter is not None:
            return ["--python", self.interpreter]
        assert self.platform and self.python_version
        return ["--python-platform", self.platform, "--python-version", self.python_version]

    def pip_args(self) -> list[str]:
        if self.interpreter is not None:
            return []
        assert self.pip_platform and self.python_version
        return [
            "--platform", self.pip_platform, "--python-version", self.python_version,
            "--implementation", "cp",
        ]  # fmt: skip


#: The functions' runtime and architecture (`infra/components/functions.py`).
LAMBDA = Target(
    "lambda-arm64-3.14",
    python_version="3.14",
    platform="aarch64-manylinux2014",
    pip_platform="manylinux2014_aarch64",
)
#: This machine's interpreter: the artifact tests run what they build with it.
HOST = Target(
    f"host-{sys.implementation.cache_tag}-{os.uname().machine}", interpreter=sys.executable
)


# ---------------------------------------------------------------- requirement lists


def normalize(name: str) -> str:
    """A distribution name in its canonical form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file or lock, by canonical name."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", path.read_text(), re.M)
    return {normalize(name): version for name, version in found}


def project_dependencies(extra: str | None = None) -> list[str]:
    """`[project].dependencies` of pyproject.toml (the runtime), or one of its extras."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    if extra is None:
        return list(project["dependencies"])
    return list(project["optional-dependencies"][extra])


def layer_inputs() -> list[str]:
    """The layer's direct requirements: the runtime list without what Lambda provides."""
    return [r for r in project_dependencies() if requirement_name(r) not in LAMBDA_RUNTIME_PROVIDED]


def lock(kind: str) -> None:
    """Regenerate the pinned, hashed requirements of the layer or the worker image from
    pyproject.toml at the dev lock's versions (the package index is asked for the hashes of
    the target's wheels)."""
    uv = Path(sys.executable).parent / "uv"
    common = [
        str(uv), "pip", "compile", "--quiet", "--no-python-downloads", "--generate-hashes",
        "--only-binary", ":all:", "-c", str(DEV_LOCK),
    ]  # fmt: skip
    if kind == "layer":
        command = [
            *common, "-", *LAMBDA.uv_args(), "--no-annotate",
            "--custom-compile-command", "make layer-lock", "-o", str(LAYER_REQUIREMENTS),
        ]  # fmt: skip
        stdin = "".join(f"{r}\n" for r in layer_inputs())
    elif kind == "worker":
        command = [
            *common, str(PYPROJECT), "--extra", "worker",
            "--python-version", "3.12", "--python-platform", "aarch64-manylinux_2_28",
            "--custom-compile-command", "make worker-lock", "-o", str(WORKER_REQUIREMENTS),
        ]  # fmt: skip
        stdin = ""
    else:
        raise ValueError(f"unknown requirement list {kind!r}: layer or worker")
    subprocess.run(command, input=stdin, text=True, check=True, cwd=REPO_ROOT)


# ---------------------------------------------------------------- installing wheels


_INSTALL_OPTIONS = ("--only-binary", ":all:", "--no-deps", "--no-compile")


def _installer(target: Target) -> list[str]:
    """uv from this virtualenv when it has it (fast, cached), else pip."""
    uv = Path(sys.executable).parent / "uv"
    if uv.is_file():
        return [str(uv), "pip", "install", "--quiet", "--no-python-downloads", *target.uv_args()]
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        *target.pip_args(),
    ]  # fmt: skip


def install(requirements: Path, site: Path, target: Target = LAMBDA) -> None:
    """Install the pinned wheels of `requirements` (hashes checked when it has them) into
    `site`, for `target`."""
    site.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_PYTHON", "PIP_TARGET"))}
    target_args = ["--target", str(site), "-r", str(requirements)]
    subprocess.run([*_installer(target), *_INSTALL_OPTIONS, *target_args], check=True, env=env)
    # Console scripts of the wheels are for another machine: not needed in an artifact.
    shutil.rmtree(site / "bin", ignore_errors=True)


def cached_install(requirements: Path, target: Target = LAMBDA) -> Path:
    """The wheels of `requirements` installed for `target` once and reused: only a change of
    the pins needs the package index, so builds run offline after the first time."""
    digest = hashlib.sha256(f"{_CACHE_VERSION}|{target}\n".encode())
    digest.update(requirements.read_bytes())
    final = BUILD_DIR / f"site-{target.name}-{digest.hexdigest()[:16]}"
    if not final.is_dir():
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="site-", dir=BUILD_DIR))
        try:
            install(requirements, staging, target)
            staging.chmod(0o755)  # as an installed site: readable by a runtime user too
            try:
                staging.rename(final)
            except OSError:
                # Another process (a test worker) finished the same install first: its copy
                # is the same pins, for the same target.
                if not final.is_dir():
                    raise
                shutil.rmtree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def lambda_runtime_sdk(target: Target = HOST) -> Path:
    """What the Lambda runtime itself brings (boto3 and its dependencies, at the dev lock's
    versions), installed on its own: the artifact tests put only this next to an artifact."""
    locked = pins(DEV_LOCK)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    listing = BUILD_DIR / "lambda-runtime-requirements.txt"
    text = "".join(f"{name}=={locked[name]}\n" for name in sorted(LAMBDA_RUNTIME_PROVIDED))
    if not listing.is_file() or listing.read_text() != text:
        # Replaced whole, never rewritten in place: another process reads it meanwhile.
        staging = listing.with_name(f"{listing.name}.{os.getpid()}")
        staging.write_text(text)
        staging.replace(listing)
    return cached_install(listing, target)


# ---------------------------------------------------------------- the artifacts


def _is_code(path: Path) -> bool:
    return path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"


def layer_package_files() -> list[Path]:
    """The files of `claude_jobs` the layer ships (relative to the package)."""
    return sorted(
        p.relative_to(PACKAGE_SOURCE)
        for p in PACKAGE_SOURCE.rglob("*")
        if _is_code(p) and p.relative_to(PACKAGE_SOURCE).parts[0] not in LAYER_OMITS
    )


def layer_hash(target: Target = LAMBDA) -> str:
    """A stable hash of everything that goes into the layer: the asset's hash."""
    digest = hashlib.sha256(f"{_CACHE_VERSION}|{target}\n".encode())
    digest.update(LAYER_REQUIREMENTS.read_bytes())
    for path in layer_package_files():
        digest.update(str(path).encode() + b"\0")
        digest.update((PACKAGE_SOURCE / path).read_bytes() + b"\0")
    return digest.hexdigest()


def build_layer(
    out: Path, target: Target = LAMBDA, requirements: Path = LAYER_REQUIREMENTS
) -> None:
    """The layer's content in `out`: `python/` with the pinned wheels and `claude_jobs`."""
    site = out / "python"
    shutil.copytree(cached_install(requirements, target), site, dirs_exist_ok=True)
    for path in layer_package_files():
        dest = site / "claude_jobs" / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_SOURCE / path, dest)


def zip_functions() -> list[str]:
    """The functions deployed as zips: every `functions/<name>/` with a handler and no
    Dockerfile."""
    return sorted(
        d.name
        for d in FUNCTIONS_DIR.iterdir()
        if (d / "handler.py").is_file() and not (d / "Dockerfile").exists()
    )


def function_files(name: str) -> list[Path]:
    """The files of `functions/<name>/` its asset holds (relative to that directory)."""
    directory = FUNCTIONS_DIR / name
    return sorted(
        p.relative_to(directory)
        for p in directory.rglob("*")
        if p.is_file()
        and not any(
            fnmatch.fnmatch(part, pattern)
            for part in p.relative_to(directory).parts
            for pattern in FUNCTION_EXCLUDE
        )
    )


def build_function(name: str, out: Path) -> None:
    """A zip function's content in `out`, as its CDK asset holds it."""
    for path in function_files(name):
        dest = out / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(FUNCTIONS_DIR / name / path, dest)


def worker_image_files() -> list[tuple[Path, str]]:
    """(source file, path under the task root) of what the worker's Dockerfile copies into
    the image's task root."""
    task_root = "${LAMBDA_TASK_ROOT}"
    files = []
    for line in (FUNCTIONS_DIR / "worker" / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "COPY" and parts[2].startswith(task_root):
            source, dest = REPO_ROOT / parts[1], parts[2][len(task_root) :].lstrip("/")
            if source.is_dir():
                files += [(p, f"{dest}/{p.relative_to(source)}") for p in _code_under(source)]
            else:
                files.append((source, dest))
    return files


def _code_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if _is_code(p))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "lock":
        sys.exit("usage: python -m infra.packaging lock layer|worker")
    lock(sys.argv[2])
