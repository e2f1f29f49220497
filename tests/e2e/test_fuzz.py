"""A short, bounded schemathesis pass over the running local stack: `openapi.json` is what the
API does. (`make fuzz` runs the same for longer, on a stack of its own.)"""

from __future__ import annotations

import pytest

from claude_jobs_tools import fuzz

pytestmark = pytest.mark.e2e


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
