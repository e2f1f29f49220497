"""Page tokens of the job listing: the repository's cursor bound to the tenant and MAC'd."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from ..errors import FieldError, RequestValidationError


def _token_key(secret: str) -> bytes:
    return hashlib.sha256(f"claude-jobs page token\x00{secret}".encode()).digest()


def encode_token(cursor: Mapping[str, Any], tenant_id: str, secret: str) -> str:
    """An opaque page token: the repository's cursor bound to the tenant, and a MAC over both
    (a token altered by a byte, or made for another tenant, is refused)."""
    payload = json.dumps({"t": tenant_id, "c": cursor}, separators=(",", ":")).encode()
    mac = hmac.new(_token_key(secret), payload, hashlib.sha256).digest()[:16]
    return _b64(payload) + "." + _b64(mac)


def token_error() -> RequestValidationError:
    return RequestValidationError(
        "next_token is not valid.",
        [FieldError(("query", "next_token"), "not a token this API returned")],
    )


def decode_token(token: str, tenant_id: str, secret: str) -> dict[str, Any]:
    invalid = token_error()
    try:
        if len(token) > 4096:
            raise ValueError("too long")
        body, mac = token.split(".")
        payload, tag = _unb64(body), _unb64(mac)
        expected = hmac.new(_token_key(secret), payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(tag, expected):
            raise ValueError("altered")
        data = json.loads(payload)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("t") != tenant_id:
        raise invalid
    if not isinstance(data.get("c"), dict):
        raise invalid
    cursor: dict[str, Any] = data["c"]
    return cursor


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
