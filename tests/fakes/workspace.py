"""Carried working directories in memory (the worker's `WorkspaceStore` port)."""

from __future__ import annotations

from typing import IO


class MemoryWorkspaceStore:
    def __init__(self) -> None:
        self.archives: dict[tuple[str, str], bytes] = {}

    def save(self, tenant_id: str, job_id: str, body: IO[bytes], size: int) -> None:
        self.archives[(tenant_id, job_id)] = body.read(size)

    def load(self, tenant_id: str, job_id: str, into: IO[bytes]) -> bool:
        data = self.archives.get((tenant_id, job_id))
        if data is None:
            return False
        into.write(data)
        return True

    def delete(self, tenant_id: str, job_id: str) -> None:
        self.archives.pop((tenant_id, job_id), None)
