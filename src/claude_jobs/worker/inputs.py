"""Put a job's input objects (from an S3 trigger, or uploads) into its workspace, for Read
and Grep.

File names come from the object key's last segment, reduced to a safe character set
(`triggers.inputs.safe_filename`: the trigger names the file in the prompt too), so a key
such as `../../etc/passwd` or `a/.bashrc` can only ever name a plain file directly inside the
workspace. Files are created exclusively (no following a planted symlink) and the download is
capped in bytes whatever the object claims its size to be.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..errors import ClaudeJobsError
from ..models import InputObject
from ..triggers.inputs import safe_filename

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from ..models import Job
    from .ports import InputFetcher
    from .sandbox import Sandbox

DEFAULT_MAX_INPUT_BYTES = 100 * 1024 * 1024
_CHUNK = 1024 * 1024


class InputUnavailableError(ClaudeJobsError):
    """An input object of the job could not be placed in its workspace."""

    code = "input_unavailable"


def _unique(directory: Path, name: str, taken: set[str]) -> str:
    if name not in taken and not os.path.lexists(directory / name):
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    for n in range(2, 10_000):
        candidate = f"{stem}-{n}" + (f".{ext}" if ext else "")
        if candidate not in taken and not os.path.lexists(directory / candidate):
            return candidate
    raise InputUnavailableError("too many inputs with the same name")


def _describe(item: InputObject) -> str:
    if item.upload_id is not None:
        return f"upload {item.upload_id} ({item.filename})"
    return f"s3://{item.bucket}/{item.key}"


def _placed_name(item: InputObject, workspace: Path, taken: set[str]) -> str:
    """An upload keeps its filename exactly (checked again here: the job record is the only
    source); two inputs of one job never share it. A trigger's object gets a safe name made
    from its key, made unique."""
    if item.upload_id is None:
        return _unique(workspace, safe_filename(item.key), taken)
    from ..filenames import filename_problem

    name = item.filename or ""
    problem = filename_problem(name)
    if problem is not None:
        raise InputUnavailableError(f"upload {item.upload_id}: its filename {problem}")
    if name in taken or os.path.lexists(workspace / name):
        raise InputUnavailableError(f"upload {item.upload_id}: {name!r} is already taken")
    return name


def materialize_inputs(
    s3_client: S3Client,
    inputs: Sequence[InputObject],
    workspace_dir: Path | str,
    *,
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> list[Path]:
    """Download every input into `workspace_dir`; return the files written, in order.

    Raises InputUnavailableError when an object is missing, unreadable or larger than
    `max_bytes` in total (partial files are removed). Other AWS faults propagate."""
    workspace = Path(workspace_dir).resolve(strict=True)
    written: list[Path] = []
    taken: set[str] = set()
    budget = max_bytes
    for item in inputs:
        name = _placed_name(item, workspace, taken)
        taken.add(name)
        target = workspace / name
        if target.parent != workspace:  # unreachable by construction; kept as a guard
            raise InputUnavailableError(f"refusing to write outside the workspace: {name}")
        if item.size > budget:
            raise InputUnavailableError(
                f"s3://{item.bucket}/{item.key} ({item.size} bytes) exceeds the input limit"
            )
        kwargs = {"Bucket": item.bucket, "Key": item.key}
        if item.version_id:
            kwargs["VersionId"] = item.version_id
        try:
            body = s3_client.get_object(**kwargs)["Body"]  # type: ignore[arg-type]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchVersion", "404", "AccessDenied", "403"):
                raise InputUnavailableError(f"{_describe(item)} is not readable ({code})") from None
            raise
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(target, flags, 0o600)
        # An upload may not be larger than it was declared (its PUT was signed for that size;
        # an emulator or a later PUT may not hold to it).
        item_left = item.size if item.upload_id is not None else None
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := body.read(_CHUNK):
                    budget -= len(chunk)
                    if budget < 0:
                        raise InputUnavailableError(
                            f"{_describe(item)} exceeds the input limit "
                            f"(INPUTS_MAX_BYTES: {max_bytes} bytes for a job's inputs together)"
                        )
                    if item_left is not None:
                        item_left -= len(chunk)
                        if item_left < 0:
                            raise InputUnavailableError(
                                f"{_describe(item)} is larger than the {item.size} bytes "
                                "declared when it was created"
                            )
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            body.close()
        written.append(target)
    return written


def place_inputs(fetch: InputFetcher, job: Job, sandbox: Sandbox) -> str | None:
    """Place the job's inputs in its sandbox's working directory, handed to the agent's user;
    the problem when one is unavailable (the job then fails `input_unavailable`)."""
    try:
        for path in fetch(job, sandbox.work_dir):
            sandbox.give(path)
    except InputUnavailableError as exc:
        return str(exc)
    return None
