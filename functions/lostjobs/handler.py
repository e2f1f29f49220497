"""Lost-jobs function: the jobs dead-letter queue → such jobs end `failed` (`worker_lost`) and
their tenant's slots come back.

The logic lives in `claude_jobs.slots`; this module only names the function.
"""

import boto3  # noqa: F401  (imported at init: the first batch pays only for its clients)

from claude_jobs.slots.function import LostJobsFunction

function = LostJobsFunction()
lambda_handler = function.handler
