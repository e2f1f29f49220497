"""The Anthropic key, from Secrets Manager through Powertools parameters, cached with a max age.

The value is either the key itself or a JSON object with an `api_key` field. If a refresh
fails after the key was once read, the last value keeps serving (a Secrets Manager hiccup must
not fail running jobs); with no value at all the failure propagates, as an infrastructure fault.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..observability import deferred_logger

log = deferred_logger()  # Powertools' structured logger


class KeyUnavailableError(RuntimeError):
    """The Anthropic key could not be read (an infrastructure fault: the job is retried)."""


class SecretKeyProvider:
    def __init__(self, client: Any, secret_id: str, max_age_seconds: int = 300) -> None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        self._provider = SecretsProvider(boto3_client=client)
        self._secret_id = secret_id
        self._max_age = max_age_seconds
        self._last: str | None = None
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            try:
                raw = self._provider.get(self._secret_id, max_age=self._max_age)
                key = _parse(raw)
            except Exception as exc:
                if self._last is not None:
                    log.warning(
                        "key refresh failed (%s); serving the cached key", type(exc).__name__
                    )
                    return self._last
                raise KeyUnavailableError(
                    f"the secret could not be read from {self._secret_id} ({type(exc).__name__})"
                ) from None
            self._last = key
            return key


def _parse(raw: object) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode()
    if not isinstance(raw, str):
        raise ValueError("the secret is not a string")
    value = raw.strip()
    if value.startswith("{"):
        data = json.loads(value)
        value = str(data.get("api_key") or data.get("ANTHROPIC_API_KEY") or "").strip()
    if not value:
        raise ValueError("the secret is empty")
    return value
