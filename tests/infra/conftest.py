"""Synthesizes the CDK app once per test session; tests assert on the templates.

The first synth of a fresh checkout installs the layer's wheels (cached in infra/.build/).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# jsii runs the CDK in Node: use the virtualenv's current Node, not an older one on the machine.
_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
# Synthesis is offline and account-free: never look for credentials or instance metadata.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.pop("CDK_DEFAULT_ACCOUNT", None)
os.environ.pop("CDK_DEFAULT_REGION", None)

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from infra.main import ClaudeJobsApp


@dataclass
class Synthesized:
    built: ClaudeJobsApp
    outdir: Path
    stateful: Template
    service: Template

    @property
    def templates(self) -> dict[str, Mapping[str, Any]]:
        return {"stateful": self.stateful.to_json(), "service": self.service.to_json()}


def _synth(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    from aws_cdk.assertions import Template

    from infra.main import build_app

    built = build_app(context=context, outdir=str(outdir))
    built.app.synth()
    return Synthesized(
        built=built,
        outdir=outdir,
        stateful=Template.from_stack(built.stateful),
        service=Template.from_stack(built.service),
    )


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app as `make deploy` would deploy it: default (production) configuration."""
    return _synth(tmp_path_factory.mktemp("cdk.out"))


#: A non-default configuration, to see that settings reach the templates.
CUSTOM_CONTEXT = {
    "stage": "dev",
    "anthropic_secret_name": "shared/anthropic-key",
    "worker_reserved_concurrency": "none",
    "worker_max_concurrency": "3",
    "worker_memory_mb": "2048",
    "log_retention_days": "30",
    "permitted_tools": "Read,Grep",
    "default_model": "claude-haiku-4-5",
    "max_budget_usd_cap": "2.5",
    "session_retention_days": "7",
}


@pytest.fixture(scope="session")
def custom_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synth(tmp_path_factory.mktemp("cdk.out.custom"), CUSTOM_CONTEXT)


#: A Bedrock deployment: no Anthropic key; two model names on two US inference profiles.
BEDROCK_CONTEXT = {
    "model_provider": "bedrock",
    "bedrock_models": (
        "claude-sonnet-4-5=us.anthropic.claude-sonnet-4-5-20250929-v1:0,"
        "claude-haiku-4-5=us.anthropic.claude-haiku-4-5-20251001-v1:0"
    ),
}


@pytest.fixture(scope="session")
def bedrock_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """`make synth CDK_ARGS="-c model_provider=bedrock -c bedrock_models=…"`."""
    return _synth(tmp_path_factory.mktemp("cdk.out.bedrock"), BEDROCK_CONTEXT)
