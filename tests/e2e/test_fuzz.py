"""A short, bounded schemathesis pass over the running local stack: `openapi.json` is what the
API does. (`make fuzz` runs the same for longer, on a stack of its own.)"""

from __future__ import annotations

import pytest

from claude_jobs_tools import fuzz
from claude_jobs_tools.fuzz_hooks import needs_opaque_documents

pytestmark = pytest.mark.e2e


def _nested(levels: int) -> object:
    document: object = {}
    for _ in range(levels):
        document = {"not": document}
    return document


NESTED_40 = _nested(40)

#: Seconds schemathesis may spend (all phases); the test's own limit adds room to start it.
FUZZ_SECONDS = 45


@pytest.mark.timeout(FUZZ_SECONDS + 240)
def test_the_api_answers_as_its_openapi_document_says() -> None:
    # Given the local stack (claude-jobs dev) with a fuzzing tenant's key
    with fuzz.local_stack() as (url, key):
        # When schemathesis runs every check and phase against it for a bounded time
        done = fuzz.run(url, key, FUZZ_SECONDS)
    # Then it found no server error, no answer off the document, no valid request rejected
    # and no invalid one accepted
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, summary


@pytest.mark.parametrize(
    ("document", "excluded"),
    [
        ({"type": "object", "properties": {"a": {"maximum": 10}}}, False),
        ({"properties": {"": {}}}, True),
        ({"maximum": 1e300}, True),
        ({"multipleOf": int("1234567890" * 5)}, True),
        ({"minimum": 5e-324}, True),
        ({"a": [[[]]]}, False),
        (NESTED_40, True),
        (5e-324, True),
        (0.25, False),
    ],
)
def test_the_fuzzer_leaves_out_only_documents_dynamodb_cannot_keep(
    document: object, excluded: bool
) -> None:
    assert needs_opaque_documents(document) is excluded
