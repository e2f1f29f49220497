"""The init phase of an API function: what runs once, when Lambda imports `handler.py`.

    with init_phase():
        from claude_jobs.api.app import ApiFunction
        function = ApiFunction("submit")

Two measured savings (`make bench`), neither of which defers any work to the first request:

- the cyclic garbage collector is paused while the modules load. Importing boto3, pydantic and
  Powertools allocates hundreds of thousands of long-lived objects, and the collections that
  allocation triggers find nothing to free (about 0.1 s of a 0.5 s init here). Afterwards the
  objects that exist are frozen (`gc.freeze()`: they are module state, alive as long as the
  container) so warm invocations' collections skip them too, and the collector is re-enabled;
- pydantic's plugin discovery, which reads the entry points of every installed distribution
  at the first model definition, is switched off: the API uses no pydantic plugin.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def init_phase() -> Iterator[None]:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
