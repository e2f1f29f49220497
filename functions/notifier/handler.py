"""Notifier function: the jobs table's stream → completion events on the bus, and webhooks.

The logic lives in `claude_jobs.notify`; this module only names the function.
"""

import boto3  # noqa: F401  (imported at init: the first batch pays only for its clients)

from claude_jobs.notify.function import NotifierFunction

function = NotifierFunction()
lambda_handler = function.handler
