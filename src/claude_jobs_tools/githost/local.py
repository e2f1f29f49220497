"""The stand-in in the local stack (`claude-jobs dev --githost`): a demo repository, a token
that reaches it, and each registered tenant connected with that token (in the emulated Secrets
Manager, as `claude-jobs github connect` stores it)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from claude_jobs.github.credentials import SecretsManagerCredentials, StoredCredential

from .server import GitHost

DEMO_REPOSITORY = "demo/hello"


def connect_local(host: GitHost, secrets_client: Any, prefix: str, tenants: Iterable[str]) -> str:
    """Give the started stand-in its demo repository and a token for it, and connect every
    tenant with that token; returns the token."""
    if not (host.root / f"{DEMO_REPOSITORY}.git").exists():
        host.create_repository(DEMO_REPOSITORY)
    token = host.add_token("ghp_local_" + secrets.token_urlsafe(18), {DEMO_REPOSITORY})
    store = SecretsManagerCredentials(secrets_client, prefix)
    for tenant in tenants:
        store.put(tenant, StoredCredential(token=token))
    return token
