"""TOKEN authorizer: `Authorization: Bearer <api key>` → Allow policy with the key's tenant.

The logic lives in `claude_jobs.api.authorizer`; this module only names the function.
"""

from claude_jobs.api.boot import init_phase

with init_phase():
    # Imported at init so that the first request pays only for creating its client.
    import boto3  # noqa: F401

    from claude_jobs.adapters import keys_table  # noqa: F401
    from claude_jobs.api.authorizer import Authorizer

    authorizer = Authorizer()

lambda_handler = authorizer.handler
