"""The key that signs `next_token` of `GET /v1/jobs` (issue 20).

A page token carries the repository's cursor and a MAC keyed by this secret; with an empty
secret the key is public (it is derived from the empty string), so anyone who reads the code
could forge a cursor. Every deployment therefore has a generated secret (the CDK app: a Secrets
Manager generated value granted to the status function; the local stack: a random value in its
emulated Secrets Manager), and the status function refuses to start on Lambda without one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .settings import Settings

#: Lambda sets this in every function's environment: the refusal applies there (and not to
#: tests or tools that build a job service of their own).
LAMBDA_MARKER = "AWS_LAMBDA_FUNCTION_NAME"


class PageTokenSecretError(RuntimeError):
    """The deployment gives the status function no page token secret (a startup error)."""


def resolve_page_token_secret(settings: Settings, secretsmanager: Callable[[], Any]) -> str:
    if settings.page_token_secret:
        return settings.page_token_secret
    if not settings.page_token_secret_id:
        raise PageTokenSecretError(
            "No page token secret: set PAGE_TOKEN_SECRET_ID to a Secrets Manager secret with a "
            "generated value (the CDK app does), so that GET /v1/jobs page tokens cannot be "
            "forged."
        )
    value = secretsmanager().get_secret_value(SecretId=settings.page_token_secret_id)
    secret = str(value.get("SecretString") or "")
    if not secret.strip():
        raise PageTokenSecretError(
            f"The page token secret {settings.page_token_secret_id!r} is empty: give it a "
            "generated value."
        )
    return secret


def require_on_lambda(resolve: Callable[[], str], environ: Mapping[str, str] | None = None) -> None:
    """At a function's init on Lambda: resolve the secret now, so that a deployment without
    one fails at startup with a clear error instead of signing tokens with a public key."""
    env = os.environ if environ is None else environ
    if env.get(LAMBDA_MARKER):
        resolve()
