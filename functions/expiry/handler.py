"""Expired-jobs function: the jobs table's stream (REMOVE records, TTL) → a queued or running
job's item that was removed gives its tenant's slots back.

The logic lives in `claude_jobs.slots`; this module only names the function.
"""

import boto3  # noqa: F401  (imported at init: the first batch pays only for its clients)

from claude_jobs.slots.function import ExpiredJobsFunction

function = ExpiredJobsFunction()
lambda_handler = function.handler
