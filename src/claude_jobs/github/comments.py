"""The one comment of a job that a GitHub event started: updated when the job ends (the
notifier calls :meth:`JobComments.finished` on a job's completion record). The comment's id is
in the job's metadata (`github_comment_id`, with `github_repository`); a job without it is not
GitHub's. A failure is logged, never raised: the completion event and webhook go on."""

from __future__ import annotations

from typing import Any

from ..models import Job, JobStatus
from ..observability import get_logger
from .credentials import JobCredentials
from .events import COMMENT_PERMISSIONS, MARKER
from .rest import GitHubRest

#: A comment's text at most (GitHub's limit is 65,536 characters).
MAX_COMMENT_CHARS = 60_000

_HEADLINES = {
    JobStatus.SUCCEEDED: "done",
    JobStatus.FAILED: "failed",
    JobStatus.TIMED_OUT: "timed out",
    JobStatus.CANCELLED: "cancelled",
}


def comment_target(job: Job) -> tuple[str, str, int] | None:
    """(owner, name, comment id) of a job a GitHub event started."""
    repository = job.metadata.get("github_repository", "")
    raw_id = job.metadata.get("github_comment_id", "")
    if "/" not in repository or not raw_id.isdigit():
        return None
    owner, name = repository.split("/", 1)
    return owner, name, int(raw_id)


def finished_text(job: Job) -> str:
    """The comment of a finished job: its status, the pull request, the answer."""
    lines = [MARKER, f"Job `{job.job_id}`: {_HEADLINES.get(job.status, job.status.value)}."]
    if job.pull_request is not None:
        lines.append(f"Pull request: {job.pull_request.url}")
    if job.error is not None:
        lines.append(f"Error `{job.error.code}`: {job.error.message}")
    result = job.result
    if result is not None and result.text:
        lines += ["", result.text]
    elif result is not None and result.s3_key:
        lines += ["", f"The answer is large: `GET /v1/jobs/{job.job_id}`."]
    text = "\n".join(lines)
    if len(text) > MAX_COMMENT_CHARS:
        text = text[: MAX_COMMENT_CHARS - 20] + "\n\n(cut short)"
    return text


class JobComments:
    def __init__(self, credentials: JobCredentials, rest: GitHubRest) -> None:
        self._credentials = credentials
        self._rest = rest

    def running(self, job: Job) -> bool:
        """Say in the job's comment that it runs now; True when it was updated."""
        return self._update(job, f"{MARKER}\nJob `{job.job_id}`: running.")

    def finished(self, job: Job) -> bool:
        """Update the job's comment with its outcome; True when it was updated."""
        return self._update(job, finished_text(job))

    def _update(self, job: Job, text: str) -> bool:
        target = comment_target(job)
        if target is None:
            return False
        owner, name, comment_id = target
        context: dict[str, Any] = {"job_id": job.job_id, "tenant_id": job.tenant_id}
        try:
            credential = self._credentials.for_job(job.tenant_id, name, COMMENT_PERMISSIONS)
            try:
                self._rest.update_issue_comment(credential.token, owner, name, comment_id, text)
            finally:
                credential.close()
        except Exception as exc:
            get_logger().warning("github comment not updated: %s", exc, extra=context)
            return False
        get_logger().info("github comment updated", extra=context)
        return True
