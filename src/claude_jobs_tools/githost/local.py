"""The stand-in in the local stack (`claude-jobs dev --githost`): a demo repository, a GitHub
App it hosts (a key pair generated at start; one installation per tenant, each reaching the
demo repository), a collaborator with write access, a generated webhook secret, and each
registered tenant connected by its installation id (in the emulated Secrets Manager, with the
reverse lookup, as `claude-jobs github connect --installation-id` stores them): GitHub events
(`POST /v1/github/events`) work end to end, and so do repository jobs submitted over the API."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from claude_jobs.github.credentials import SecretsManagerCredentials, StoredCredential

from .server import GitHost, HostedApp

DEMO_REPOSITORY = "demo/hello"
#: The hosted App's id, and the first installation id (the tenants' follow in their order).
APP_ID = "1"
FIRST_INSTALLATION = 101
#: The collaborator whose comments may start jobs (write access on the demo repository).
COLLABORATOR = "dev"
#: Where the App's private key and the webhook secret are kept (the emulated Secrets Manager).
APP_KEY_SECRET_ID = "claude-jobs/github-app-key"  # noqa: S105 - a name, not a secret
WEBHOOK_SECRET_ID = "claude-jobs/github-webhook-secret"  # noqa: S105 - a name


@dataclass
class LocalApp:
    """The GitHub App the stand-in hosts, before the tenants are known."""

    hosted: HostedApp
    private_key: str  # PEM (PKCS#8): goes into the emulated Secrets Manager only

    def settings(self) -> dict[str, str]:
        """The stack's settings that name the App and the webhook secret."""
        return {
            "github_app_id": self.hosted.app_id,
            "github_app_key_secret_id": APP_KEY_SECRET_ID,
            "github_webhook_secret_id": WEBHOOK_SECRET_ID,
        }


@dataclass
class Connected:
    """What the banner shows: tenant → installation id (never a secret's value)."""

    installations: dict[str, int] = field(default_factory=dict)
    webhook_secret_id: str = WEBHOOK_SECRET_ID
    collaborator: str = COLLABORATOR
    repository: str = DEMO_REPOSITORY


def rsa_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair for a GitHub App: (private key PEM, public key PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def local_app() -> LocalApp:
    """A GitHub App with a freshly generated RSA key pair (nothing of it is kept on disk)."""
    private, public = rsa_key_pair()
    return LocalApp(HostedApp(APP_ID, public), private)


def connect_local(
    host: GitHost,
    app: LocalApp,
    secrets_client: Any,
    *,
    prefix: str,
    installation_prefix: str,
    tenants: Iterable[str],
) -> Connected:
    """Give the started stand-in its demo repository and collaborator, store the App's key and
    a generated webhook secret, and connect every tenant through an installation of its own."""
    if not (host.root / f"{DEMO_REPOSITORY}.git").exists():
        host.create_repository(DEMO_REPOSITORY)
    host.collaborators.setdefault(DEMO_REPOSITORY, {})[COLLABORATOR] = "write"
    _put(secrets_client, APP_KEY_SECRET_ID, app.private_key, "the local GitHub App's key")
    _put(
        secrets_client,
        WEBHOOK_SECRET_ID,
        secrets.token_urlsafe(32),
        "the local GitHub App's webhook secret",
    )
    store = SecretsManagerCredentials(secrets_client, prefix, installation_prefix)
    connected = Connected()
    for number, tenant in enumerate(tenants, start=FIRST_INSTALLATION):
        app.hosted.installations[number] = {DEMO_REPOSITORY}
        store.put(tenant, StoredCredential(installation_id=number))
        connected.installations[tenant] = number
    return connected


def _put(client: Any, name: str, value: str, description: str) -> None:
    client.create_secret(Name=name, SecretString=value, Description=f"claude-jobs: {description}")
