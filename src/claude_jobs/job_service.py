"""The job service: what the API does, independent of HTTP and of AWS."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import long_poll
from .clock import epoch, utcnow
from .documents import ARTIFACTS_PREFIX, PROMPTS, RESULT_TEXT, VIEWED, JobDocuments
from .errors import (
    DispatchError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyReplayError,
    InvalidCursorError,
    JobNotFoundError,
    RequestValidationError,
    SessionBusyError,
    SessionConflictError,
    SessionNotFoundError,
    TenantLimitError,
    TransitionConflictError,
)
from .models import (
    ArtifactView,
    EventPage,
    InputObject,
    InputView,
    Job,
    JobLinks,
    JobList,
    JobRequest,
    JobStatus,
    JobView,
    ResultView,
    SessionRecord,
    SessionView,
    WebhookDelivery,
    tool_base_name,
)
from .ports import (
    EventStore,
    IdempotencyClaim,
    JobQueue,
    JobRepository,
    SessionClaim,
    SessionRepository,
    SessionTranscripts,
    Transition,
)
from .settings import Settings

MAX_WAIT_SECONDS = long_poll.MAX_WAIT_SECONDS
MAX_PAGE_SIZE = 100
#: Progress events per answer of `GET /v1/jobs/{id}/events` at most.
EVENTS_PAGE_SIZE = 200
#: The highest `after` cursor accepted (well above a job's event bound).
MAX_EVENT_CURSOR = 999_999
IDEMPOTENCY_KEY_MAX = 128
#: Retry-After of a 429 tenant_limit: about the time a short job takes to free a slot.
TENANT_LIMIT_RETRY_SECONDS = 10
#: Tries of a session write that lost a race (the session changed since it was read).
SESSION_TRIES = 3
#: A session held by no job that can match: the claim made to let an idempotent replay answer
#: before a session's refusal (its condition always fails otherwise).
_REFUSED = "\x00refused"


def long_poll_pauses(quiet_seconds: float = 0.0) -> Iterator[float]:
    """The pauses of one long-poll of a job quiet for `quiet_seconds`, in order, without end
    (the caller stops at its deadline); the schedule is `long_poll.py`'s."""
    return long_poll.pauses(quiet_seconds)


def long_poll_reads(seconds: float) -> int:
    """How many control reads a long-poll of a job that changed as it began and stays
    unfinished makes in `seconds` (the two full reads at its ends not counted)."""
    return long_poll.reads_in(seconds)


