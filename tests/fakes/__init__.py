"""In-memory implementations of the ports (`claude_jobs.ports`), for fast tests of the domain.

They keep the adapters' semantics (conditional writes, idempotency, newest-first listing) so
that a test on them means what it would mean on AWS; `tests/contract` runs the same suite
against both.
"""

from .agent import Finish, RaiseFault, ScriptedRunner, WaitForStop
from .events import InMemoryEventStore
from .proxy import FakeProxy
from .queue import InMemoryQueue
from .repository import InMemoryJobRepository
from .results import InMemoryDocumentStore
from .sessions import InMemorySessionRepository

__all__ = [
    "FakeProxy",
    "Finish",
    "InMemoryDocumentStore",
    "InMemoryEventStore",
    "InMemoryJobRepository",
    "InMemoryQueue",
    "InMemorySessionRepository",
    "RaiseFault",
    "ScriptedRunner",
    "WaitForStop",
]
