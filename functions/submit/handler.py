"""Submit function: `POST /v1/jobs` and `POST /v1/jobs/{job_id}/cancel`.

The routes live in `claude_jobs.api.routes`; this module only names the function.
"""

from claude_jobs.api.boot import init_phase

with init_phase():
    from claude_jobs.api.app import ApiFunction

    function = ApiFunction("submit")

lambda_handler = function.handler
