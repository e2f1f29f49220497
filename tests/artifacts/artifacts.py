"""Running the shipped artifacts: what the artifact tests build and how they invoke it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from claude_jobs_tools.local.stack import settings_env
from claude_jobs_tools.provision import Provisioned

HARNESS = Path(__file__).with_name("lambda_harness.py")
#: The sample events' API key (events/apigw_*.json, events/authorizer_token.json) and tenant.
SAMPLE_KEY = "cjk_0a1b2c3d4e5f_test-key-not-real"
SAMPLE_TENANT = "tenant-a"
#: The layer's requirements as they were kept by hand, before they were derived from
#: pyproject.toml (no jsonschema).
HAND_KEPT_LAYER = """\
annotated-types==0.8.0
aws-lambda-powertools==3.37.0
jmespath==1.1.0
pydantic==2.14.3
pydantic-core==2.50.4
typing-extensions==4.16.0
typing-inspection==0.4.5
"""


@dataclass(frozen=True)
class Artifacts:
    layer: Path  # the layer's `python/`
    functions: dict[str, Path]  # name → the function's code directory
    runtime_sdk: Path  # what the Lambda runtime provides: boto3 and its dependencies


@contextmanager
def aws_at(endpoint: str) -> Iterator[None]:
    """This process's boto3 pointed at `endpoint`, for the duration of the block."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        yield


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    provisioned: Provisioned

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1")  # type: ignore[call-overload]

    def environment(self) -> AbstractContextManager[None]:
        """This process's boto3 pointed at the emulator, for the duration of the block."""
        return aws_at(self.endpoint)


@dataclass(frozen=True)
class Invocation:
    answers: list[dict[str, Any]]
    foreign_modules: list[str]
    logs: str  # what the function wrote (stdout, then stderr)


def invoke(
    artifacts: Artifacts,
    deployment: Deployment,
    function: str,
    events: list[dict[str, Any]],
    tmp_path: Path,
    layer: Path | None = None,
) -> Invocation:
    """Run `functions/<function>` from its artifact over `events`, in one fresh interpreter
    whose path holds only that artifact, the layer and the runtime's boto3, with the
    environment the CDK app and the Lambda runtime give it."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_ENDPOINT_URL": deployment.endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_LAMBDA_FUNCTION_NAME": f"claude-jobs-{function}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
        "POWERTOOLS_SERVICE_NAME": "claude-jobs",
        "POWERTOOLS_METRICS_NAMESPACE": "ClaudeJobsArtifacts",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **settings_env(deployment.provisioned.settings),
    }
    answers_file = tmp_path / f"{function}-answers.json"
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(HARNESS),
            str(artifacts.functions[function]),
            str(layer or artifacts.layer),
            str(artifacts.runtime_sdk),
            str(answers_file),
        ],
        input=json.dumps(events),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if run.returncode != 0:
        raise AssertionError(f"{function} failed to run:\n{run.stderr[-4000:]}")
    result = json.loads(answers_file.read_text())
    return Invocation(result["answers"], result["foreign_modules"], run.stdout + run.stderr)
