"""Files (issue 13): uploads in, artifacts out (mixed into the Client)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ._core import ApiConnectionError, ApiError, _problem_from


class _Files:
    """Files (issue 13): uploads in, artifacts out. Mixed into :class:`Client`."""

    _timeout: float
    #: The client's `_request` (the API's answers, errors raised as ApiError).
    _request: Callable[..., httpx.Response]

    def create_upload(self, filename: str, size_bytes: int) -> dict[str, Any]:
        """`POST /v1/uploads`: `{upload_id, upload_url, method, headers, expires_at, …}`."""
        body = {"filename": filename, "size_bytes": size_bytes}
        upload: dict[str, Any] = self._request("POST", "/v1/uploads", json=body).json()
        return upload

    def upload(self, path: str | os.PathLike[str], *, filename: str | None = None) -> str:
        """Upload a local file for later jobs (create the upload, then PUT its bytes to the
        presigned URL); return its upload id. `filename` is its name in a job's working
        directory (default: the file's own name)."""
        from pathlib import Path

        source = Path(path)
        size = source.stat().st_size
        upload = self.create_upload(filename or source.name, size)
        with source.open("rb") as body:
            self._put(upload, body)
        return str(upload["upload_id"])

    def upload_bytes(self, data: bytes, filename: str) -> str:
        """Upload `data` as a file named `filename`; return its upload id."""
        upload = self.create_upload(filename, len(data))
        self._put(upload, data)
        return str(upload["upload_id"])

    def _put(self, upload: Mapping[str, Any], body: Any) -> None:
        try:
            # A presigned URL carries its own authorization: send no API key with it, and
            # exactly the headers it was signed with.
            response = httpx.request(
                upload.get("method", "PUT"),
                upload["upload_url"],
                content=body,
                headers=dict(upload.get("headers") or {}),
                timeout=max(self._timeout, 300.0),
            )
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"cannot upload: {exc}") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _problem_from(response), response.headers)

    def download_artifacts(
        self, job: Mapping[str, Any], directory: str | os.PathLike[str]
    ) -> list[str]:
        """Download a finished job's artifacts into `directory` (each `out/a/b.txt` as
        `directory/a/b.txt`); return the paths written. Paths are checked: nothing is written
        outside `directory` nor through a link in it; an unsafe path raises ValueError."""
        from pathlib import Path

        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        written: list[str] = []
        for artifact in job.get("artifacts") or []:
            target = _artifact_target(root, str(artifact.get("path", "")))
            url = artifact.get("download_url")
            if not url:
                raise ValueError(f"{artifact.get('path')}: no download_url (is the job terminal?)")
            _download(url, target, int(artifact.get("size_bytes", -1)), self._timeout)
            written.append(str(target))
        return written


def _artifact_target(root: Any, path: str) -> Any:
    """Where an artifact's `out/…` path goes under `root`, refusing anything that could leave
    it: absolute paths, empty, `.` or `..` parts, backslashes, NUL, and links on the way."""
    parts = path.split("/")
    if parts[:1] == ["out"]:
        parts = parts[1:]
    if not parts or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise ValueError(f"refusing the unsafe artifact path {path!r}")
    target = root
    for part in parts[:-1]:
        target = target / part
        if target.is_symlink():
            raise ValueError(f"refusing to write {path!r} through the link {target}")
        target.mkdir(exist_ok=True)
    target = target / parts[-1]
    if target.is_symlink() or target.is_dir():
        raise ValueError(f"refusing to overwrite {target} (a link or a directory)")
    return target


def _download(url: str, target: Any, size: int, timeout: float) -> None:
    import tempfile

    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    try:
        received = 0
        with os.fdopen(fd, "wb") as sink:
            try:
                with httpx.stream("GET", url, timeout=max(timeout, 300.0)) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise ApiError(
                            response.status_code, _problem_from(response), response.headers
                        )
                    for chunk in response.iter_bytes():
                        received += len(chunk)
                        sink.write(chunk)
            except httpx.TransportError as exc:
                raise ApiConnectionError(f"cannot download {target.name}: {exc}") from exc
        if size >= 0 and received != size:
            raise ApiConnectionError(
                f"{target.name}: received {received} bytes, the job lists {size}"
            )
        os.replace(temporary, target)  # replaces a name, never follows a link
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
