"""Uploads: files a caller sends for its jobs (`POST /v1/uploads`, then `inputs` on a job).

An upload is created with its filename and exact size; the answer is a presigned PUT whose
signature binds the object key (tenant-scoped: `uploads/<tenant>/<upload_id>/content`) and the
size. Its record (`upload.json` beside the content) is written by the service, never by the
caller. A job's `inputs` are resolved at submit against the submitting tenant's own uploads
only, so another tenant's upload id is as unknown as one never created; each must be uploaded,
unexpired and no larger than declared. The worker places each under its filename and checks
the size again while it downloads (`triggers/inputs.py`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from .clock import utcnow
from .errors import FieldError, RequestValidationError
from .filenames import filename_problem
from .models import InputObject, UploadRequest, UploadResponse
from .resources import UPLOAD_TTL_SECONDS
from .settings import Settings

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
#: The content type the presigned PUT is signed for (the bytes are opaque).
CONTENT_TYPE = "application/octet-stream"


def new_upload_id() -> str:
    """`upl_` and 26 random characters (134 bits): unguessable, and safe in an object key."""
    return "upl_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


@dataclass(frozen=True)
class UploadRecord:
    upload_id: str
    tenant_id: str
    filename: str
    size_bytes: int
    created_at: datetime
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "tenant_id": self.tenant_id,
            "filename": self.filename,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadRecord:
        return cls(
            upload_id=str(data["upload_id"]),
            tenant_id=str(data["tenant_id"]),
            filename=str(data["filename"]),
            size_bytes=int(data["size_bytes"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )


@dataclass(frozen=True)
class PresignedPut:
    url: str
    headers: dict[str, str]


class UploadStore(Protocol):
    """Where uploads live (the adapter: the results bucket under `uploads/`)."""

    bucket: str

    def content_key(self, tenant_id: str, upload_id: str) -> str: ...

    def put_record(self, record: UploadRecord) -> None: ...

    def get_record(self, tenant_id: str, upload_id: str) -> UploadRecord | None:
        """The tenant's upload record, or None (unknown, another tenant's, or deleted)."""

    def content_size(self, tenant_id: str, upload_id: str) -> int | None:
        """The uploaded content's size, or None when nothing was uploaded (yet)."""

    def presign_put(
        self, tenant_id: str, upload_id: str, size_bytes: int, seconds: int
    ) -> PresignedPut: ...


class UploadService:
    def __init__(
        self,
        store: UploadStore,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_upload_id,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._new_id = new_id

    def parse_request(self, body: Any) -> UploadRequest:
        """A `POST /v1/uploads` body within the deployment's size cap, or one
        RequestValidationError listing every problem."""
        from pydantic import ValidationError

        errors: list[FieldError] = []
        request: UploadRequest | None = None
        try:
            request = UploadRequest.model_validate(body)
        except ValidationError as exc:
            errors = [
                FieldError(("body", *err["loc"]), err["msg"])
                for err in exc.errors(include_url=False, include_input=False)
            ]
        size = body.get("size_bytes") if isinstance(body, Mapping) else None
        cap = self._settings.upload_max_bytes
        if isinstance(size, int) and not isinstance(size, bool) and size > cap:
            errors.append(
                FieldError(
                    ("body", "size_bytes"),
                    f"must be at most {cap} bytes (the deployment's UPLOAD_MAX_BYTES)",
                )
            )
        if errors or request is None:
            raise RequestValidationError("The upload request is not valid.", errors)
        return request

    def create(self, tenant_id: str, request: UploadRequest) -> UploadResponse:
        now = self._clock()
        upload_id = self._new_id()
        record = UploadRecord(
            upload_id=upload_id,
            tenant_id=tenant_id,
            filename=request.filename,
            size_bytes=request.size_bytes,
            created_at=now,
            expires_at=now + timedelta(seconds=UPLOAD_TTL_SECONDS),
        )
        self._store.put_record(record)
        seconds = min(self._settings.presigned_url_seconds, UPLOAD_TTL_SECONDS)
        put = self._store.presign_put(tenant_id, upload_id, request.size_bytes, seconds)
        return UploadResponse(
            upload_id=upload_id,
            upload_url=put.url,
            method="PUT",
            headers=put.headers,
            expires_at=record.expires_at,
            upload_url_expires_at=now + timedelta(seconds=seconds),
            filename=request.filename,
            size_bytes=request.size_bytes,
        )

    def resolve(self, tenant_id: str, upload_ids: Sequence[str]) -> list[InputObject]:
        """The job inputs for `upload_ids` (the tenant's own, uploaded, unexpired, unique
        filenames, within INPUTS_MAX_BYTES together); otherwise one RequestValidationError
        naming every bad entry of `inputs`."""
        if not upload_ids:
            return []
        errors: list[FieldError] = []
        inputs: list[InputObject] = []
        seen_ids: dict[str, int] = {}
        seen_names: dict[str, int] = {}
        now = self._clock()
        total = 0
        for i, upload_id in enumerate(upload_ids):
            loc = ("body", "inputs", i)
            if upload_id in seen_ids:
                errors.append(FieldError(loc, f"repeats inputs[{seen_ids[upload_id]}]"))
                continue
            seen_ids[upload_id] = i
            record = self._store.get_record(tenant_id, upload_id)
            if record is None or record.tenant_id != tenant_id:
                errors.append(
                    FieldError(loc, f"no upload {upload_id} (unknown to this tenant, or expired)")
                )
                continue
            if record.expires_at <= now:
                errors.append(
                    FieldError(
                        loc, f"upload {upload_id} expired at {record.expires_at.isoformat()}"
                    )
                )
                continue
            problem = filename_problem(record.filename)
            if problem:  # unreachable for records this service wrote; kept as a guard
                errors.append(FieldError(loc, f"upload {upload_id}: filename {problem}"))
                continue
            if record.filename in seen_names:
                errors.append(
                    FieldError(
                        loc,
                        f"filename {record.filename!r} is also the name of "
                        f"inputs[{seen_names[record.filename]}]; names in a job must be unique",
                    )
                )
                continue
            seen_names[record.filename] = i
            size = self._store.content_size(tenant_id, upload_id)
            if size is None:
                errors.append(
                    FieldError(
                        loc,
                        f"upload {upload_id} ({record.filename}) has no file yet: "
                        "PUT it to its upload_url first",
                    )
                )
                continue
            if size != record.size_bytes:
                errors.append(
                    FieldError(
                        loc,
                        f"upload {upload_id} ({record.filename}) is {size} bytes, "
                        f"{record.size_bytes} were declared",
                    )
                )
                continue
            total += record.size_bytes
            inputs.append(
                InputObject(
                    bucket=self._store.bucket,
                    key=self._store.content_key(tenant_id, upload_id),
                    size=record.size_bytes,
                    upload_id=upload_id,
                    filename=record.filename,
                )
            )
        cap = self._settings.inputs_max_bytes
        if total > cap:
            errors.append(
                FieldError(
                    ("body", "inputs"),
                    f"the inputs are {total} bytes together; at most {cap} "
                    "(the deployment's INPUTS_MAX_BYTES)",
                )
            )
        if errors:
            raise RequestValidationError("The job's inputs are not usable.", errors)
        return inputs
