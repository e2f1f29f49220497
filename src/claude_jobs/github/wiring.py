"""The GitHub events' wiring, from a deployment's settings and a Secrets Manager client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .credentials import AppJwt, JobCredentials, SecretsManagerCredentials
from .rest import GitHubRest

if TYPE_CHECKING:
    from ..settings import Settings


def github_credentials(
    settings: Settings, secrets_client: Any, rest: GitHubRest | None = None
) -> JobCredentials:
    """Tenants' credentials (stored tokens, or an App's installation tokens minted with its
    JWT) for the GitHub events, the notifier and the worker."""
    from ..adapters.secrets import SecretKeyProvider

    rest = rest or GitHubRest(settings.github_api_url)
    app_jwt = None
    if settings.github_app_id:
        key = SecretKeyProvider(
            secrets_client, settings.github_app_key_secret_id, settings.secret_max_age_seconds
        )
        app_jwt = AppJwt(settings.github_app_id, key.get)
    stored = SecretsManagerCredentials(secrets_client, settings.github_secret_prefix)
    return JobCredentials(stored, rest, app_jwt)
