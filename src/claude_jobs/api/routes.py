"""The operations of HTTP API v1. Which route each answers, and which function serves it, is
the definition table's (:mod:`claude_jobs.definitions`): :func:`register` gives a function's
resolver exactly the routes the table gives that function.

Each operation reads the request (:mod:`.http`), makes one domain call and answers. Errors are
raised, never caught here: :mod:`.problems` turns them into problem answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..definitions import FUNCTIONS
from ..job_service import (
    MAX_EVENT_CURSOR,
    MAX_PAGE_SIZE,
    MAX_WAIT_SECONDS,
    etag,
    job_path,
)
from ..models import JobLinks, SubmitResponse
from ..observability import count
from . import http
from .resolver import Resolver, Response

if TYPE_CHECKING:
    from ..github.endpoint import GitHubEndpoint
    from ..job_service import JobService
    from ..uploads import UploadService

#: Suggested seconds between polls of a job that is not finished yet.
POLL_AFTER_SECONDS = 2
JSON = "application/json"

Services = Callable[[], "JobService"]
Uploads = Callable[[], "UploadService"]
Operation = Callable[..., Response]
GitHub = Callable[[], "GitHubEndpoint"]


def json_response(
    status: int, body: BaseModel | Mapping[str, object], headers: Mapping[str, str] | None = None
) -> Response:
    if isinstance(body, BaseModel):
        text = body.model_dump_json(exclude_none=True)
    else:
        import json

        text = json.dumps(body, separators=(",", ":"))
    return Response(status_code=status, content_type=JSON, body=text, headers=dict(headers or {}))


def register(
    app: Resolver,
    function: str,
    services: Services,
    uploads: Uploads | None = None,
    github: GitHub | None = None,
) -> None:
    """Register on `app` the routes the definition table gives `function`."""
    operations = _operations(app, services, uploads, github)
    for route in FUNCTIONS[function].routes:
        app.route(route.resolver_path, route.method)(operations[route.operation])


def _operations(
    app: Resolver,
    services: Services,
    uploads: Uploads | None = None,
    github: GitHub | None = None,
) -> dict[str, Operation]:
    """Every operation of the API by its operationId, bound to `app`'s current event."""

    def upload_service() -> UploadService:
        if uploads is None:
            raise RuntimeError("this function has no upload service")
        return uploads()

    def submit_job() -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        service = services()
        request = service.parse_request(http.json_body(event))
        # Files: the tenant's own uploads, checked now (422 otherwise).
        inputs = upload_service().resolve(tenant, request.inputs) if request.inputs else []
        submission = service.submit(
            tenant,
            request,
            idempotency_key=http.header(event, "Idempotency-Key"),
            inputs=inputs,
        )
        job = submission.job
        if submission.created:
            count("JobsSubmitted")
        location = job_path(job.job_id)
        body = SubmitResponse(
            job_id=job.job_id,
            status=job.status,
            created_at=job.created_at,
            links=JobLinks(self=location),
        )
        return json_response(202, body, {"Location": location})

    def create_upload() -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        service = upload_service()
        upload = service.create(tenant, service.parse_request(http.json_body(event)))
        count("UploadsCreated")
        return json_response(201, upload, {"Cache-Control": "no-store"})

    def cancel_job(job_id: str) -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        service = services()
        job = service.cancel(tenant, http.job_id(job_id))
        return json_response(202, service.view(job), {"ETag": etag(job)})

    def decide_approval(job_id: str, approval_id: str) -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        service = services()
        decision = service.parse_decision(http.json_body(event))
        job = service.decide(tenant, http.job_id(job_id), approval_id, decision)
        count("ApprovalsDecided")
        return json_response(200, service.view(job), {"ETag": etag(job)})

    def list_approvals() -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        limit = http.query_int(event, "limit", 1, MAX_PAGE_SIZE, default=20)
        page = services().approvals(tenant, limit, http.query(event, "next_token"))
        return json_response(200, page, {"Cache-Control": "no-store"})

    def health() -> Response:
        return json_response(200, {"status": "ok"}, {"Cache-Control": "no-store"})

    def list_jobs() -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        limit = http.query_int(event, "limit", 1, MAX_PAGE_SIZE, default=20)
        page = services().list(tenant, limit=limit, next_token=http.query(event, "next_token"))
        return json_response(200, page, {"Cache-Control": "no-store"})

    def get_job(job_id: str) -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        wait = http.query_int(event, "wait", 0, MAX_WAIT_SECONDS, default=0)
        service = services()
        job_id = http.job_id(job_id)
        job = service.wait(tenant, job_id, wait) if wait else service.get(tenant, job_id)
        tag = etag(job)
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if not job.status.is_terminal:
            headers["Retry-After"] = str(POLL_AFTER_SECONDS)
        if _matches(http.header(event, "If-None-Match"), tag):
            return Response(status_code=304, headers=headers)
        return json_response(200, service.view(job), headers)

    def list_job_events(job_id: str) -> Response:
        event = app.current_event.raw_event
        tenant = http.tenant_id(event)
        after = http.query_int(event, "after", 0, MAX_EVENT_CURSOR, default=0)
        wait = http.query_int(event, "wait", 0, MAX_WAIT_SECONDS, default=0)
        page = services().events(tenant, http.job_id(job_id), after, wait)
        headers = {"Cache-Control": "no-store"}
        if not page.done:
            headers["Retry-After"] = str(POLL_AFTER_SECONDS)
        return json_response(200, page, headers)

    def get_session(session_id: str) -> Response:
        event = app.current_event.raw_event
        view = services().get_session(http.tenant_id(event), http.session_id(session_id))
        return json_response(200, view, {"Cache-Control": "no-store"})

    def delete_session(session_id: str) -> Response:
        event = app.current_event.raw_event
        services().delete_session(http.tenant_id(event), http.session_id(session_id))
        return Response(status_code=204, body="")

    def github_event() -> Response:
        if github is None:
            raise RuntimeError("this function has no GitHub events")
        return github().answer(app.current_event.raw_event)

    return {
        "githubEvent": github_event,
        "getSession": get_session,
        "deleteSession": delete_session,
        "submitJob": submit_job,
        "createUpload": create_upload,
        "listJobEvents": list_job_events,
        "cancelJob": cancel_job,
        "decideApproval": decide_approval,
        "listApprovals": list_approvals,
        "health": health,
        "listJobs": list_jobs,
        "getJob": get_job,
    }


def _matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {c.strip().removeprefix("W/") for c in if_none_match.split(",")}
    return "*" in candidates or tag in candidates
