"""Files in, artifacts out, with the real bundled CLI: uploads placed in the working directory
before the agent starts, files the agent leaves under out/ uploaded when the job ends — and
what a hostile agent leaves there (links to the worker's secrets, FIFOs) is not."""

from __future__ import annotations

import os

import boto3
import pytest

from claude_jobs.documents import ARTIFACTS_PREFIX
from claude_jobs.models import Job, JobRequest, JobStatus, UploadRequest
from claude_jobs_tools.local.fake_anthropic import Text, ToolUse
from tests.worker.conftest import REAL_KEY, WorkerStack, sandboxes_of

pytestmark = pytest.mark.cli


def upload(stack: WorkerStack, filename: str, data: bytes) -> str:
    """An upload of the stack's tenant, its bytes PUT as the caller would."""
    service = stack.container.upload_service
    created = service.create(stack.tenant, UploadRequest(filename=filename, size_bytes=len(data)))
    key = f"uploads/{stack.tenant}/{created.upload_id}/content"
    boto3.client("s3").put_object(
        Bucket=stack.provisioned.settings.results_bucket, Key=key, Body=data
    )
    return created.upload_id


def submit_with(stack: WorkerStack, upload_ids: list[str], **options: object) -> Job:
    request = JobRequest.model_validate(
        {"prompt": "Use the attached files.", "inputs": upload_ids, **options}
    )
    inputs = stack.container.upload_service.resolve(stack.tenant, request.inputs)
    return stack.container.job_service.submit(stack.tenant, request, inputs=inputs).job


def object_bytes(stack: WorkerStack, key: str) -> bytes:
    body = boto3.client("s3").get_object(Bucket=stack.provisioned.settings.results_bucket, Key=key)[
        "Body"
    ]
    return bytes(body.read())


def test_inputs_are_in_the_working_directory_and_out_files_become_artifacts(
    stack: WorkerStack,
) -> None:
    # Given two uploaded files and a job whose agent reads them and writes out/result.txt
    notes = upload(stack, "notes.txt", b"alpha beta\n")
    data = upload(stack, "données 1.csv", b"a,b\n1,2\n")
    job = submit_with(stack, [notes, data], allowed_tools=["Bash", "Read"])
    stack.fake.script(
        ToolUse("Read", {"file_path": "notes.txt"}),
        ToolUse("Bash", {"command": "ls -la && cat notes.txt 'données 1.csv'"}),
        ToolUse(
            "Bash",
            {
                "command": "tr a-z A-Z < notes.txt > out/result.txt && mkdir out/sub "
                "&& cp 'données 1.csv' out/sub/copy.csv"
            },
        ),
        Text("done"),
    )
    # When the worker runs it
    assert stack.deliver(job) == {"batchItemFailures": []}
    # Then the agent saw both files, under their names, with their bytes
    _, after_read, after_ls, _ = stack.fake.message_requests
    (read,) = after_read.tool_results()
    assert not read["is_error"] and "alpha beta" in read["content"]
    (listing,) = after_ls.tool_results()
    assert not listing["is_error"]
    assert "alpha beta" in listing["content"] and "a,b" in listing["content"]
    assert "notes.txt" in listing["content"] and "données 1.csv" in listing["content"]
    # and the job lists what it left under out/, stored beside its documents
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert [(a.path, a.size_bytes) for a in done.artifacts] == [
        ("out/result.txt", 11),
        ("out/sub/copy.csv", 8),
    ]
    prefix = done.documents[ARTIFACTS_PREFIX]
    assert prefix == f"tenant/{stack.tenant}/jobs/{job.job_id}/artifacts/"
    assert object_bytes(stack, prefix + "out/result.txt") == b"ALPHA BETA\n"
    assert object_bytes(stack, prefix + "out/sub/copy.csv") == b"a,b\n1,2\n"
    # and the job's view signs a download URL for each
    view = stack.container.job_service.view(done)
    assert view.artifacts is not None
    assert [a.path for a in view.artifacts] == ["out/result.txt", "out/sub/copy.csv"]
    for artifact in view.artifacts:
        assert artifact.download_url is not None
        assert ARTIFACTS_PREFIX + artifact.path in artifact.download_url
        assert "Signature" in artifact.download_url
    assert sandboxes_of(job) == []


