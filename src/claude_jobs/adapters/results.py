"""Job documents in the results bucket: large prompts, schemas and results, under
tenant-scoped keys (`tenant/<tenant>/jobs/<job>/<name>`), served through presigned URLs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..resources import DOCUMENTS_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def document_key(tenant_id: str, job_id: str, name: str) -> str:
    return f"{DOCUMENTS_PREFIX}{quote(tenant_id, safe='')}/jobs/{quote(job_id, safe='')}/{name}"


class S3DocumentStore:
    def __init__(self, client: S3Client, bucket: str, url_seconds: int = 3600) -> None:
        self._client = client
        self._bucket = bucket
        self._url_seconds = url_seconds

    def put(self, tenant_id: str, job_id: str, name: str, body: bytes, content_type: str) -> str:
        key = document_key(tenant_id, job_id, name)
        self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=content_type)
        return key

    def get(self, key: str) -> str:
        body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
        return body.read().decode()

    def delete(self, keys: Sequence[str]) -> None:
        self._client.delete_objects(
            Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )

    def download_url(self, key: str) -> str:
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=self._url_seconds,
        )
