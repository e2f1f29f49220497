"""Reconciler function: a schedule → queued jobs whose message vanished and running jobs whose
lease ended get their message again; each tenant's slot counters are re-counted.

The logic lives in `claude_jobs.reconcile`; this module only names the function.
"""

import boto3  # noqa: F401  (imported at init: the first run pays only for its clients)

from claude_jobs.reconcile.function import ReconcilerFunction

function = ReconcilerFunction()
lambda_handler = function.handler
