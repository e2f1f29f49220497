"""What a request carries, read defensively: nothing a caller sends may cause a 5xx.

Each reader raises a domain error (mapped to a problem by :mod:`.problems`) when the input is
not acceptable.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import (
    FieldError,
    JobNotFoundError,
    PayloadTooLargeError,
    RequestValidationError,
    SessionNotFoundError,
    UnauthorizedError,
)
from ..models import MAX_BODY_BYTES, MAX_DOCUMENT_DEPTH, SESSION_ID_PATTERN

#: Deeper JSON than this is refused before validation (jsonschema recurses per level): the
#: body object around documents that may nest `MAX_DOCUMENT_DEPTH` levels.
MAX_JSON_DEPTH = MAX_DOCUMENT_DEPTH + 1
#: Job ids are UUIDs; anything that cannot be one is simply not found.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


def tenant_id(event: Mapping[str, Any]) -> str:
    """The tenant the authorizer resolved. Without one the request is refused (401)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    tenant = authorizer.get("tenant_id") if isinstance(authorizer, Mapping) else None
    if not isinstance(tenant, str) or not tenant:
        raise UnauthorizedError("Missing or invalid API key.")
    return tenant


def request_id(event: Mapping[str, Any]) -> str:
    return str((event.get("requestContext") or {}).get("requestId") or "unknown")


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A header's value, case-insensitively (the last one when repeated)."""
    wanted = name.lower()
    found = None
    for key, value in (event.get("headers") or {}).items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            found = value
    return found


def query(event: Mapping[str, Any], name: str) -> str | None:
    params = event.get("queryStringParameters") or {}
    value = params.get(name) if isinstance(params, Mapping) else None
    return value if isinstance(value, str) else None


def query_int(event: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    raw = query(event, name)
    if raw is None:
        return default
    text = raw.strip()
    if not re.fullmatch(r"[0-9]{1,6}", text) or not low <= int(text) <= high:
        raise RequestValidationError(
            f"{name} must be a whole number from {low} to {high}.",
            [FieldError(("query", name), f"must be an integer between {low} and {high}")],
        )
    return int(text)


def job_id(value: str) -> str:
    if not _JOB_ID.match(value):
        raise JobNotFoundError(f"No job {value[:128]}.")
    return value


def session_id(value: str) -> str:
    if not _SESSION_ID.match(value):
        raise SessionNotFoundError(f"No session {value[:128]}.")
    return value


def body_bytes(event: Mapping[str, Any]) -> bytes:
    """The decoded body; 413 when it is over 256 KiB."""
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise _invalid_body("The body is not text.")
    # Cheap bound before decoding: base64 is 4/3 of the bytes, UTF-8 at most 4 per char.
    if len(body) > 4 * MAX_BODY_BYTES + 8:
        raise PayloadTooLargeError("The request body is larger than 256 KiB.")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid_body("The body is not valid base64.") from None
    else:
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(
            f"The request body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted."
        )
    return raw


def json_body(event: Mapping[str, Any]) -> Any:
    """The body as JSON: strict UTF-8, no NaN/Infinity, bounded nesting."""
    raw = body_bytes(event)
    if not raw.strip():
        raise _invalid_body("A JSON object body is required.")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_no_constant)
        # Lone surrogates (\ud800) parse but cannot be stored as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError) as exc:
        reason = "not UTF-8" if isinstance(exc, UnicodeError) else "not valid JSON"
        raise _invalid_body(f"The body is {reason}.") from None
    _check_shape(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _invalid_body(detail: str) -> RequestValidationError:
    return RequestValidationError(detail, [FieldError(("body",), detail)])


def _check_shape(value: Any) -> None:
    """Bounded nesting and finite numbers: JSON's limits, not a database's (documents are
    stored as JSON text, so any such value is stored as sent)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level > MAX_JSON_DEPTH:
                raise _invalid_body(f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, float) and not math.isfinite(item):  # 1e999 parses as inf
            raise _invalid_body("The body has a number out of range (e.g. 1e999).")
