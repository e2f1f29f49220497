"""The jobs queue in memory."""

from __future__ import annotations

from claude_jobs.models import Job


class InMemoryQueue:
    def __init__(self) -> None:
        self.sent: list[str] = []  # job ids, in order

    def send(self, job: Job) -> None:
        self.sent.append(job.job_id)
