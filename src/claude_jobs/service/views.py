"""What the API shows of a job: its view, with its documents read back and URLs signed."""

from __future__ import annotations

import hashlib
from typing import Any

from ..approval_models import PendingApprovalView
from ..documents import ARTIFACTS_PREFIX, RESULT_TEXT, VIEWED, JobDocuments
from ..models import ArtifactView, InputView, Job, JobLinks, JobStatus, JobView, ResultView
from .context import ServiceContext


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def etag(job: Job) -> str:
    return '"' + hashlib.sha256(f"{job.job_id}:{job.version}".encode()).hexdigest()[:32] + '"'


def view(ctx: ServiceContext, job: Job) -> JobView:
    """What the API shows of a job: its documents read back where they are stored."""
    return render(ctx.documents, ctx.documents.load(job, (*VIEWED, RESULT_TEXT)))


def render(documents: JobDocuments, job: Job) -> JobView:
    """The view of a job whose documents are loaded."""
    result = None
    store = documents.store
    if job.result is not None:
        result = ResultView(
            text=job.result.text,
            structured=job.result.structured,
            is_error=job.result.is_error,
            download_url=(
                store.download_url(job.result.s3_key)
                if job.result.s3_key and store is not None
                else None
            ),
        )
    return JobView(
        job_id=job.job_id,
        status=job.status,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        request=job.options,
        metadata=job.metadata,
        result=result,
        usage=job.usage,
        error=job.error,
        webhook=job.webhook,
        session_id=job.session_id,
        segments=job.segments,
        pending_approval=(
            PendingApprovalView.of(job.pending_approval)
            if job.pending_approval is not None and job.status is JobStatus.AWAITING_APPROVAL
            else None
        ),
        pull_request=job.pull_request,
        pull_request_skipped="no_changes" if job.pull_request_skipped == "no_changes" else None,
        **_files_view(documents, job),
        links=JobLinks(self=job_path(job.job_id)),
    )


def _files_view(documents: JobDocuments, job: Job) -> dict[str, Any]:
    """Files (issue 13): the job's uploads, and its artifacts with download URLs signed now
    (a URL is valid for PRESIGNED_URL_SECONDS from this read)."""
    shown: dict[str, Any] = {}
    uploads = [
        InputView(upload_id=i.upload_id, filename=i.filename or "", size_bytes=i.size)
        for i in job.inputs
        if i.upload_id is not None
    ]
    if uploads:
        shown["inputs"] = uploads
    store = documents.store
    prefix = job.documents.get(ARTIFACTS_PREFIX)
    if job.artifacts or job.artifact_notes:
        shown["artifacts"] = [
            ArtifactView(
                path=a.path,
                size_bytes=a.size_bytes,
                download_url=store.download_url(prefix + a.path)
                if store is not None and prefix
                else None,
            )
            for a in job.artifacts
        ]
    if job.artifact_notes:
        shown["artifact_notes"] = job.artifact_notes
    return shown
