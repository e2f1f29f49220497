"""The documents store in memory."""

from __future__ import annotations

from collections.abc import Sequence

from claude_jobs.adapters.results import document_key


class InMemoryDocumentStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_puts = False  # set it to make every put fail (an outage)

    def put(self, tenant_id: str, job_id: str, name: str, body: bytes, content_type: str) -> str:
        if self.fail_puts:
            raise ConnectionError("the documents store is unreachable")
        key = document_key(tenant_id, job_id, name)
        self.objects[key] = body
        return key

    def get(self, key: str) -> str:
        return self.objects[key].decode()

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    def download_url(self, key: str) -> str:
        return f"memory://documents/{key}"
