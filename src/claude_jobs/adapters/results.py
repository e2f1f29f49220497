"""Large result texts in the results bucket, served through presigned URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..resources import RESULTS_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3ResultStore:
    def __init__(self, client: S3Client, bucket: str, url_seconds: int = 3600) -> None:
        self._client = client
        self._bucket = bucket
        self._url_seconds = url_seconds

    def put_text(self, job_id: str, text: str) -> str:
        key = f"{RESULTS_PREFIX}{job_id}.txt"
        self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=text.encode(),
            ContentType="text/plain; charset=utf-8",
        )
        return key

    def get_text(self, key: str) -> str:
        body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
        return body.read().decode()

    def download_url(self, key: str) -> str:
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=self._url_seconds,
        )
