"""The Python client stands alone: it imports only httpx and the standard library, installs
from `clients/python` with httpx as its only dependency, and its typed job options are the
ones generated from `claude_jobs.job_options` (`make client-options`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest

import claude_jobs_client
from claude_jobs_tools import client_options

ROOT = Path(__file__).parents[2]
CLIENT_PROJECT = ROOT / "clients" / "python"

#: Run with the client importable: submits a job through a mock transport and checks the body.
USE_THE_CLIENT = textwrap.dedent(
    """
    import json
    import httpx
    import claude_jobs_client as c

    seen = []

    def answer(request):
        seen.append(json.loads(request.content))
        return httpx.Response(202, json={"job_id": "j-1", "status": "queued"})

    with c.Client("http://api.test", "k", transport=httpx.MockTransport(answer)) as api:
        api.submit("hi", allowed_tools=("Read",), max_turns=3, output_schema={"type": "object"})
    expected = {
        "prompt": "hi",
        "allowed_tools": ["Read"],
        "max_turns": 3,
        "output_schema": {"type": "object"},
    }
    assert seen == [expected], seen
    for name in ("claude_jobs", "pydantic"):
        try:
            __import__(name)
        except ImportError:
            continue
        raise SystemExit(f"{name} is importable here")
    print("client ok")
    """
)


def _needs_the_network(stderr: str) -> bool:
    """Whether uv failed only because a package is neither in its cache nor reachable offline
    (uv words this as "offline" or, since 0.5, "the network was disabled")."""
    text = stderr.lower()
    return "offline" in text or "network was disabled" in text


def _httpx_closure() -> set[str]:
    """Top-level module names of httpx and what it requires (no extras), and the client's."""
    names: set[str] = set()
    todo, seen = ["httpx"], set()
    while todo:
        try:
            dist = distribution(todo.pop())
        except PackageNotFoundError:  # required only on other Pythons
            continue
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0])
    for module, dists in packages_distributions().items():
        if {d.lower() for d in dists} & seen:
            names.add(module)
    return names


def test_the_client_imports_nothing_but_httpx_and_the_standard_library() -> None:
    # Given an interpreter where only the standard library, httpx (with what it requires) and
    # the client itself can be imported
    allowed = sorted(_httpx_closure() | {"claude_jobs_client"})
    blocker = textwrap.dedent(
        f"""
        import sys
        allowed = set({allowed!r}) | set(sys.stdlib_module_names)

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] not in allowed:
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        """
    )
    # When the client is imported and used, Then it works
    run = subprocess.run(
        [sys.executable, "-c", blocker + USE_THE_CLIENT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT / "src",
    )
    assert run.returncode == 0, run.stderr
    assert "client ok" in run.stdout


def _uv(*args: str) -> subprocess.CompletedProcess[str]:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    return subprocess.run([uv, *args], capture_output=True, text=True, timeout=120)


def test_the_client_installs_alone_with_only_httpx(tmp_path: Path) -> None:
    # Given the client's own project built into a wheel (offline: the build backend and httpx
    # come from uv's cache, filled by `make venv`)
    built = _uv("build", "--offline", "--wheel", str(CLIENT_PROJECT), "-o", str(tmp_path / "dist"))
    if built.returncode != 0 and _needs_the_network(built.stderr):
        pytest.skip(f"cannot build offline: {built.stderr.strip()[-300:]}")
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("claude_jobs_client-*.whl"))
    # When it is installed into a fresh virtualenv
    venv = tmp_path / "venv"
    assert _uv("venv", "--offline", "--python", sys.executable, str(venv)).returncode == 0
    python = venv / "bin" / "python"
    installed = _uv("pip", "install", "--offline", "--python", str(python), str(wheel))
    if installed.returncode != 0 and _needs_the_network(installed.stderr):
        pytest.skip(f"httpx is not in uv's cache: {installed.stderr.strip()[-300:]}")
    assert installed.returncode == 0, installed.stderr
    # Then only httpx and what it requires came with it
    listed = _uv("pip", "list", "--python", str(python), "--format", "freeze")
    names = {line.split("==")[0].lower().replace("_", "-") for line in listed.stdout.split()}
    assert "claude-jobs-client" in names and "httpx" in names
    assert not names & {"claude-jobs", "pydantic", "pydantic-core", "typer", "rich", "boto3"}
    # And the client works there (outside the source tree)
    run = subprocess.run(
        [str(python), "-I", "-c", USE_THE_CLIENT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "client ok" in run.stdout


def test_the_committed_client_options_are_the_generated_ones() -> None:
    assert client_options.TARGET.read_text(encoding="utf-8") == client_options.render(), (
        "src/claude_jobs_client/_options.py is stale: run `make client-options`"
    )


def test_the_client_projects_version_is_the_clients() -> None:
    project = tomllib.loads((CLIENT_PROJECT / "pyproject.toml").read_text())["project"]
    assert project["version"] == claude_jobs_client.__version__
    assert project["dependencies"] == ["httpx>=0.28"]
