"""A job's artifacts in memory (the worker's `ArtifactSink` port), under the keys S3 gets."""

from __future__ import annotations

from typing import IO

from claude_jobs.adapters.results import document_key
from claude_jobs.worker.artifacts import ARTIFACTS_PREFIX_NAME, artifact_key


class MemoryArtifactSink:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def prefix(self, tenant_id: str, job_id: str) -> str:
        return document_key(tenant_id, job_id, ARTIFACTS_PREFIX_NAME)

    def put(self, tenant_id: str, job_id: str, path: str, body: IO[bytes], size: int) -> None:
        self.objects[artifact_key(self.prefix(tenant_id, job_id), path)] = body.read(size)
