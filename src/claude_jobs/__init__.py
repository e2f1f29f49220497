"""claude-jobs: Claude Code as a serverless job service on AWS.

The runtime package: what ships. The Lambda layer carries it (without `worker/`) for the zip
functions, and the worker image copies it whole; the command line, the local stack, fakes and
generators live in `claude_jobs_tools`, which never ships. Importing it reads no environment and
builds no AWS client: handlers build their dependencies explicitly (see :mod:`claude_jobs.wiring`).
"""

__version__ = "0.1.0"
