"""DELETE /v1/sessions/{session_id} through the submit function's handler removes the session's
transcripts from S3: the transcripts adapter is built on that request (issue 28), not at init."""

from __future__ import annotations

from claude_jobs.adapters.session_store import session_prefix
from claude_jobs_tools.api_gateway_events import rest_event

from .conftest import TENANT, Api
from .test_status import finish, submitted


def test_deleting_a_session_removes_its_transcripts(api: Api) -> None:
    # Given a finished job, and a transcript object under its session's prefix
    job_id = submitted(api)
    finish(api, job_id)
    session_id = api.get_job(job_id).json["session_id"]
    s3 = api.container.client("s3")
    bucket = api.container.settings.results_bucket
    key = session_prefix(TENANT, session_id) + "part-0000000000001-abcdef.jsonl"
    s3.put_object(Bucket=bucket, Key=key, Body=b"{}\n")
    # When its owner deletes the session
    event = rest_event(
        "DELETE", f"/v1/sessions/{session_id}", authorizer={"tenant_id": TENANT, "key_id": "k"}
    )
    answer = api.call(api.submit, event)
    # Then the session is gone, and so is its transcript
    assert answer.status == 204, answer.text
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=session_prefix(TENANT, session_id))
    assert listed.get("KeyCount", 0) == 0
