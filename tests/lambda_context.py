"""A real-shaped Lambda context, for calling a function's handler directly.

Powertools reads its fields (name, memory, ARN, request id) into every log line; the local
runtime's context is the one the local stack passes, sized from the definition table.
"""

from __future__ import annotations

from claude_jobs.definitions import FUNCTIONS
from claude_jobs_tools.local.runtime import LambdaContext


def lambda_context(function: str) -> LambdaContext:
    """A fresh context of the named function (a new request id each time)."""
    definition = FUNCTIONS[function]
    return LambdaContext(
        function_name=f"claude-jobs-{function}",
        memory_limit_in_mb=definition.memory_mb,
        timeout_seconds=definition.timeout_seconds,
    )
