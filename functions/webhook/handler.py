"""Webhook function: the webhook queue (SQS) → signed deliveries, one attempt per message.

The logic lives in `claude_jobs.notify`; this module only names the function.
"""

import boto3  # noqa: F401  (imported at init: the first batch pays only for its clients)

from claude_jobs.notify.webhook_function import WebhookFunction

function = WebhookFunction()
lambda_handler = function.handler
