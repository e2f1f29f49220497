"""Worker function: the jobs queue (SQS, batch size 1) → Claude Code runs.

The logic lives in `claude_jobs.worker`; this module only names the function.
Image command: `handler.lambda_handler`.
"""

# The SDK is imported here, in the INIT phase, so that a job's first segment does not spend
# its invocation's time on it (seconds on a cold, busy environment).
import claude_agent_sdk  # noqa: F401

from claude_jobs.worker.function import WorkerFunction

function = WorkerFunction()
lambda_handler = function.handler
