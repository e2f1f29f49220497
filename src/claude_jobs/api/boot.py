"""The init phase of an API function: what runs once, when Lambda imports `handler.py`, and
what runs once more around its first invocation.

    with init_phase():
        from claude_jobs.api.app import ApiFunction
        function = ApiFunction("submit")

Measured savings (`make bench`), none of which defers any work to the first request:

- the cyclic garbage collector is paused while the modules load. Importing boto3, pydantic and
  Powertools allocates hundreds of thousands of long-lived objects, and the collections that
  allocation triggers find nothing to free (about 0.1 s of a 0.5 s init here). Afterwards the
  objects that exist are frozen (`gc.freeze()`: they are module state, alive as long as the
  container) so warm invocations' collections skip them too, and the collector is re-enabled;
- the same for the function's first invocation (`paused_first_invocation`): it builds what
  the container keeps for its life (the boto3 clients, the validators of the models it uses,
  Powertools' logger and metrics), and the collections its allocations trigger free nothing
  either (5-8 ms of CPU to the first answer, from source). What it built is frozen when it
  ends; the collector runs again for every later invocation. Cyclic garbage of that one
  invocation, if any, is frozen with it (as the init's is): a bounded, one-time cost;
- pydantic's plugin discovery, which reads the entry points of every installed distribution
  at the first model definition, is switched off: the API uses no pydantic plugin.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Result = TypeVar("Result")


@contextmanager
def init_phase() -> Iterator[None]:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    with _collector_paused():
        yield


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The collector off meanwhile; then what exists frozen and the collector as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def paused_first_invocation(handler: Callable[..., Result]) -> Callable[..., Result]:
    """`handler`, whose first invocation runs with the collector paused (as the init does) and
    freezes what it built; later invocations run it as it is."""
    first = threading.Event()

    def invoke(event: Any, context: Any) -> Result:
        if first.is_set():
            return handler(event, context)
        first.set()
        with _collector_paused():
            return handler(event, context)

    return invoke
