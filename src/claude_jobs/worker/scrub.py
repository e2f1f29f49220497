"""Remove secrets from everything the worker stores or logs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"

#: Shapes of credentials worth hiding even when their exact value is unknown here.
_PATTERNS = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]{8,}"  # Anthropic keys
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key ids
)

#: An AWS secret access key or session token is random text: only recognisable by its name
#: next to it (`aws_secret_access_key = …`, `"SecretAccessKey": "…"`); the value is hidden.
_NAMED_AWS_SECRET = re.compile(
    r"(?i)((?:aws_)?secret_access_key|secretaccesskey|aws_session_token|sessiontoken)"
    r"([\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9/+=]{16,})"
)

#: Secrets shorter than this are not scrubbed by value (they would mangle ordinary text).
MIN_SECRET_CHARS = 8


class Scrubber:
    """Replaces known secret values, and anything shaped like a key, with `[REDACTED]`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        values = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}
        # Longest first, so a secret containing another is replaced whole.
        self._values = sorted(values, key=len, reverse=True)

    def with_secrets(self, *secrets: str | None) -> Scrubber:
        return Scrubber([*self._values, *secrets])

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = _NAMED_AWS_SECRET.sub(lambda m: m.group(1) + m.group(2) + REDACTED, value)
        return _PATTERNS.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        """Scrub every string inside a JSON-like value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value
