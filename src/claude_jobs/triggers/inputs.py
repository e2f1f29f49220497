"""The name an S3 trigger's object gets in a job's working directory.

The worker places the objects (`claude_jobs.worker.inputs`, in the worker image only: not
imported from here but on use of one of its names, so that the trigger function, which runs on
the shared layer without the worker, can import this module).
"""

from __future__ import annotations

import re
from typing import Any

MAX_NAME_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MOVED = ("DEFAULT_MAX_INPUT_BYTES", "InputUnavailableError", "materialize_inputs")


def safe_filename(key: str) -> str:
    """The workspace file name for an object key: its last segment, safe characters only."""
    name = key.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).lstrip(".-_")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot else ""
        name = (stem if dot else name)[: MAX_NAME_CHARS - len(ext) - 1].rstrip(".") + (
            "." + ext if ext else ""
        )
    return name or "input"


def __getattr__(name: str) -> Any:
    """The names that moved to `claude_jobs.worker.inputs`."""
    if name in _MOVED:
        from ..worker import inputs

        return getattr(inputs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
