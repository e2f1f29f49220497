"""A job's artifacts in S3 (the worker's `ArtifactSink` port)."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

from ..worker.artifacts import ARTIFACTS_PREFIX_NAME, artifact_key
from .results import document_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3ArtifactSink:
    """Artifacts in the results bucket, beside the job's other documents:
    `tenant/<tenant>/jobs/<job>/artifacts/out/…`."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def prefix(self, tenant_id: str, job_id: str) -> str:
        return document_key(tenant_id, job_id, ARTIFACTS_PREFIX_NAME)

    def put(self, tenant_id: str, job_id: str, path: str, body: IO[bytes], size: int) -> None:
        self._client.put_object(
            Bucket=self._bucket,
            Key=artifact_key(self.prefix(tenant_id, job_id), path),
            Body=body,
            ContentLength=size,
            ContentType="application/octet-stream",
        )
