"""The job service: what the API does, independent of HTTP and of AWS.

One object over the use cases of the `service` package (submit, sessions, queries, events,
cancel), which share a `ServiceContext`; the names callers import live here too."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from .approval_models import ApprovalList, DecisionRequest
from .clock import utcnow
from .documents import JobDocuments
from .errors import FieldError
from .models import EventPage, InputObject, Job, JobList, JobRequest, JobView, SessionView
from .ports import EventStore, JobQueue, JobRepository, SessionRepository, SessionTranscripts
from .service import approvals as _approvals
from .service import cancel as _cancel
from .service import events as _events
from .service import limits as _limits
from .service import queries as _queries
from .service import sessions as _sessions
from .service import submit as _submit
from .service import views as _views
from .service.context import ServiceContext
from .service.context import new_job_id as new_job_id
from .service.events import EVENTS_PAGE_SIZE as EVENTS_PAGE_SIZE
from .service.events import MAX_EVENT_CURSOR as MAX_EVENT_CURSOR
from .service.limits import webhook_url_problem as webhook_url_problem
from .service.queries import MAX_PAGE_SIZE as MAX_PAGE_SIZE
from .service.queries import MAX_WAIT_SECONDS as MAX_WAIT_SECONDS
from .service.queries import long_poll_pauses as long_poll_pauses
from .service.queries import long_poll_reads as long_poll_reads
from .service.sessions import SESSION_TRIES as SESSION_TRIES
from .service.submit import IDEMPOTENCY_KEY_MAX as IDEMPOTENCY_KEY_MAX
from .service.submit import TENANT_LIMIT_RETRY_SECONDS as TENANT_LIMIT_RETRY_SECONDS
from .service.submit import Submission as Submission
from .service.submit import request_hash as request_hash
from .service.views import etag as etag
from .service.views import job_path as job_path
from .settings import Settings


class JobService:
    def __init__(
        self,
        repo: JobRepository,
        queue: JobQueue,
        settings: Settings,
        *,
        documents: JobDocuments | None = None,
        events: EventStore | None = None,
        transcripts: SessionTranscripts | None = None,
        sessions: SessionRepository | None = None,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_job_id,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        #: The ports and settings the use cases share (`sessions`: the job repository's when
        #: none is given).
        self.context = ServiceContext(
            repo=repo,
            queue=queue,
            settings=settings,
            documents=documents or JobDocuments(None),
            events=events,
            transcripts=transcripts,
            session_repository=sessions,
            clock=clock,
            new_id=new_id,
            sleep=sleep,
        )

    # ------------------------------------------------------------ submit

    def check_limits(self, request: JobRequest) -> None:
        """Bounds that depend on the deployment: permitted tools, the budget cap, webhooks."""
        _limits.check_limits(self.context.settings, request)

    def limit_errors(self, body: Mapping[str, Any]) -> list[FieldError]:
        """What in a (possibly otherwise invalid) job body breaks the deployment's bounds."""
        return _limits.limit_errors(self.context.settings, body)

    def parse_request(self, body: Any) -> JobRequest:
        """A submitted body as a JobRequest within the deployment's bounds; otherwise one
        RequestValidationError listing every problem (the model's and the deployment's)."""
        return _limits.parse_request(self.context.settings, body)

    def submit(
        self,
        tenant_id: str,
        request: JobRequest,
        idempotency_key: str | None = None,
        source: str = "api",
        inputs: Sequence[InputObject] = (),
        *,
        pending_cap: bool = True,
        updates_pull_request_of: str | None = None,
    ) -> Submission:
        """Queue a job (`service.submit.submit`)."""
        return _submit.submit(
            self.context,
            tenant_id,
            request,
            idempotency_key,
            source,
            inputs,
            pending_cap=pending_cap,
            updates_pull_request_of=updates_pull_request_of,
        )

    # ------------------------------------------------------------ sessions

    def get_session(self, tenant_id: str, session_id: str) -> SessionView:
        return _sessions.get_session(self.context, tenant_id, session_id)

    def delete_session(self, tenant_id: str, session_id: str) -> None:
        """Delete a session that no job is queued or running in."""
        _sessions.delete_session(self.context, tenant_id, session_id)

    # ------------------------------------------------------------ read

    def get(self, tenant_id: str, job_id: str) -> Job:
        return _queries.get(self.context, tenant_id, job_id)

    def wait(self, tenant_id: str, job_id: str, seconds: float) -> Job:
        """The job as soon as it is terminal, or as it is after `seconds` (the `?wait=`
        long-poll, `service.queries.wait`)."""
        return _queries.wait(self.context, tenant_id, job_id, seconds)

    def view(self, job: Job) -> JobView:
        """What the API shows of a job: its documents read back where they are stored."""
        return _views.view(self.context, job)

    def list(self, tenant_id: str, limit: int = 20, next_token: str | None = None) -> JobList:
        return _queries.list_jobs(self.context, tenant_id, limit, next_token)

    # ------------------------------------------------------------ progress events

    def events(self, tenant_id: str, job_id: str, after: int = 0, wait: float = 0) -> EventPage:
        """The job's progress events after the cursor `after`; with `wait`, the first answer
        that has one (or says the job is done), or an empty one after `wait` seconds."""
        return _events.events(self.context, tenant_id, job_id, after, wait)

    def wait_for_events(self, tenant_id: str, job_id: str, after: int, seconds: float) -> EventPage:
        """The long poll of the events route (`service.events.wait_for_events`)."""
        return _events.wait_for_events(self.context, tenant_id, job_id, after, seconds)

    # ------------------------------------------------------------ approvals

    def parse_decision(self, body: Any) -> DecisionRequest:
        """A decision body; RequestValidationError listing every problem."""
        return _approvals.parse_decision(body)

    def decide(
        self, tenant_id: str, job_id: str, approval_id: str, request: DecisionRequest
    ) -> Job:
        """Record a decision on the job's pending approval and queue the job again
        (`service.approvals.decide`)."""
        return _approvals.decide(self.context, tenant_id, job_id, approval_id, request)

    def approvals(
        self, tenant_id: str, limit: int = 20, next_token: str | None = None
    ) -> ApprovalList:
        """The tenant's pending approvals, oldest first."""
        return _approvals.list_approvals(self.context, tenant_id, limit, next_token)

    # ------------------------------------------------------------ cancel

    def cancel(self, tenant_id: str, job_id: str) -> Job:
        """Cancel a queued job, or one awaiting a decision, at once; ask a running one to stop
        (the worker watches).

        A job already terminal is returned unchanged."""
        return _cancel.cancel(self.context, tenant_id, job_id)
