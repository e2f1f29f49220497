"""The tenants' vaults in memory (the `Vault` port; the contract: tests/contract/test_vault.py)."""

from __future__ import annotations

import threading

from claude_jobs.adapters.vault import check_value, secret_name


class MemoryVault:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.reads: list[tuple[str, str]] = []  # (tenant, name) of every `get`
        self._lock = threading.Lock()

    def put(self, tenant_id: str, name: str, value: str) -> None:
        secret_name("", tenant_id, name)
        check_value(value)
        with self._lock:
            self.values[(tenant_id, name)] = value

    def names(self, tenant_id: str) -> list[str]:
        with self._lock:
            return sorted(name for tenant, name in self.values if tenant == tenant_id)

    def delete(self, tenant_id: str, name: str) -> bool:
        secret_name("", tenant_id, name)
        with self._lock:
            return self.values.pop((tenant_id, name), None) is not None

    def get(self, tenant_id: str, name: str) -> str | None:
        secret_name("", tenant_id, name)
        with self._lock:
            self.reads.append((tenant_id, name))
            return self.values.get((tenant_id, name))
