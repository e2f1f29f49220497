"""claude-jobs: Claude Code as a serverless job service on AWS.

The shared package. It ships as a Lambda layer for the zip functions and is copied into the
worker image. Importing it reads no environment and builds no AWS client: handlers build their
dependencies explicitly (see :mod:`claude_jobs.wiring`).
"""

__version__ = "0.1.0"
