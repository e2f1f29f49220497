"""AWS adapters of the ports in :mod:`claude_jobs.ports`."""
