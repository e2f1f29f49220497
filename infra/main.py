"""Builds the app: configuration, the two stacks, and the cdk-nag rule packs."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_cdk import App, Aspects, Environment, Tags
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from infra.config import INFRA_DIR, InfraConfig
from infra.stacks.service import ServiceStack
from infra.stacks.stateful import StatefulStack

CDK_JSON = INFRA_DIR / "cdk.json"


class ClaudeJobsApp:
    """The app and its two stacks, for `app.py` and the tests."""

    def __init__(self, context: dict[str, Any] | None = None, outdir: str | None = None) -> None:
        # cdk.json's feature flags apply whether the CDK CLI or a test builds the app; context
        # from the CLI (`-c key=value`) still overrides them.
        flags = json.loads(CDK_JSON.read_text())["context"]
        self.app = App(context={**flags, **(context or {})}, outdir=outdir)
        self.config = InfraConfig.load(self.app.node.try_get_context)
        env = _environment()
        name = "ClaudeJobs" + "".join(p.capitalize() for p in self.config.stage.split("-"))
        self.stateful = StatefulStack(
            self.app,
            f"{name}-Stateful",
            config=self.config,
            env=env,
            description="claude-jobs stateful resources (tables, bucket, queues, secret)",
            termination_protection=True,
        )
        self.service = ServiceStack(
            self.app,
            f"{name}-Service",
            config=self.config,
            stateful=self.stateful,
            env=env,
            description="claude-jobs API, functions and monitoring",
        )
        Tags.of(self.app).add("app", self.config.app_name)
        Tags.of(self.app).add("stage", self.config.stage)
        Aspects.of(self.app).add(AwsSolutionsChecks(verbose=True))
        Aspects.of(self.app).add(ServerlessChecks(verbose=True))


def _environment() -> Environment | None:
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = os.environ.get("CDK_DEFAULT_REGION")
    if account and region:
        return Environment(account=account, region=region)
    return None


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> ClaudeJobsApp:
    return ClaudeJobsApp(context, outdir)
