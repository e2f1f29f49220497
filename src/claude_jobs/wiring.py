"""Composition root: builds adapters and services from Settings, on first use.

Nothing here runs at import time. Handlers keep one instance per container (cold start builds
it once; warm invocations reuse it). boto3 honours AWS_ENDPOINT_URL, which is how the local
stack points everything at its emulator.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from .adapters.events_table import DynamoEventStore
    from .adapters.jobs_table import DynamoJobRepository
    from .adapters.session_store import S3SessionTranscripts
    from .adapters.sessions_table import DynamoSessionRepository
    from .documents import JobDocuments
    from .job_service import JobService
    from .keys import ApiKeyService
    from .uploads import UploadService


class Container:
    """One per process: the settings, the boto3 clients and the services built on them."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    @cached_property
    def settings(self) -> Settings:
        return self._settings or Settings.from_env()

    def client(self, service: str) -> Any:
        """A boto3 client, created once per service (creation is the costly part)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(service)
            return self._clients[service]

    @cached_property
    def _session(self) -> Any:
        """The container's boto3 session (`adapters.aws_session`: botocore's, with a data
        loader that finds a service's model without listing every service first)."""
        from .adapters.aws_session import new_session

        return new_session()

    def lazy_client(self, service: str) -> Any:
        """A stand-in for `client(service)` that creates the client on its first use: for
        adapters that a request may not touch (the status function never sends to the queue;
        the results store only presigns large results), so that building a service does not
        pay for clients its request does not use."""
        return _LazyClient(lambda: self.client(service))

    @cached_property
    def job_repository(self) -> DynamoJobRepository:
        from .adapters.jobs_table import DynamoJobRepository

        return DynamoJobRepository(
            self.client("dynamodb"), self.settings.jobs_table, self.settings.job_retention_days
        )

    @cached_property
    def session_repository(self) -> DynamoSessionRepository:
        """Sessions: items of the jobs table, the ones the job repository's creates take."""
        return self.job_repository.sessions

    @cached_property
    def event_store(self) -> DynamoEventStore:
        """Jobs' progress events (the worker writes, the status function reads)."""
        from .adapters.events_table import DynamoEventStore

        return DynamoEventStore(
            self.lazy_client("dynamodb"),
            self.settings.events_table,
            self.settings.job_retention_days,
        )

    @cached_property
    def job_documents(self) -> JobDocuments:
        """Where job documents too large for the item go: the results bucket (none: inline)."""
        from .adapters.results import S3DocumentStore
        from .documents import JobDocuments

        store = (
            S3DocumentStore(
                self.lazy_client("s3"),
                self.settings.results_bucket,
                self.settings.presigned_url_seconds,
            )
            if self.settings.results_bucket
            else None
        )
        return JobDocuments(store)

    @cached_property
    def job_service(self) -> JobService:
        from .adapters.queue import SqsJobQueue
        from .job_service import JobService

        settings = self.settings
        if settings.page_token_secret_id and not settings.page_token_secret:
            settings = settings.model_copy(update={"page_token_secret": self.page_token_secret})
        return JobService(
            self.job_repository,
            SqsJobQueue(self.lazy_client("sqs"), self.settings.jobs_queue_url),
            settings,
            documents=self.job_documents,
            events=self.event_store,
            sessions=self.session_repository,
            # Only a session's deletion uses them: their module (and asyncio, which it imports
            # for the worker's store) loads then, not with every function's first request.
            transcripts=_LazyClient(lambda: self.session_transcripts),
        )

    @cached_property
    def page_token_secret(self) -> str:
        """The key of list page tokens: PAGE_TOKEN_SECRET, or the value of the secret
        PAGE_TOKEN_SECRET_ID names. Empty → :class:`~.page_tokens.PageTokenSecretError`."""
        from .page_tokens import resolve_page_token_secret

        return resolve_page_token_secret(self.settings, lambda: self.client("secretsmanager"))

    @cached_property
    def session_transcripts(self) -> S3SessionTranscripts:
        from .adapters.session_store import S3SessionTranscripts

        return S3SessionTranscripts(self.lazy_client("s3"), self.settings.results_bucket)

    # -- files (issue 13)
    @cached_property
    def upload_service(self) -> UploadService:
        """Uploads in the results bucket; PUT URLs signed with SigV4 (the signature binds the
        declared size)."""
        from functools import cache

        from .adapters.uploads import S3UploadStore
        from .uploads import UploadService

        @cache
        def presigner() -> Any:
            from botocore.config import Config

            with self._lock:  # a session's clients are created one at a time
                return self._session.client("s3", config=Config(signature_version="s3v4"))

        return UploadService(
            S3UploadStore(
                self.lazy_client("s3"),
                _LazyClient(presigner),  # type: ignore[arg-type]
                self.settings.results_bucket,
            ),
            self.settings,
        )

    @cached_property
    def key_service(self) -> ApiKeyService:
        from .adapters.keys_table import DynamoKeyStore
        from .keys import ApiKeyService

        return ApiKeyService(DynamoKeyStore(self.client("dynamodb"), self.settings.keys_table))


class _LazyClient:
    def __init__(self, create: Any) -> None:
        self._create = create

    def __getattr__(self, name: str) -> Any:
        return getattr(self._create(), name)


class ContainerHolder:
    """A Lambda function object's link to its Container: built from the environment on first
    use (Lambda), or injected (tests, the local stack). Injecting a new one drops whatever the
    function derived from the old one (the cached properties named in `derived`)."""

    derived: tuple[str, ...] = ()

    def __init__(self, container: Container | None = None) -> None:
        self._container = container
        self._container_lock = threading.Lock()

    @property
    def container(self) -> Container:
        with self._container_lock:
            if self._container is None:
                self._container = Container()
            return self._container

    @container.setter
    def container(self, container: Container) -> None:
        with self._container_lock:
            self._container = container
            for name in self.derived:
                self.__dict__.pop(name, None)
