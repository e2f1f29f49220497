"""Uploads in the results bucket: `uploads/<tenant>/<upload_id>/upload.json` (the record the
service writes) and `.../content` (what the caller PUTs through the presigned URL). The
bucket's lifecycle rule on `uploads/` deletes both (resources.UPLOADS_EXPIRY_DAYS)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import quote

from botocore.exceptions import ClientError

from ..resources import UPLOADS_PREFIX
from ..uploads import CONTENT_TYPE, PresignedPut, UploadRecord

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = ("NoSuchKey", "404", "NotFound")


def upload_prefix(tenant_id: str, upload_id: str) -> str:
    return f"{UPLOADS_PREFIX}{quote(tenant_id, safe='')}/{quote(upload_id, safe='')}/"


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code", "") in _MISSING


class S3UploadStore:
    """`client` reads and writes records; `presigner` signs the PUT URLs (SigV4, so that the
    signature binds the Content-Length)."""

    def __init__(self, client: S3Client, presigner: S3Client, bucket: str) -> None:
        if not bucket:
            raise ValueError("RESULTS_BUCKET is not set: uploads need a bucket")
        self._client = client
        self._presigner = presigner
        self.bucket = bucket

    def content_key(self, tenant_id: str, upload_id: str) -> str:
        return upload_prefix(tenant_id, upload_id) + "content"

    def _record_key(self, tenant_id: str, upload_id: str) -> str:
        return upload_prefix(tenant_id, upload_id) + "upload.json"

    def put_record(self, record: UploadRecord) -> None:
        self._client.put_object(
            Bucket=self.bucket,
            Key=self._record_key(record.tenant_id, record.upload_id),
            Body=json.dumps(record.to_json()).encode(),
            ContentType="application/json",
        )

    def get_record(self, tenant_id: str, upload_id: str) -> UploadRecord | None:
        try:
            body = self._client.get_object(
                Bucket=self.bucket, Key=self._record_key(tenant_id, upload_id)
            )["Body"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        try:
            return UploadRecord.from_json(json.loads(body.read()))
        finally:
            body.close()

    def content_size(self, tenant_id: str, upload_id: str) -> int | None:
        try:
            head = self._client.head_object(
                Bucket=self.bucket, Key=self.content_key(tenant_id, upload_id)
            )
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def presign_put(
        self, tenant_id: str, upload_id: str, size_bytes: int, seconds: int
    ) -> PresignedPut:
        url = self._presigner.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.content_key(tenant_id, upload_id),
                "ContentLength": size_bytes,
                "ContentType": CONTENT_TYPE,
            },
            ExpiresIn=seconds,
            HttpMethod="PUT",
        )
        return PresignedPut(
            url=url,
            headers={"Content-Type": CONTENT_TYPE, "Content-Length": str(size_bytes)},
        )
