"""Worker function: the jobs queue (SQS, batch size 1) → Claude Code runs.

The logic lives in `claude_jobs.worker`; this module only names the function.
Image command: `handler.lambda_handler`.
"""

from claude_jobs.worker.function import WorkerFunction

function = WorkerFunction()
lambda_handler = function.handler
