"""Trigger function: S3 object notifications and EventBridge events (rules, schedules) → jobs.

The logic lives in `claude_jobs.triggers`; the triggers and their prompt templates ship next to
this module (`triggers.json`, `templates/<name>/v<N>.md`), versioned with the deployment.
"""

from pathlib import Path

import boto3  # noqa: F401  (imported at init: the first event pays only for its clients)

from claude_jobs.triggers.function import TriggerFunction

function = TriggerFunction(default_config=Path(__file__).with_name("triggers.json"))
lambda_handler = function.handler
