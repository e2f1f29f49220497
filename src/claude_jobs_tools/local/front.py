"""The local stack's HTTP front: what API Gateway (REST API, Lambda proxy integration) does.

For each request it matches a route and runs the TOKEN authorizer the way API Gateway does: an
`Authorization` header that is missing or fails the validation expression → 401 without calling
it; `Unauthorized` raised → 401; a policy that does not allow the method ARN → 401 (the CDK
app's gateway response for ACCESS_DENIED). It then builds the REST proxy event with the
authorizer's context, invokes the route's function and returns its response verbatim. What API
Gateway answers itself (no route, wrong method, body over 10 MB, authorizer failures, a function
that raised) is an `application/problem+json` gateway response shaped like the CDK app's.
"""

from __future__ import annotations

import base64
import fnmatch
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from claude_jobs.definitions import ROUTES, Route
from claude_jobs.resources import AUTHORIZATION_HEADER_PATTERN

from .runtime import ACCOUNT_ID, REGION, FunctionPool

log = logging.getLogger(__name__)

#: API Gateway's own payload limit; the handlers enforce the API's 256 KiB.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
API_ID = "local"
#: The TOKEN authorizer's validation expression, as the CDK app sets it: a header that does
#: not match is refused by API Gateway without invoking the authorizer.
TOKEN_PATTERN = re.compile(AUTHORIZATION_HEADER_PATTERN)
STAGE = "dev"


class GatewayError(Exception):
    """An answer API Gateway gives itself (a gateway response)."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Authorization:
    principal_id: str
    context: dict[str, str]
    policy: dict[str, Any]
    expires: float


class ApiGatewayFront:
    """The WSGI application. `functions` maps a route's function key (and "authorizer") to
    its pool of execution environments."""

    def __init__(
        self,
        functions: Mapping[str, FunctionPool],
        *,
        routes: Iterable[Route] = ROUTES,  # the definition table's, as the CDK app's
        authorizer_cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._functions = dict(functions)
        self._routes = tuple(routes)
        self._cache_seconds = authorizer_cache_seconds
        self._cache: dict[str, Authorization] = {}
        self._cache_lock = threading.Lock()
        self._clock = clock

    # ------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            response = self.handle(request, request_id)
        except GatewayError as exc:
            response = gateway_response(exc.status, exc.detail, request_id, request.path, exc.code)
            response.headers.update(exc.headers)
        except Exception:
            log.exception("gateway error on %s %s", request.method, request.path)
            response = gateway_response(
                500, "Internal server error", request_id, request.path, "internal"
            )
        response.headers.setdefault("x-amzn-RequestId", request_id)
        log.info(
            "%s %s → %s (%.0f ms)",
            request.method,
            request.full_path.rstrip("?"),
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response(environ, start_response)

    def handle(self, request: Request, request_id: str) -> Response:
        route, path_parameters = self.match(request.method, request.path)
        length = request.content_length
        if length is not None and length > MAX_PAYLOAD_BYTES:
            raise _too_large()
        body = request.get_data(cache=False)
        if len(body) > MAX_PAYLOAD_BYTES:
            raise _too_large()
        authorizer_context: dict[str, Any] | None = None
        if route.authorized:
            authorizer_context = self.authorize(request, route)
        event = build_proxy_event(
            request,
            route,
            path_parameters,
            body,
            request_id=request_id,
            authorizer=authorizer_context,
        )
        try:
            result = self._functions[route.function].invoke(event)
        except Exception:
            # A function error: API Gateway answers 502 (its INTEGRATION_FAILURE response).
            log.exception("the %s function raised", route.function)
            raise GatewayError(502, "Internal server error", code="bad_gateway") from None
        return proxy_response(result)

    # ------------------------------------------------------------ routing

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: list[str] = []
        for route in self._routes:
            found = route.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, found
            allowed.append(route.method)
        if allowed:
            raise GatewayError(
                405,
                f"{method} is not allowed on {path}; allowed: {', '.join(sorted(set(allowed)))}.",
                {"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise GatewayError(404, "No such resource.", code="not_found")

    # ------------------------------------------------------------ authorizer

    def authorize(self, request: Request, route: Route) -> dict[str, Any]:
        token = request.headers.get("Authorization")
        if not token or not TOKEN_PATTERN.match(token):
            # The identity source is missing or fails the authorizer's validation expression:
            # API Gateway answers 401 itself, without invoking the authorizer.
            raise _unauthorized()
        method_arn = (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{STAGE}/"
            f"{request.method}{request.path}"
        )
        authorization = self._cached(token)
        if authorization is None:
            authorization = self._call_authorizer(token, method_arn)
        if not policy_allows(authorization.policy, method_arn):
            # ACCESS_DENIED: the CDK app answers it as a 401 too (a revoked key looks like a
            # wrong one).
            raise _unauthorized()
        return {"principalId": authorization.principal_id, **authorization.context}

    def _cached(self, token: str) -> Authorization | None:
        if self._cache_seconds <= 0:
            return None
        with self._cache_lock:
            hit = self._cache.get(token)
            if hit is not None and hit.expires > self._clock():
                return hit
            self._cache.pop(token, None)
        return None

    def _call_authorizer(self, token: str, method_arn: str) -> Authorization:
        event = {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
        try:
            answer = self._functions["authorizer"].invoke(event)
        except Exception as exc:
            if str(exc) == "Unauthorized":
                raise _unauthorized() from None
            log.exception("the authorizer failed")
            raise GatewayError(500, "The authorizer failed.", code="internal") from None
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("policyDocument"), dict)
            or not answer.get("principalId")
        ):
            log.error("the authorizer returned no principalId/policyDocument: %r", answer)
            raise GatewayError(500, "The authorizer's answer is invalid.", code="internal")
        context = {}
        for key, value in (answer.get("context") or {}).items():
            if not isinstance(value, str | int | float | bool) or value is None:
                log.error("authorizer context %r is not a string, number or boolean", key)
                raise GatewayError(500, "The authorizer's answer is invalid.", code="internal")
            # API Gateway hands every context value to the integration as a string.
            context[key] = str(value).lower() if isinstance(value, bool) else str(value)
        authorization = Authorization(
            principal_id=str(answer["principalId"]),
            context=context,
            policy=answer["policyDocument"],
            expires=self._clock() + self._cache_seconds,
        )
        if self._cache_seconds > 0:
            with self._cache_lock:
                self._cache[token] = authorization
        return authorization


def _unauthorized() -> GatewayError:
    return GatewayError(
        401,
        "Missing or invalid API key.",
        {"WWW-Authenticate": 'Bearer realm="claude-jobs"'},
        "unauthorized",
    )


def _too_large() -> GatewayError:
    return GatewayError(
        413, "Request body is larger than API Gateway's 10 MB limit.", code="payload_too_large"
    )


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """IAM evaluation of an authorizer policy for `execute-api:Invoke` on `method_arn`: an
    explicit Deny wins, otherwise some Allow must match."""
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        actions = _as_list(statement.get("Action"))
        resources = _as_list(statement.get("Resource"))
        applies = any(_glob(a, "execute-api:Invoke") for a in actions) and any(
            _glob(r, method_arn) for r in resources
        )
        if not applies:
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value or [] if isinstance(v, str)]


def _glob(pattern: str, value: str) -> bool:
    escaped = pattern.replace("[", "[[]")
    return fnmatch.fnmatchcase(value, escaped)


# ---------------------------------------------------------------- events and responses


def build_proxy_event(
    request: Request,
    route: Route,
    path_parameters: Mapping[str, str],
    body: bytes,
    *,
    request_id: str,
    authorizer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The REST API (v1 payload) Lambda proxy event API Gateway would send for `request`,
    built by :func:`claude_jobs_tools.api_gateway_events.rest_event` (the shape the handlers'
    tests use), with the request's repeated headers and query parameters kept in the
    multi-value maps."""
    from ..api_gateway_events import rest_event

    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        multi_headers.setdefault(name, []).append(value)
    query = parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        multi_query.setdefault(name, []).append(value)
    payload: str | bytes | None
    try:
        payload = body.decode("utf-8") if body else None
    except UnicodeDecodeError:
        payload = body  # not text: base64-encoded, as for a binary media type
    event = rest_event(
        request.method,
        request.path,
        headers={name: values[-1] for name, values in multi_headers.items()},
        query={name: values[-1] for name, values in multi_query.items()},
        body=payload,
        authorizer=authorizer,
        source_ip=request.remote_addr or "127.0.0.1",
        request_id=request_id,
        stage=STAGE,
        api_id=API_ID,
        account_id=ACCOUNT_ID,
    )
    for name, values in multi_headers.items():
        event["multiValueHeaders"][name] = values
    if multi_query:
        event["multiValueQueryStringParameters"] = multi_query
    # The matched route is the authority on the resource and its parameters.
    event["resource"] = route.path
    event["requestContext"]["resourcePath"] = route.path
    event["pathParameters"] = dict(path_parameters) or None
    return event


