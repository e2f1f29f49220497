"""Status function: `GET /v1/jobs/{job_id}` (long-poll, ETag), `GET /v1/jobs`, `GET /v1/health`.

The routes live in `claude_jobs.api.routes`; this module only names the function.
"""

from claude_jobs.api.boot import init_phase

with init_phase():
    from claude_jobs.api.app import ApiFunction

    function = ApiFunction("status")
    # GET /v1/jobs signs its page tokens: no generated secret, no start (on Lambda).
    function.require_page_token_secret()

lambda_handler = function.handler
