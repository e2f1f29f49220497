"""The local stack's Lambda runtime: warm environments, and retiring one."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_jobs_tools.local.runtime import EnvironmentRetired, FunctionPool, FunctionSpec

HANDLER = """
class Function:
    def retire(self):
        import os
        os._exit(75)  # what Lambda does; the local runtime must replace it

    def handler(self, event, context):
        if event.get("retire"):
            self.retire()
        return {"instance": id(self)}

function = Function()
lambda_handler = function.handler
"""


def test_a_retired_environment_is_dropped_and_the_next_invocation_starts_a_fresh_one(
    tmp_path: Path,
) -> None:
    # Given a function whose handler can retire its execution environment
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(HANDLER)
    pool = FunctionPool(FunctionSpec(name="fn", directory="fn"), tmp_path)
    first = pool.invoke({})
    assert pool.invoke({}) == first  # warm: the same environment serves again
    # When an invocation retires its environment
    with pytest.raises(EnvironmentRetired):
        pool.invoke({"retire": True})
    # Then the process goes on, that environment is gone, and the next call is a cold start
    assert pool.retired == 1
    assert pool.invoke({}) != first and pool.cold_starts == 2