def proxy_response(result: Any) -> Response:
    """The function's proxy response as HTTP, verbatim. A malformed one is a 502, as in API
    Gateway."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        log.error("the function returned a malformed proxy response: %r", result)
        raise GatewayError(502, "The function's response is malformed.", code="bad_gateway")
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(raw, status=result["statusCode"])
    response.headers.pop("Content-Type", None)
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        response.headers.remove(name)
        for value in values:
            response.headers.add(name, str(value))
    if "Content-Type" not in response.headers and raw:
        response.headers["Content-Type"] = "application/json"
    return response


def gateway_response(
    status: int, detail: str, request_id: str, instance: str, code: str | None = None
) -> Response:
    """An answer of API Gateway itself (a gateway response), rendered as the API renders its
    own problems."""
    from claude_jobs.api.problems import problem, render

    status, headers, body = render(problem(status, detail, code=code), request_id, instance)
    response = Response(body, status)
    for name, value in headers.items():
        response.headers[name] = value
    return response


# ---------------------------------------------------------------- server


def serve(app: ApiGatewayFront, host: str, port: int) -> BaseWSGIServer:
    """A threaded HTTP/1.1 server (a thread per connection, listen backlog 128): long-polls
    block only their own thread; a client's connection stays open between its requests
    (`keep_alive.py`)."""
    from .keep_alive import KeepAlive

    server = make_server(host, port, app, threaded=True, request_handler=KeepAlive)
    server.daemon_threads = True  # type: ignore[attr-defined]
    return server
