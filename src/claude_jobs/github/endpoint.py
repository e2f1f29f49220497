"""`POST /v1/github/events`: the signature, the body, the answer (no API key: the signature is
the authentication). 401 for a bad or missing signature, 400 for a body that is not a JSON
object, 2xx with `{status, reason}` for everything else (an ignored event too: GitHub must not
retry it). When the webhook secret (or the tenants' lookup) cannot be read, or the delivery's
claim cannot be written, nothing is done and the answer is 503 with `Retry-After`: the delivery
may be redelivered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..api import http
from ..api.problems import problem, response
from ..api.resolver import Response
from ..errors import ServiceUnavailableError
from ..observability import count, get_logger
from .events import GitHubEvents, parse_payload, signature_ok


class GitHubEndpoint:
    def __init__(self, secret: Callable[[], bytes], events: Callable[[], GitHubEvents]) -> None:
        self._secret = secret
        self._events = events

    def answer(self, event: Mapping[str, Any]) -> Response:
        import json

        request_id = http.request_id(event)
        raw = http.body_bytes(event)
        if not signature_ok(self._secret(), raw, http.header(event, "X-Hub-Signature-256")):
            get_logger().warning("github event refused: bad signature")
            count("GitHubEventsRefused")
            return response(
                problem(401, "The X-Hub-Signature-256 signature is missing or wrong."),
                request_id,
            )
        try:
            payload = parse_payload(raw)
        except (ValueError, UnicodeError):
            return response(problem(400, "The body is not JSON."), request_id)
        if not isinstance(payload, dict):
            return response(problem(400, "The body is not a JSON object."), request_id)
        try:
            outcome = self._events().handle(
                http.header(event, "X-GitHub-Event") or "",
                http.header(event, "X-GitHub-Delivery") or "",
                payload,
            )
        except ServiceUnavailableError:
            count("GitHubEventsUnavailable")
            raise
        count("GitHubJobsStarted" if outcome.status == "started" else "GitHubEventsIgnored")
        status = 202 if outcome.status == "started" else 200
        return Response(
            status_code=status,
            content_type="application/json",
            body=json.dumps(outcome.body(), separators=(",", ":")),
            headers={"Cache-Control": "no-store"},
        )


def github_endpoint(container: Any) -> GitHubEndpoint:
    """The endpoint on a :class:`~claude_jobs.wiring.Container` (secret and services built on
    the first event)."""
    from functools import cache

    from ..adapters.secrets import KeyUnavailableError, SecretKeyProvider
    from .credentials import SecretsManagerCredentials
    from .events import DynamoDeliveryClaims
    from .rest import GitHubRest
    from .wiring import github_credentials

    settings = container.settings

    @cache
    def provider() -> SecretKeyProvider | None:
        if not settings.github_webhook_secret_id:
            return None
        return SecretKeyProvider(
            container.client("secretsmanager"),
            settings.github_webhook_secret_id,
            settings.secret_max_age_seconds,
        )

    def secret() -> bytes:
        found = provider()
        if found is None:
            return b""
        try:
            return found.get().encode()
        except KeyUnavailableError:
            # Secrets Manager failing and nothing cached: not the sender's fault, and nothing
            # was done (no claim, no job); GitHub may redeliver.
            get_logger().warning(
                "github event not verified: the webhook secret %s cannot be read",
                settings.github_webhook_secret_id,
            )
            count("GitHubEventsUnavailable")
            raise ServiceUnavailableError(
                "The webhook secret cannot be read right now; nothing was done. "
                "Redeliver the event later."
            ) from None

    @cache
    def events() -> GitHubEvents:
        secrets = container.client("secretsmanager")
        return GitHubEvents(
            jobs=container.job_service,
            tenants=SecretsManagerCredentials(
                secrets, settings.github_secret_prefix, settings.github_installation_prefix
            ),
            credentials=github_credentials(settings, secrets),
            rest=GitHubRest(settings.github_api_url),
            claims=DynamoDeliveryClaims(container.client("dynamodb"), settings.jobs_table),
            git_url=settings.github_git_url,
            handle=settings.github_handle,
            label=settings.github_label,
            allowed_tools=settings.github_allowed_tools,
        )

    return GitHubEndpoint(secret, events)
