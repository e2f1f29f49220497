"""AWS adapters of the trigger ports: the inbox objects on S3 and the dead-letter queue on SQS."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..clock import iso, utcnow
from .trigger_service import DeadLetter, ObjectInfo, ObjectMissingError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

#: SQS takes 256 KiB per message; an event larger than this is kept as a truncated excerpt.
MAX_EVENT_CHARS = 200_000
_MISSING = {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "403", "AccessDenied"}


class S3InboxObjects:
    def __init__(self, client: S3Client) -> None:
        self._client = client

    def _args(self, bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            args["VersionId"] = version_id
        return args

    def head(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        try:
            head = self._client.head_object(**self._args(bucket, key, version_id))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ObjectMissingError(code) from None
            raise
        return ObjectInfo(
            size=int(head.get("ContentLength", 0)),
            etag=str(head.get("ETag", "")).strip('"'),
            version_id=head.get("VersionId"),
        )

    def read(self, bucket: str, key: str, version_id: str | None, max_bytes: int) -> bytes:
        args = self._args(bucket, key, version_id)
        args["Range"] = f"bytes=0-{max_bytes - 1}"
        try:
            body = self._client.get_object(**args)["Body"]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ObjectMissingError(code) from None
            if code == "InvalidRange":  # an empty object
                return b""
            raise
        with body:
            return body.read(max_bytes)


def dead_letter_body(letter: DeadLetter, received_at: str) -> str:
    body: dict[str, Any] = {
        "reason": letter.reason,
        "kind": letter.kind,
        "trigger": letter.trigger,
        "errors": letter.errors,
        "received_at": received_at,
        "event": letter.event,
    }
    text = json.dumps(body, default=str, ensure_ascii=False)
    if len(text) > MAX_EVENT_CHARS:
        excerpt = json.dumps(letter.event, default=str, ensure_ascii=False)[: MAX_EVENT_CHARS // 2]
        body["event"] = None
        body["event_excerpt"] = excerpt
        body["event_truncated"] = True
        text = json.dumps(body, default=str, ensure_ascii=False)
    return text


class SqsDeadLetters:
    """Rejected trigger events, each with its reason (body and message attribute)."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        if not queue_url:
            raise ValueError("TRIGGER_DLQ_URL is not set: rejected events would be lost")
        self._client = client
        self._url = queue_url

    def send(self, letter: DeadLetter) -> None:
        self._client.send_message(
            QueueUrl=self._url,
            MessageBody=dead_letter_body(letter, iso(utcnow())),
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": letter.reason[:1000]},
                "kind": {"DataType": "String", "StringValue": letter.kind},
                **(
                    {"trigger": {"DataType": "String", "StringValue": letter.trigger}}
                    if letter.trigger
                    else {}
                ),
            },
        )
