"""What ships imports only what ships with it.

The layer's modules (the runtime package without the worker, and each zip function's
directory) may import the standard library, `claude_jobs`, the distributions pinned in the
layer's requirements and what the Lambda runtime provides (boto3 and its dependencies); the
worker image's modules, the distributions pinned in its requirements. Function-level imports
count: a lazy import fails in Lambda just the same, only later.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import packaging
from infra.packaging import (
    LAMBDA_RUNTIME_PROVIDED,
    LAYER_REQUIREMENTS,
    PACKAGE_SOURCE,
    REPO_ROOT,
    WORKER_REQUIREMENTS,
    pins,
)
from tests.artifacts.artifacts import HAND_KEPT_LAYER
from tests.artifacts.imports import imported_names, missing_distributions


def layer_files() -> list[Path]:
    files = [PACKAGE_SOURCE / p for p in packaging.layer_package_files()]
    for name in packaging.zip_functions():
        directory = packaging.FUNCTIONS_DIR / name
        files += [directory / p for p in packaging.function_files(name)]
    return [f for f in files if f.suffix == ".py"]


def worker_image_files() -> list[Path]:
    return [source for source, _ in packaging.worker_image_files() if source.suffix == ".py"]


def layer_provides(requirements: Path = LAYER_REQUIREMENTS) -> set[str]:
    return set(pins(requirements)) | LAMBDA_RUNTIME_PROVIDED


def test_the_layer_ships_every_zip_functions_imports() -> None:
    # Given every module the layer and the zip functions ship
    files = layer_files()
    assert PACKAGE_SOURCE / "models.py" in files
    assert REPO_ROOT / "functions" / "submit" / "handler.py" in files
    # Then each of their imports is provided by the layer or the Lambda runtime
    assert missing_distributions(files, layer_provides(), root=REPO_ROOT) == {}


def test_the_worker_image_ships_every_worker_import() -> None:
    # Given every module the worker image ships (its Dockerfile's COPY lines)
    files = worker_image_files()
    assert PACKAGE_SOURCE / "worker" / "agent.py" in files
    # Then each of their imports is pinned in the image's requirements
    assert missing_distributions(files, pins(WORKER_REQUIREMENTS), root=REPO_ROOT) == {}


def test_the_layer_leaves_the_worker_to_its_image() -> None:
    # Given the layer's files, Then none is the worker's (claude-agent-sdk is not in the layer)
    assert not [f for f in layer_files() if f.is_relative_to(PACKAGE_SOURCE / "worker")]
    assert "claude-agent-sdk" not in pins(LAYER_REQUIREMENTS)


def test_a_distribution_missing_from_the_layer_is_reported(tmp_path: Path) -> None:
    # Given the hand-kept layer list, which lacked jsonschema (and, later, PyJWT)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(HAND_KEPT_LAYER)
    # When the layer's modules are checked against it
    missing = missing_distributions(layer_files(), layer_provides(requirements), root=REPO_ROOT)
    # Then the request model's schema check and the GitHub App's JWT are reported: each would
    # fail with an ImportError
    assert missing == {
        "src/claude_jobs/job_options.py": ["jsonschema (jsonschema)"],
        "src/claude_jobs/github/credentials.py": ["jwt (pyjwt)"],
    }


def test_a_worker_module_in_the_layer_would_be_reported() -> None:
    # Given the worker's modules checked against the layer's list
    missing = missing_distributions(worker_image_files(), layer_provides(), root=REPO_ROOT)
    # Then the agent's SDK is reported (which is why the layer leaves the worker out), next to
    # what it brings (anyio, which agent.py imports too)
    assert "claude_agent_sdk (claude-agent-sdk)" in missing["src/claude_jobs/worker/agent.py"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import boto3.session\nfrom jsonschema import validators", {"boto3", "jsonschema"}),
        ("def f():\n    import httpx\n", {"httpx"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mypy_boto3_s3\n",
            {"typing"},
        ),
        ("if TYPE_CHECKING:\n    import a\nelse:\n    import b\n", {"b"}),
        ("from . import models\nfrom ..errors import X\n", set()),
    ],
)
def test_imports_are_read_at_every_level_but_type_checking(source: str, expected: set[str]) -> None:
    # Given a module's source, Then the imports that run are found, function-level ones too
    assert imported_names(source) == expected


def test_the_shipped_requirements_derive_from_pyproject() -> None:
    # Given the runtime dependencies and the worker extra of pyproject.toml
    runtime = {packaging.requirement_name(r) for r in packaging.project_dependencies()}
    worker = {packaging.requirement_name(r) for r in packaging.project_dependencies("worker")}
    layer, image, lock = (
        pins(LAYER_REQUIREMENTS),
        pins(WORKER_REQUIREMENTS),
        pins(packaging.DEV_LOCK),
    )
    # Then the layer pins every runtime dependency the Lambda runtime does not provide, and
    # not boto3; the image pins all of them and the worker extra's
    assert runtime - LAMBDA_RUNTIME_PROVIDED <= set(layer)
    assert "boto3" not in layer and "botocore" not in layer
    assert runtime | worker <= set(image)
    # And every pin is the dev lock's version (what the tests run)
    assert {n: v for n, v in {**layer, **image}.items() if lock.get(n) != v} == {}
    # And both are hashed
    for path in (LAYER_REQUIREMENTS, WORKER_REQUIREMENTS):
        text = path.read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), path