def webhook_url_problem(url: str, *, allow_loopback: bool) -> str | None:
    """Why `url` may not receive webhooks, or None when it may.

    https only, to a public host: no credentials in the URL and no private, loopback or
    link-local address literal (a job must not make the service call into its own network).
    The local stack alone also accepts http to a loopback host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or port == 0:
        return "must be an absolute URL with a host and no credentials"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    loopback = host == "localhost" or (address is not None and address.is_loopback)
    if allow_loopback and loopback and parts.scheme in ("http", "https"):
        return None
    if parts.scheme != "https":
        return "must use https"
    if loopback or host.endswith(".localhost"):
        return "must not target a loopback host"
    if address is not None and not address.is_global:
        return "must not target a private or reserved address"
    return None


def new_job_id() -> str:
    return str(uuid.uuid4())


def request_hash(request: JobRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def etag(job: Job) -> str:
    return '"' + hashlib.sha256(f"{job.job_id}:{job.version}".encode()).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False when an idempotent replay returned an earlier job


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
        self._transcripts = transcripts
        self._repo = repo
        self._given_sessions = sessions
        self._queue = queue
        self._settings = settings
        self._documents = documents or JobDocuments(None)
        self._events = events
        self._clock = clock
        self._new_id = new_id
        self._sleep = sleep

    @property
    def _sessions(self) -> SessionRepository:
        """The session repository given, else the job repository's (its creates take them)."""
        return self._given_sessions if self._given_sessions is not None else self._repo.sessions

    # ------------------------------------------------------------ submit

    def check_limits(self, request: JobRequest) -> None:
        """Bounds that depend on the deployment: permitted tools, the budget cap, webhooks."""
        errors = self.limit_errors(request.model_dump())
        if errors:
            raise RequestValidationError("The request is not valid.", errors)

    def limit_errors(self, body: Mapping[str, Any]) -> list[FieldError]:
        """What in a (possibly otherwise invalid) job body breaks the deployment's bounds.

        Looks only at values of the right type, so that it can run beside the model's own
        validation and a caller learns every problem of a request at once."""
        errors: list[FieldError] = []
        permitted = set(self._settings.permitted_tools)
        tools = body.get("allowed_tools")
        for i, tool in enumerate(tools if isinstance(tools, list) else []):
            if isinstance(tool, str) and tool_base_name(tool) not in permitted:
                errors.append(
                    FieldError(
                        ("body", "allowed_tools", i),
                        f"{tool!r} is not permitted here; permitted: "
                        + ", ".join(sorted(permitted)),
                    )
                )
        cap = self._settings.max_budget_usd_cap
        budget = body.get("max_budget_usd")
        if isinstance(budget, int | float) and not isinstance(budget, bool) and budget > cap:
            errors.append(
                FieldError(("body", "max_budget_usd"), f"must be at most {cap} (deployment cap)")
            )
        timeout = body.get("timeout_seconds")
        most = self._settings.max_job_seconds
        if isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > most:
            errors.append(
                FieldError(
                    ("body", "timeout_seconds"),
                    f"must be at most {most} (the deployment's max_job_seconds)",
                )
            )
        webhook = body.get("webhook_url")
        if isinstance(webhook, str):
            problem = webhook_url_problem(
                webhook, allow_loopback=self._settings.allow_loopback_webhooks
            )
            if problem:
                errors.append(FieldError(("body", "webhook_url"), problem))
        return errors

    def parse_request(self, body: Any) -> JobRequest:
        """A submitted body as a JobRequest within the deployment's bounds; otherwise one
        RequestValidationError listing every problem (the model's and the deployment's)."""
        from pydantic import ValidationError

        try:
            request = JobRequest.model_validate(body)
        except ValidationError as exc:
            errors = [
                FieldError(("body", *err["loc"]), err["msg"])
                for err in exc.errors(include_url=False, include_input=False)
            ]
            seen = {e.loc for e in errors}
            if isinstance(body, Mapping):
                errors += [e for e in self.limit_errors(body) if e.loc not in seen]
            raise RequestValidationError("The request is not valid.", errors) from None
        self.check_limits(request)
        return request

    def submit(
        self,
        tenant_id: str,
        request: JobRequest,
        idempotency_key: str | None = None,
        source: str = "api",
        inputs: Sequence[InputObject] = (),
        *,
        pending_cap: bool = True,
    ) -> Submission:
        """Queue a job. `pending_cap`: refuse it (TenantLimitError) when the tenant already has
        `tenant_max_pending` pending jobs; the trigger path turns it off (its sources are the
        deployment's own configuration, and an event refused would be retried and then
        dead-lettered instead of run), the job still counts and waits for its running share."""
        self.check_limits(request)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
            raise RequestValidationError(
                "Idempotency-Key must be 1-128 characters.",
                [FieldError(("header", "Idempotency-Key"), "must be 1-128 characters")],
            )
        now = self._clock()
        options = request.options()
        if options.model is None:
            options.model = self._settings.default_model
        job = Job(
            job_id=self._new_id(),
            tenant_id=tenant_id,
            status=JobStatus.QUEUED,
            created_at=now,
            prompt=request.prompt,
            system_prompt=request.system_prompt,
            options=options,
            metadata=request.metadata,
            source=source,
            inputs=list(inputs),
            webhook=WebhookDelivery(url=request.webhook_url) if request.webhook_url else None,
            version=1,
        )
        # Large documents go to the store before the item that names them is written.
        job = self._documents.place_request(job)
        body_hash = request_hash(request)
        claim = (
            IdempotencyClaim(
                tenant_id=tenant_id,
                key=idempotency_key,
                body_hash=body_hash,
                expires_at=epoch(now + timedelta(seconds=self._settings.idempotency_ttl_seconds)),
            )
            if idempotency_key
            else None
        )
        try:
            self._create(job, claim, request.session_id, pending_cap=pending_cap)
        except TenantLimitError as limit:
            self._documents.discard_prompts(job)  # nothing will read them
            limit.retry_after_seconds = TENANT_LIMIT_RETRY_SECONDS
            raise
        except IdempotencyReplayError as replay:
            self._documents.discard_prompts(job)
            if replay.body_hash != body_hash:
                raise IdempotencyConflictError(
                    "This Idempotency-Key was already used with a different request body."
                ) from None
            earlier = self._repo.get(replay.job_id)
            if earlier is None:  # its job expired: the key is effectively free again
                raise
            return Submission(earlier, created=False)
        except (SessionNotFoundError, SessionBusyError):
            self._documents.discard_prompts(job)
            raise
        try:
            self._queue.send(job)
        except Exception as exc:
            # The job must not sit in `queued` forever: fail it now, and free the key so the
            # caller's retry with the same Idempotency-Key makes a fresh job.
            message = f"the job could not be queued ({type(exc).__name__}); submit it again"
            self._repo.fail_dispatch(job.job_id, claim, message, self._clock())
            self._documents.discard_prompts(job)
            raise DispatchError(message) from exc
        return Submission(job, created=True)

    def _create(
        self,
        job: Job,
        claim: IdempotencyClaim | None,
        session_id: str | None,
        *,
        pending_cap: bool = True,
    ) -> None:
        """Create the job with its take of its session (a new one, or `session_id`), retrying
        when the session changed between its read and the write; `pending_cap`: see submit."""
        for _ in range(SESSION_TRIES):
            refusal: Exception | None = None
            try:
                session = self._session_claim(job, session_id)
            except (SessionNotFoundError, SessionBusyError) as refused:
                if claim is None:
                    raise
                # A replay of an earlier submission (whose job holds this session) must still
                # answer with that job: try the create with a claim that cannot succeed, so
                # that the idempotency record answers first.
                refusal = refused
                session = SessionClaim(
                    session_id=session_id or "",
                    tenant_id=job.tenant_id,
                    job_id=job.job_id,
                    at=job.created_at,
                    expires_at=0,
                    new=False,
                    expected_active=_REFUSED,
                )
            job.session_id = session.session_id
            try:
                cap = self._settings.tenant_max_pending if pending_cap else None
                self._repo.create(job, claim, max_pending=cap, session=session)
                return
            except SessionConflictError:
                if refusal is not None:
                    raise refusal from None
                continue  # it changed since it was read: look again
        raise SessionBusyError("The session is being continued by another request.")

    def _session_claim(self, job: Job, session_id: str | None) -> SessionClaim:
        expires_at = epoch(job.created_at + timedelta(days=self._settings.session_retention_days))
        if session_id is None:
            return SessionClaim(
                session_id=str(uuid.uuid4()),
                tenant_id=job.tenant_id,
                job_id=job.job_id,
                at=job.created_at,
                expires_at=expires_at,
                new=True,
            )
        record = self._session(job.tenant_id, session_id)
        self._check_idle(record)
        return SessionClaim(
            session_id=session_id,
            tenant_id=job.tenant_id,
            job_id=job.job_id,
            at=job.created_at,
            expires_at=expires_at,
            new=False,
            expected_active=record.active_job,
        )

    def _session(self, tenant_id: str, session_id: str) -> SessionRecord:
        record = self._sessions.get(session_id)
        if record is None or record.tenant_id != tenant_id or record.deleted:
            # Another tenant's session is indistinguishable from a missing one.
            raise SessionNotFoundError(f"No session {session_id}.")
        return record

    def _check_idle(self, record: SessionRecord) -> None:
        """SessionBusyError while the job that holds the session is queued or running."""
        if record.active_job is None:
            return
        active = self._repo.get(record.active_job)
        if active is not None and not active.status.is_terminal:
            raise SessionBusyError(
                f"Session {record.session_id} has a job {active.status.value} "
                f"({active.job_id}); continue it once that job has ended."
            )

    # ------------------------------------------------------------ sessions

    def get_session(self, tenant_id: str, session_id: str) -> SessionView:
        record = self._session(tenant_id, session_id)
        return SessionView(
            session_id=record.session_id,
            created_at=record.created_at,
            updated_at=record.updated_at,
            job_ids=record.job_ids,
        )

    def delete_session(self, tenant_id: str, session_id: str) -> None:
        """Delete a session that no job is queued or running in: it is marked deleted (from
        then on it is unknown), its transcripts are removed, then its item."""
        record = self._sessions.get(session_id)
        if record is not None and record.tenant_id == tenant_id and record.deleted:
            self._remove_session(tenant_id, session_id)  # finish an interrupted delete
            return
        for _ in range(SESSION_TRIES):
            record = self._session(tenant_id, session_id)
            self._check_idle(record)
            try:
                self._sessions.mark_deleted(session_id, tenant_id, record.active_job)
                break
            except SessionConflictError:
                continue
        else:
            raise SessionBusyError("The session is being continued by another request.")
        self._remove_session(tenant_id, session_id)

    def _remove_session(self, tenant_id: str, session_id: str) -> None:
        if self._transcripts is not None:
            self._transcripts.delete(tenant_id, session_id)
        self._sessions.remove(session_id)

    # ------------------------------------------------------------ read

    def get(self, tenant_id: str, job_id: str) -> Job:
        job = self._repo.get(job_id)
        if job is None or job.tenant_id != tenant_id:
            # Another tenant's job is indistinguishable from a missing one.
            raise JobNotFoundError(f"No job {job_id}.")
        return job

    def wait(self, tenant_id: str, job_id: str, seconds: float) -> Job:
        """The job as soon as it is terminal, or as it is after `seconds` (the `?wait=` long-poll).

        One strongly consistent read of the whole job (it checks the tenant), then cheap polls
        of its control attributes — an eventually consistent read of three attributes, as the
        worker's cancel poll — whose pauses grow with how long the job has been quiet
        (`long_poll.py`): a job that started a moment ago is read every 50 ms, one quiet for
        8 s and more every 2.5 s, and a status change the poll sees starts the ramp again.
        The answer is read again in full, strongly consistent, once a poll sees the job
        terminal or the wait is up. A stale poll only delays the answer by one step (a
        terminal job never changes again). Cost per waiting minute:
        `long_poll.reads_per_waiting_minute()` reads (≤ 60)."""
        deadline = time.monotonic() + min(max(seconds, 0), MAX_WAIT_SECONDS)
        job = self.get(tenant_id, job_id)
        if job.status.is_terminal:
            return job
        status, quiet = job.status, self._quiet_seconds(job)
        while (left := deadline - time.monotonic()) > 0:
            pause = long_poll.pause_for(quiet)
            self._sleep(min(pause, left))
            quiet += pause
            control = self._repo.control(job_id)
            if control is None or control.status.is_terminal:
                break
            if control.status is not status:
                status, quiet = control.status, 0.0  # a change: the next one may come soon
        return self.get(tenant_id, job_id)

    def _quiet_seconds(self, job: Job) -> float:
        """How long the job has not changed, as its timestamps tell (its creation or start)."""
        changed = max(t for t in (job.created_at, job.started_at) if t is not None)
        return max((self._clock() - changed).total_seconds(), 0.0)

    # ------------------------------------------------------------ progress events

    def events(self, tenant_id: str, job_id: str, after: int = 0, wait: float = 0) -> EventPage:
        """The job's progress events after the cursor `after`; with `wait`, the first answer
        that has one (or says the job is done), or an empty one after `wait` seconds."""
        if not 0 <= after <= MAX_EVENT_CURSOR:
            raise RequestValidationError(
                "after is not a cursor this API returned.",
                [
                    FieldError(
                        ("query", "after"), f"must be an integer from 0 to {MAX_EVENT_CURSOR}"
                    )
                ],
            )
        if wait:
            return self.wait_for_events(tenant_id, job_id, after, wait)
        return self._events_page(tenant_id, job_id, after)

    def wait_for_events(self, tenant_id: str, job_id: str, after: int, seconds: float) -> EventPage:
        """The long poll of the events route: its schedule lives here alone.

        The first look reads the job and its events (`_events_page`). While it finds nothing
        newer and the job is not done, the poll probes the events table for one event after
        `after` and, every `long_poll.STATUS_EVERY`-th step, the job's control attributes (a
        job can end with no newer event: cancelled while queued, a run no worker ended), with
        the pauses of `long_poll.py` (they grow with how long the job has been quiet). Once a
        probe finds something, the answer is a full look again; a wait that ends with nothing
        found answers the first look (nothing newer, not done)."""
        deadline = time.monotonic() + min(max(seconds, 0), MAX_WAIT_SECONDS)
        job = self.get(tenant_id, job_id)
        page = self._events_page(tenant_id, job_id, after, job)
        if page.items or page.done:
            return page
        status, quiet, step = job.status, self._quiet_seconds(job), 0
        while (left := deadline - time.monotonic()) > 0:
            pause = long_poll.pause_for(quiet)
            self._sleep(min(pause, left))
            quiet += pause
            step += 1
            if self._events is not None and self._events.read(job_id, after, 1):
                return self._events_page(tenant_id, job_id, after)
            if self._events is None or step % long_poll.STATUS_EVERY == 0:
                control = self._repo.control(job_id)
                if control is None or control.status.is_terminal:
                    return self._events_page(tenant_id, job_id, after)
                if control.status is not status:
                    status, quiet = control.status, 0.0
        return page

    def _events_page(
        self, tenant_id: str, job_id: str, after: int, job: Job | None = None
    ) -> EventPage:
        """One look: the job first (tenant check; terminal?), then its stored events.

        The worker stores a run's events before the job's terminal write, so events read after
        the job was seen terminal are all there are. Transitions no worker recorded (a job
        cancelled while queued, one failed without a run, a worker that died) are shown as
        the status events the worker would have written: `queued` at seq 1 while nothing is
        stored, the terminal status after the last stored event when that is not it."""
        job = job or self.get(tenant_id, job_id)
        stored = self._events.read(job_id, after, EVENTS_PAGE_SIZE + 1) if self._events else []
        if len(stored) > EVENTS_PAGE_SIZE:
            items = stored[:EVENTS_PAGE_SIZE]
            return _event_page(items, after, done=False)
        terminal = job.status.is_terminal
        if stored:
            tail: dict[str, Any] | None = stored[-1]
        elif after == 0 or not terminal:
            tail = None  # (nothing newer is stored; `queued` is shown only at seq 1)
        else:
            tail = self._last_stored_event(job_id, after)
        items = list(stored)
        for ending in _shown_endings(job, tail):
            if ending["seq"] > after:
                items.append(ending)
        return _event_page(items, after, done=terminal)

    def _last_stored_event(self, job_id: str, after: int) -> dict[str, Any] | None:
        """The job's last stored event, known to be at seq `after` or before."""
        if self._events is None:
            return None
        seen = self._events.read(job_id, after - 1, 1)
        if seen and seen[0].get("seq") == after:
            return seen[0]
        last = self._events.last_seq(job_id)
        if last == 0:
            return None
        found = self._events.read(job_id, last - 1, 1)
        return found[0] if found else None

    def view(self, job: Job) -> JobView:
        """What the API shows of a job: its documents read back where they are stored."""
        return self._view(self._documents.load(job, (*VIEWED, RESULT_TEXT)))

    def _view(self, job: Job) -> JobView:
        result = None
        store = self._documents.store
        if job.result is not None:
            result = ResultView(
                text=job.result.text,
                structured=job.result.structured,
                is_error=job.result.is_error,
                download_url=(
                    store.download_url(job.result.s3_key)
                    if job.result.s3_key and store is not None
                    else None
                ),
            )
        return JobView(
            job_id=job.job_id,
            status=job.status,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts,
            request=job.options,
            metadata=job.metadata,
            result=result,
            usage=job.usage,
            error=job.error,
            webhook=job.webhook,
            session_id=job.session_id,
            segments=job.segments,
            **self._files_view(job),
            links=JobLinks(self=job_path(job.job_id)),
        )

    def _files_view(self, job: Job) -> dict[str, Any]:
        """Files (issue 13): the job's uploads, and its artifacts with download URLs signed
        now (a URL is valid for PRESIGNED_URL_SECONDS from this read)."""
        view: dict[str, Any] = {}
        uploads = [
            InputView(upload_id=i.upload_id, filename=i.filename or "", size_bytes=i.size)
            for i in job.inputs
            if i.upload_id is not None
        ]
        if uploads:
            view["inputs"] = uploads
        store = self._documents.store
        prefix = job.documents.get(ARTIFACTS_PREFIX)
        if job.artifacts or job.artifact_notes:
            view["artifacts"] = [
                ArtifactView(
                    path=a.path,
                    size_bytes=a.size_bytes,
                    download_url=store.download_url(prefix + a.path)
                    if store is not None and prefix
                    else None,
                )
                for a in job.artifacts
            ]
        if job.artifact_notes:
            view["artifact_notes"] = job.artifact_notes
        return view

    def list(self, tenant_id: str, limit: int = 20, next_token: str | None = None) -> JobList:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise RequestValidationError(
                "limit is out of range.",
                [FieldError(("query", "limit"), f"must be between 1 and {MAX_PAGE_SIZE}")],
            )
        secret = self._settings.page_token_secret
        cursor = _decode_token(next_token, tenant_id, secret) if next_token else None
        try:
            page = self._repo.list_for_tenant(tenant_id, limit, cursor)
        except InvalidCursorError:
            raise _decode_error() from None
        jobs = self._documents.load_many(page.jobs, (*VIEWED, RESULT_TEXT))
        return JobList(
            items=[self._view(j) for j in jobs],
            next_token=_encode_token(page.cursor, tenant_id, secret) if page.cursor else None,
        )

    # ------------------------------------------------------------ cancel

    def cancel(self, tenant_id: str, job_id: str) -> Job:
        """Cancel a queued job at once; ask a running one to stop (the worker watches).

        A job already terminal is returned unchanged."""
        job = self.get(tenant_id, job_id)
        try:
            if job.status is JobStatus.QUEUED:
                cancelled = self._repo.transition(
                    Transition(
                        job_id=job_id,
                        from_=[JobStatus.QUEUED],
                        to=JobStatus.CANCELLED,
                        set_fields={
                            "finished_at": self._clock(),
                            "documents": {
                                k: v for k, v in job.documents.items() if k not in PROMPTS
                            },
                        },
                        remove_fields=list(PROMPTS),
                        expected_version=job.version,
                    )
                )
                self._documents.discard_prompts(job)
                return cancelled
            if job.status is JobStatus.RUNNING:
                return self._repo.update(
                    job_id,
                    set_fields={"cancel_requested": True},
                    expected_status=[JobStatus.RUNNING],
                )
        except TransitionConflictError as conflict:
            # It moved on meanwhile (started, or finished): act on where it is now.
            if isinstance(conflict.current, Job) and not conflict.current.status.is_terminal:
                return self.cancel(tenant_id, job_id)
            return self.get(tenant_id, job_id)
        return job


