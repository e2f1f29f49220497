"""The TOKEN Lambda authorizer: `Authorization: Bearer <api key>` → the key's tenant.

A valid key gets an Allow policy for every method and path of the API's stage (so API Gateway's
authorizer cache serves all routes) and the context `{tenant_id, key_id}`, which the routes read
from `requestContext.authorizer`. Anything else raises `Exception("Unauthorized")`: that exact
message is what makes API Gateway answer 401 (rendered as a problem by its gateway response).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..clock import utcnow
from ..observability import get_logger, instrumented
from ..wiring import Container, ContainerHolder
from .boot import paused_first_invocation

if TYPE_CHECKING:
    from ..keys import ApiKeyService

UNAUTHORIZED = "Unauthorized"

_METHOD_ARN = re.compile(
    r"^(?P<prefix>arn:aws[a-z-]*:execute-api:[a-z0-9-]+:\d{12}:[A-Za-z0-9]+)/(?P<stage>[^/]+)/"
)


def api_resource(method_arn: str) -> str:
    """`arn:…:<apiId>/<stage>/GET/v1/jobs/x` → `arn:…:<apiId>/<stage>/*/*`."""
    match = _METHOD_ARN.match(method_arn)
    if match is None:
        raise ValueError("not an execute-api method ARN")
    return f"{match['prefix']}/{match['stage']}/*/*"


def bearer_token(header: object) -> str | None:
    if not isinstance(header, str):
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def authorize(
    event: Mapping[str, Any], keys: ApiKeyService, now: datetime | None = None
) -> dict[str, Any]:
    """The policy for a TOKEN authorizer event; raises `Exception("Unauthorized")` to deny."""
    token = bearer_token(event.get("authorizationToken"))
    record = keys.authenticate(token, now or utcnow()) if token else None
    if record is None:
        get_logger().info("api key refused")  # never log the key itself
        raise Exception(UNAUTHORIZED)  # API Gateway matches this exact message
    try:
        resource = api_resource(str(event.get("methodArn", "")))
    except ValueError:
        get_logger().error("unexpected methodArn", extra={"method_arn": event.get("methodArn")})
        raise Exception(UNAUTHORIZED) from None
    get_logger().append_keys(tenant_id=record.tenant_id, key_id=record.key_id)
    return {
        "principalId": record.tenant_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}
            ],
        },
        "context": {"tenant_id": record.tenant_id, "key_id": record.key_id},
    }


class Authorizer(ContainerHolder):
    """The authorizer function: `lambda_handler = Authorizer().handler`."""

    def __init__(
        self, container: Container | None = None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__(container)
        self._clock = clock
        self._instrumented = paused_first_invocation(instrumented(self._handle))

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return authorize(event, self.container.key_service, self._clock())
