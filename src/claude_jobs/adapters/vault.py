"""The tenants' vaults in Secrets Manager: entry NAME of tenant T is the secret
`<VAULT_SECRET_PREFIX>T/NAME` (default prefix `claude-jobs/vault/`), tagged with its tenant.

The worker's role may read only secrets under that prefix (infra/components); the operator's
`claude-jobs vault` writes them. Values are never logged, returned or copied elsewhere.
"""

from __future__ import annotations

import re
from typing import Any

from ..mcp_models import MAX_VAULT_VALUE_CHARS, VAULT_NAME_PATTERN

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$")
_NAME = re.compile(VAULT_NAME_PATTERN)


class VaultNameError(ValueError):
    """A tenant id or an entry name that cannot name a vault entry."""


def secret_name(prefix: str, tenant_id: str, name: str) -> str:
    """The secret that holds a tenant's entry; raises VaultNameError for an unusable name."""
    if not _TENANT.fullmatch(tenant_id):
        raise VaultNameError(f"{tenant_id!r} cannot name a vault")
    if not _NAME.fullmatch(name):
        raise VaultNameError(f"{name!r} is not a vault entry name ({VAULT_NAME_PATTERN})")
    return f"{prefix}{tenant_id}/{name}"


def check_value(value: str) -> None:
    if not value or len(value) > MAX_VAULT_VALUE_CHARS:
        raise ValueError(f"a vault value is 1 to {MAX_VAULT_VALUE_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("a vault value is sent as a header: no control characters")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class SecretsManagerVault:
    def __init__(self, client: Any, prefix: str = "claude-jobs/vault/") -> None:
        self._client = client
        self._prefix = prefix

    def put(self, tenant_id: str, name: str, value: str) -> None:
        secret = secret_name(self._prefix, tenant_id, name)
        check_value(value)
        try:
            self._client.create_secret(
                Name=secret,
                SecretString=value,
                Description="claude-jobs vault entry (an MCP server's credential)",
                Tags=[
                    {"Key": "claude-jobs:tenant", "Value": tenant_id},
                    {"Key": "claude-jobs:vault-entry", "Value": name},
                ],
            )
        except Exception as exc:
            if _code(exc) != "ResourceExistsException":
                raise
            self._client.put_secret_value(SecretId=secret, SecretString=value)

    def names(self, tenant_id: str) -> list[str]:
        start = secret_name(self._prefix, tenant_id, "x")[:-1]  # `<prefix><tenant>/`
        found: set[str] = set()
        paginator = self._client.get_paginator("list_secrets")
        for page in paginator.paginate(Filters=[{"Key": "name", "Values": [start]}]):
            for secret in page.get("SecretList", []):
                full = str(secret.get("Name", ""))
                rest = full[len(start) :]
                if full.startswith(start) and _NAME.fullmatch(rest):
                    found.add(rest)
        return sorted(found)

    def delete(self, tenant_id: str, name: str) -> bool:
        secret = secret_name(self._prefix, tenant_id, name)
        try:  # a forced delete of no secret succeeds: look first
            self._client.describe_secret(SecretId=secret)
            self._client.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    def get(self, tenant_id: str, name: str) -> str | None:
        secret = secret_name(self._prefix, tenant_id, name)
        try:
            answer = self._client.get_secret_value(SecretId=secret)
        except Exception as exc:
            if _code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
                return None  # none, or deleted (InvalidRequest: scheduled for deletion)
            raise
        value = answer.get("SecretString")
        return value if isinstance(value, str) and value else None
