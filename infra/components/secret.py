"""The Anthropic API key secret: created without a value, or imported by name.

The value is never in a template: an operator sets it once after the first deploy
(`aws secretsmanager put-secret-value`, see docs/infra.md). Only the worker may read it.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.nag import Ack, acknowledge


class AnthropicKeySecret(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, name: str, create: bool = True
    ) -> None:
        super().__init__(scope, construct_id)
        if create:
            # The L1 resource: the L2 `Secret` always generates a random value, and a secret
            # created with neither `SecretString` nor `GenerateSecretString` has no value.
            cfn = secretsmanager.CfnSecret(
                self,
                "Resource",
                name=name,
                description="Anthropic API key used by the claude-jobs worker. Set its value "
                "with put-secret-value; it never appears in a template.",
            )
            cfn.apply_removal_policy(RemovalPolicy.RETAIN)
            self.secret: secretsmanager.ISecret = secretsmanager.Secret.from_secret_complete_arn(
                self, "Imported", cfn.ref
            )
            #: What the worker's ANTHROPIC_SECRET_ID names: the full ARN, or the imported name.
            self.secret_id: str = cfn.ref
            #: The ARN to grant on.
            self.policy_arn: str = cfn.ref
            acknowledge(
                self,
                Ack(
                    "AwsSolutions-SMG4",
                    "A third-party API key: Anthropic issues it, so Secrets Manager cannot "
                    "rotate it; operators rotate it by putting a new value (docs/infra.md).",
                ),
            )
        else:
            self.secret = secretsmanager.Secret.from_secret_name_v2(self, "Imported", name)
            self.secret_id = name
            # A name-imported secret's ARN lacks the random suffix Secrets Manager appends.
            self.policy_arn = f"{self.secret.secret_arn}-??????"


class GeneratedSecret(Construct):
    """A key CloudFormation generates (64 characters, never in a template), retained with the
    stack, whose rotation is an operator's deliberate act: each subclass says why."""

    description = ""
    #: Why no rotation schedule (cdk-nag AwsSolutions-SMG4).
    rotation = ""

    def __init__(self, scope: Construct, construct_id: str, *, name: str) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Resource",
            secret_name=name,
            description=self.description,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(self, Ack("AwsSolutions-SMG4", self.rotation))


class WebhookSigningSecret(GeneratedSecret):
    """The master key webhook signatures derive from (per tenant: HMAC(master, tenant)).
    Only the notifier reads it."""

    description = "Master key of claude-jobs webhook signatures"
    rotation = (
        "Receivers verify with secrets derived from this key; rotating it is a "
        "deliberate, announced operator action, not a scheduled one."
    )


class PageTokenSecret(GeneratedSecret):
    """The key that signs `GET /v1/jobs` page tokens (issue 20): without it the MAC's key is
    public and a cursor could be forged. Only the status function reads it."""

    description = "Key of claude-jobs list page tokens"
    rotation = (
        "Rotating it only ends the page tokens in flight (callers list again from the "
        "start); an operator puts a new value when needed, no schedule is required."
    )


class GitHubWebhookSecret(GeneratedSecret):
    """The secret GitHub signs the App's webhook deliveries with (`X-Hub-Signature-256`):
    generated here, copied by the operator into the App's settings. Only the submit function
    (which answers `POST /v1/github/events`) reads it."""

    description = "Webhook secret of the claude-jobs GitHub App"
    rotation = (
        "GitHub holds a copy in the App's settings: rotating it is a deliberate "
        "operator action done on both sides at once, not a scheduled one."
    )
