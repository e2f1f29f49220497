"""The key that signs `next_token` of `GET /v1/jobs` (issue 20).

A page token carries the repository's cursor and a MAC keyed by this secret; with an empty
secret the key is public (it is derived from the empty string), so anyone who reads the code
could forge a cursor. Every deployment therefore has a generated secret (the CDK app: a Secrets
Manager generated value granted to the status function; the local stack: a random value in its
emulated Secrets Manager), and the status function refuses to start on Lambda without one.

Secrets Manager failing for a moment is not a missing secret: a request that needs the key then
is answered 503 with `Retry-After` (nothing was done), and the function's init on Lambda goes
on without it (its first request that needs it reads it again). A secret that does not exist,
is being deleted or may not be read is a deployment's error, and stops the init as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ServiceUnavailableError
from .settings import Settings

#: Lambda sets this in every function's environment: the refusal applies there (and not to
#: tests or tools that build a job service of their own).
LAMBDA_MARKER = "AWS_LAMBDA_FUNCTION_NAME"
#: Secrets Manager's answers that mean the deployment is wrong, not that the service failed.
MISCONFIGURED = frozenset(
    {"ResourceNotFoundException", "AccessDeniedException", "InvalidRequestException"}
)


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
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        value = secretsmanager().get_secret_value(SecretId=settings.page_token_secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in MISCONFIGURED:
            raise PageTokenSecretError(
                f"The page token secret {settings.page_token_secret_id!r} cannot be read "
                f"({code}): it must exist and the status function may read it."
            ) from exc
        raise _unavailable() from exc
    except BotoCoreError as exc:
        raise _unavailable() from exc
    secret = str(value.get("SecretString") or "")
    if not secret.strip():
        raise PageTokenSecretError(
            f"The page token secret {settings.page_token_secret_id!r} is empty: give it a "
            "generated value."
        )
    return secret


def _unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The key of page tokens cannot be read right now; nothing was done. Retry later."
    )


def require_on_lambda(resolve: Callable[[], str], environ: Mapping[str, str] | None = None) -> None:
    """At a function's init on Lambda: resolve the secret now, so that a deployment without
    one fails at startup with a clear error instead of signing tokens with a public key.
    Secrets Manager failing for a moment does not stop the init (a failed init answers callers
    502, and is tried again by every request): the secret is read again when first needed."""
    env = os.environ if environ is None else environ
    if not env.get(LAMBDA_MARKER):
        return
    try:
        resolve()
    except ServiceUnavailableError:
        from .observability import get_logger

        get_logger().warning("page token secret not read at init: Secrets Manager failed")