def test_a_hostile_agents_links_to_secrets_are_not_uploaded(stack: WorkerStack) -> None:
    # Given an agent that links out/ entries to the worker's environment (AWS credentials),
    # its parent's, the key's home and the root, makes a FIFO, and writes one real file
    job = stack.submit(allowed_tools=["Bash"])
    plant = (
        "ln -s /proc/self/environ out/self-environ; "
        "ln -s /proc/1/environ out/init-environ; "
        "for p in $(ls /proc | grep -E '^[0-9]+$'); do ln -sf /proc/$p/environ out/x-env-$p; "
        "done 2>/dev/null; "
        "ln -s / out/root; ln -s .. out/up; mkfifo out/pipe; echo real > out/real.txt"
    )
    stack.fake.script(ToolUse("Bash", {"command": plant}), Text("planted"))
    # When the worker runs it
    assert stack.deliver(job) == {"batchItemFailures": []}
    # Then only the regular file is an artifact; links and the FIFO are named as skipped
    done = stack.get(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    # (read back as the API would, from the item or, when long, from the bucket)
    loaded = stack.container.job_documents.load(done, ("artifacts.json",))
    assert [a.path for a in loaded.artifacts] == ["out/real.txt"]
    notes = loaded.artifact_notes
    assert "out/init-environ: skipped, a symbolic link" in notes
    assert sum("skipped, a symbolic link" in n for n in notes) >= 5, notes
    assert len(notes) <= 20  # a flood of links is summed up, not listed
    # and no stored object of the job holds a secret of the worker
    listed = boto3.client("s3").list_objects_v2(
        Bucket=stack.provisioned.settings.results_bucket,
        Prefix=f"tenant/{stack.tenant}/jobs/{job.job_id}/",
    )
    secrets = [REAL_KEY, os.environ["AWS_SECRET_ACCESS_KEY"]]
    for item in listed.get("Contents", []):
        data = object_bytes(stack, item["Key"])
        assert not any(s.encode() in data for s in secrets), item["Key"]
        assert b"AWS_SECRET_ACCESS_KEY" not in data and b"AWS_LAMBDA" not in data


def test_an_upload_gone_before_the_job_runs_fails_it_without_a_retry(stack: WorkerStack) -> None:
    # Given a job whose upload's file is deleted after the submit
    upload_id = upload(stack, "gone.txt", b"soon gone")
    job = submit_with(stack, [upload_id])
    boto3.client("s3").delete_object(
        Bucket=stack.provisioned.settings.results_bucket,
        Key=f"uploads/{stack.tenant}/{upload_id}/content",
    )
    # When the worker runs it
    answer = stack.deliver(job)
    # Then the job failed with input_unavailable naming the upload; the model was never
    # called, and the message is done (no retry loop)
    assert answer == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "input_unavailable"
    assert f"upload {upload_id} (gone.txt) is not readable" in done.error.message
    assert stack.fake.message_requests == []


def test_an_upload_larger_than_declared_fails_the_job(stack: WorkerStack) -> None:
    # Given a job whose upload's file is replaced by a larger one after the submit
    upload_id = upload(stack, "small.txt", b"1234")
    job = submit_with(stack, [upload_id])
    boto3.client("s3").put_object(
        Bucket=stack.provisioned.settings.results_bucket,
        Key=f"uploads/{stack.tenant}/{upload_id}/content",
        Body=b"x" * 5000,
    )
    # When the worker runs it
    answer = stack.deliver(job)
    # Then it fails with a clear code and message, without calling the model or retrying
    assert answer == {"batchItemFailures": []}
    done = stack.get(job)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "input_unavailable"
    assert "is larger than the 4 bytes declared" in done.error.message
    assert stack.fake.message_requests == []
