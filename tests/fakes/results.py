"""The result store in memory."""

from __future__ import annotations


class InMemoryResultStore:
    def __init__(self) -> None:
        self.objects: dict[str, str] = {}

    def put_text(self, job_id: str, text: str) -> str:
        key = f"results/{job_id}.txt"
        self.objects[key] = text
        return key

    def get_text(self, key: str) -> str:
        return self.objects[key]

    def download_url(self, key: str) -> str:
        return f"memory://results/{key}"
