"""A Lambda function of the API: its resolver, its routes and its composition root.

    function = ApiFunction("submit")
    lambda_handler = function.handler

The resolver and the routes are built at import (cheap); the :class:`Container` (settings,
boto3 clients, services) is built on the first invocation and reused by warm ones. Tests and the
local stack inject their own with `function.container = Container(settings)`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

# What every request needs is imported here, at the function's init; the clients themselves
# (and the services on them) wait for the first request (see `Container`), and so do the
# modules of what only some requests use: uploads (`POST /v1/uploads`, a submit with
# `inputs`) and session transcripts (`DELETE /v1/sessions/{id}`).
import boto3  # noqa: F401

from ..adapters import events_table, jobs_table, queue, results  # noqa: F401
from ..observability import get_logger, instrumented
from ..wiring import Container, ContainerHolder
from . import http, problems
from .boot import paused_first_invocation
from .resolver import NotFoundError, Resolver
from .routes import register

if TYPE_CHECKING:
    from ..github.endpoint import GitHubEndpoint
    from ..job_service import JobService


class ApiFunction(ContainerHolder):
    def __init__(self, name: str, container: Container | None = None) -> None:
        super().__init__(container)
        self.name = name
        self._github_endpoint: tuple[Container, GitHubEndpoint] | None = None
        self.app = Resolver()
        register(
            self.app,
            name,
            self._job_service,
            lambda: self.container.upload_service,
            self._github,
        )
        problems.register(self.app)
        self._instrumented = paused_first_invocation(instrumented(self._handle))

    def require_page_token_secret(self) -> None:
        """On Lambda, at init: the page token secret must resolve (PageTokenSecretError)."""
        from ..page_tokens import require_on_lambda

        require_on_lambda(lambda: self.container.page_token_secret)

    def _github(self) -> GitHubEndpoint:
        if self._github_endpoint is None or self._github_endpoint[0] is not self.container:
            try:
                from ..github.endpoint import github_endpoint
            except ImportError:  # a layer without the GitHub client: no GitHub events here
                raise NotFoundError("GitHub events are not enabled") from None

            self._github_endpoint = (self.container, github_endpoint(self.container))
        return self._github_endpoint[1]

    def _job_service(self) -> JobService:
        return self.container.job_service

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self._instrumented(event, context)

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        logger = get_logger()
        logger.append_keys(
            request_id=http.request_id(event),
            route=f"{event.get('httpMethod')} {event.get('resource')}",
        )
        response = self.app.resolve(event, context)
        logger.info(
            "answered",
            extra={
                "status": response.get("statusCode"),
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response