def _shown_endings(job: Job, tail: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The status events no worker stored that a reader is shown after `tail`, the job's last
    stored event: `queued` at seq 1 when nothing is stored, and the job's terminal status
    when it is terminal and `tail` is not that status (numbered as the worker would)."""
    shown: list[dict[str, Any]] = []
    seq = int(tail["seq"]) if tail is not None else 0
    if tail is None:
        seq = 1
        shown.append(_status_event(1, job.created_at, JobStatus.QUEUED))
    ended = tail is not None and tail.get("type") == "status" and tail.get("status") == job.status
    if job.status.is_terminal and not ended:
        at = job.finished_at or job.started_at or job.created_at
        shown.append(_status_event(seq + 1, at, job.status))
    return shown


def _status_event(seq: int, at: datetime, status: JobStatus) -> dict[str, Any]:
    # Milliseconds, as the worker records times: the same event reads the same either way.
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    return {"seq": seq, "at": at, "type": "status", "status": status.value}


def _event_page(items: Sequence[Mapping[str, Any]], after: int, *, done: bool) -> EventPage:
    cursor = str(items[-1]["seq"]) if items else str(after)
    return EventPage.model_validate({"items": list(items), "next_cursor": cursor, "done": done})


def _token_key(secret: str) -> bytes:
    return hashlib.sha256(f"claude-jobs page token\x00{secret}".encode()).digest()


def _encode_token(cursor: Mapping[str, Any], tenant_id: str, secret: str) -> str:
    """An opaque page token: the repository's cursor bound to the tenant, and a MAC over both
    (a token altered by a byte, or made for another tenant, is refused)."""
    payload = json.dumps({"t": tenant_id, "c": cursor}, separators=(",", ":")).encode()
    mac = hmac.new(_token_key(secret), payload, hashlib.sha256).digest()[:16]
    return _b64(payload) + "." + _b64(mac)


def _decode_error() -> RequestValidationError:
    return RequestValidationError(
        "next_token is not valid.",
        [FieldError(("query", "next_token"), "not a token this API returned")],
    )


def _decode_token(token: str, tenant_id: str, secret: str) -> dict[str, Any]:
    invalid = _decode_error()
    try:
        if len(token) > 4096:
            raise ValueError("too long")
        body, mac = token.split(".")
        payload, tag = _unb64(body), _unb64(mac)
        expected = hmac.new(_token_key(secret), payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(tag, expected):
            raise ValueError("altered")
        data = json.loads(payload)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("t") != tenant_id:
        raise invalid
    if not isinstance(data.get("c"), dict):
        raise invalid
    cursor: dict[str, Any] = data["c"]
    return cursor


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
