"""The API's resolver answers as Powertools' `APIGatewayRestResolver` did: the same routes match
(trailing slashes, path parameter characters), the same REST proxy answer comes back, and errors
go to the handler registered for the nearest class of the exception."""

from __future__ import annotations

from typing import Any

import pytest

from claude_jobs.api.resolver import NotFoundError, Resolver, Response


def _resolver() -> Resolver:
    app = Resolver()
    app.route("/v1/jobs", "GET")(lambda: Response(200, "text/plain", "list"))
    app.route("/v1/jobs/<job_id>", "GET")(
        lambda job_id: Response(200, "text/plain", job_id, {"ETag": '"1"'})
    )
    app.route("/v1/jobs/<job_id>/cancel", "POST")(lambda job_id: 1 / 0)
    app.exception_handler(NotFoundError)(lambda exc: Response(404, body="no route"))
    app.exception_handler(ArithmeticError)(lambda exc: Response(500, body=type(exc).__name__))
    return app


def _answer(method: str, path: str) -> dict[str, Any]:
    return _resolver().resolve({"httpMethod": method, "path": path, "headers": {}})


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/v1/jobs", 200, "list"),
        ("GET", "/v1/jobs/", 200, "list"),
        ("get", "/v1/jobs//", 200, "list"),
        ("GET", "/v1/jobs/a%20b", 200, "a%20b"),
        ("GET", "/v1/jobs/x/", 200, "x"),
        ("GET", "/v1/jobs/a/b", 404, "no route"),
        ("GET", '/v1/jobs/a"b', 404, "no route"),
        ("POST", "/v1/jobs", 404, "no route"),
        ("GET", "/v2/jobs", 404, "no route"),
        ("POST", "/v1/jobs/x/cancel", 500, "ZeroDivisionError"),
    ],
)
def test_a_request_reaches_its_route_or_a_handler(
    method: str, path: str, status: int, body: str
) -> None:
    # Given the resolver with three routes and two handlers, When a request comes
    answer = _answer(method, path)
    # Then it is answered by the route, the not-found handler or the nearest exception handler
    assert (answer["statusCode"], answer["body"]) == (status, body)


def test_the_answer_is_a_rest_proxy_response_with_multi_value_headers() -> None:
    # Given a route that sets a header and a content type, When it answers
    answer = _answer("GET", "/v1/jobs/j1")
    # Then the proxy response carries every header once, the content type after them
    assert answer == {
        "statusCode": 200,
        "body": "j1",
        "isBase64Encoded": False,
        "multiValueHeaders": {"ETag": ['"1"'], "Content-Type": ["text/plain"]},
    }


def test_an_exception_without_a_handler_propagates() -> None:
    # Given a resolver with no handler for the error its route raises
    app = Resolver()
    app.route("/boom", "GET")(lambda: 1 / 0)
    # When it answers, Then the error propagates (the function's instrumentation logs it)
    with pytest.raises(ZeroDivisionError):
        app.resolve({"httpMethod": "GET", "path": "/boom"})


def test_an_event_without_method_or_path_is_not_found() -> None:
    # Given an event missing what API Gateway always sends, When it is resolved
    answer = _resolver().resolve({})
    # Then it is a 404 through the not-found handler, not an error
    assert answer["statusCode"] == 404
