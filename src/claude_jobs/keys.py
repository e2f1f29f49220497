"""API keys: random, shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

KEY_PREFIX = "cjk"


@dataclass(frozen=True)
class ApiKey:
    key_id: str  # public handle, for listing and revoking; part of the key itself
    tenant_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked: bool = False

    def is_valid(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its public id: `cjk_<key_id>_<43 random url-safe chars>`."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


class KeyStore(Protocol):
    def put(self, key: ApiKey, key_hash: str) -> None: ...

    def find_by_hash(self, key_hash: str) -> ApiKey | None: ...

    def list(self, tenant_id: str | None = None) -> list[ApiKey]: ...

    def revoke(self, key_id: str) -> ApiKey | None: ...


class ApiKeyService:
    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def create(
        self,
        tenant_id: str,
        name: str,
        now: datetime,
        expires_days: int | None = None,
        plaintext: str | None = None,
    ) -> tuple[str, ApiKey]:
        """Create a key for `tenant_id`; return its plaintext (shown once) and its record.

        `plaintext` registers a key chosen by the operator (the local stack's
        CLAUDE_JOBS_DEV_KEYS); otherwise one is generated."""
        if not tenant_id or ":" in tenant_id or len(tenant_id) > 128:
            raise ValueError("tenant must be 1-128 characters without ':'")
        if expires_days is not None and expires_days < 1:
            raise ValueError("expires_days must be at least 1")
        if plaintext is None:
            key_id, plaintext = new_key()
        else:
            if len(plaintext) < 16:
                raise ValueError("an API key must be at least 16 characters")
            key_id = hash_key(plaintext)[:12]
        record = ApiKey(
            key_id=key_id,
            tenant_id=tenant_id,
            name=name,
            created_at=now,
            expires_at=now + timedelta(days=expires_days) if expires_days else None,
        )
        self._store.put(record, hash_key(plaintext))
        return plaintext, record

    def authenticate(self, plaintext: str, now: datetime) -> ApiKey | None:
        """The key's record if it is known, not revoked and not expired; else None."""
        if not plaintext or len(plaintext) > 512:
            return None
        record = self._store.find_by_hash(hash_key(plaintext))
        return record if record is not None and record.is_valid(now) else None

    def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        return self._store.list(tenant_id)

    def revoke(self, key_id: str) -> ApiKey | None:
        return self._store.revoke(key_id)
