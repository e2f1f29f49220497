"""The fake key proxy the tests use: the one in `claude_jobs_tools.scripted_agent`."""

from claude_jobs_tools.scripted_agent import FakeProxy

__all__ = ["FakeProxy"]
