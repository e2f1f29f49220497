"""The base of the API's pydantic models: each builds its validator and serializer on first use,
not when its module is imported (issue 28).

An API function imports every model a request may need at its init, but each request uses a
few: building the others' core schemas at import cost a status function about a tenth of its
cold start (`make bench`, from source). A deferred model is built, whole, the first time it
validates, dumps, or appears in another model's schema; what it accepts and how it dumps is
the same (`tests/unit/test_cold_start_imports.py` checks that importing a handler builds none).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model whose validator is built on first use (`defer_build`). A subclass's
    `model_config` adds to this one."""

    model_config = ConfigDict(defer_build=True)
