"""What the use cases share: the ports, the settings, the clock."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..clock import utcnow
from ..documents import JobDocuments
from ..ports import EventStore, JobQueue, JobRepository, SessionRepository, SessionTranscripts
from ..settings import Settings


def new_job_id() -> str:
    return str(uuid.uuid4())


@dataclass
class ServiceContext:
    """One per `JobService`. Mutable, so that a test may swap a port of a built service."""

    repo: JobRepository
    queue: JobQueue
    settings: Settings
    documents: JobDocuments = field(default_factory=lambda: JobDocuments(None))
    events: EventStore | None = None
    transcripts: SessionTranscripts | None = None
    session_repository: SessionRepository | None = None
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = new_job_id
    sleep: Callable[[float], None] = time.sleep

    @property
    def sessions(self) -> SessionRepository:
        """The session repository given, else the job repository's (its creates take them)."""
        if self.session_repository is not None:
            return self.session_repository
        return self.repo.sessions
