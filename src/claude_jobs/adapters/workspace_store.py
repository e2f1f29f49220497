"""Long jobs' carried working directories in S3 (the worker's `WorkspaceStore` port)."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

from ..worker.workspace import WORKSPACE_NAME
from .results import document_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3WorkspaceStore:
    """The archive in the results bucket, beside the job's other documents."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def _key(self, tenant_id: str, job_id: str) -> str:
        return document_key(tenant_id, job_id, WORKSPACE_NAME)

    def save(self, tenant_id: str, job_id: str, body: IO[bytes], size: int) -> None:
        self._client.put_object(
            Bucket=self._bucket,
            Key=self._key(tenant_id, job_id),
            Body=body,
            ContentLength=size,
            ContentType="application/gzip",
        )

    def load(self, tenant_id: str, job_id: str, into: IO[bytes]) -> bool:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=self._key(tenant_id, job_id))
        except self._client.exceptions.NoSuchKey:
            return False
        body = answer["Body"]
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            into.write(chunk)
        return True

    def delete(self, tenant_id: str, job_id: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=self._key(tenant_id, job_id))
