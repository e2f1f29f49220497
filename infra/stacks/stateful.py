"""Stateful stack: everything that holds data. Retained when the stack is deleted."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from infra.components.messaging import JobQueues
from infra.components.secret import (
    AnthropicKeySecret,
    GitHubWebhookSecret,
    PageTokenSecret,
    WebhookSigningSecret,
)
from infra.components.storage import JobsData
from infra.config import InfraConfig


class StatefulStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.data = JobsData(
            self, "Data", prefix=config.prefix, session_days=config.session_retention_days
        )
        self.queues = JobQueues(self, "Queues", prefix=config.prefix)
        #: None on Bedrock: there is no Anthropic key to keep.
        self.anthropic_key = (
            AnthropicKeySecret(
                self,
                "AnthropicKey",
                name=config.secret_name,
                create=config.anthropic_secret_name is None,
            )
            if config.model_provider == "anthropic"
            else None
        )
        self.webhook_key = WebhookSigningSecret(
            self, "WebhookSigningKey", name=f"{config.prefix}/webhook-signing-key"
        )
        self.page_token_key = PageTokenSecret(
            self, "PageTokenKey", name=f"{config.prefix}/page-token-key"
        )
        #: GitHub events (issue 24): the App's webhook secret; None when they are off.
        self.github_webhook_key = (
            GitHubWebhookSecret(
                self, "GitHubWebhookSecret", name=f"{config.prefix}/github-webhook-secret"
            )
            if config.github_events
            else None
        )
