"""Files in, artifacts out, over HTTP through the local stack: the presigned PUT served by the
emulator, the real CLI reading the uploaded file and writing out/, the artifact's presigned
GET — by hand, with the client library, and with `claude-jobs submit --file` / `download`."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from claude_jobs_client import ApiError, Client

from .conftest import BASH_COMMANDS, CLAUDE_JOBS, TENANTS, DevProcess, base_env

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(300)]

JOB_WAIT = 120


def auth(tenant: str = "alpha") -> dict[str, str]:
    return {"Authorization": f"Bearer {TENANTS[tenant]}"}


def bash_prompt(command: str) -> str:
    """A prompt the fake model answers by running `command` with Bash, then its output."""
    name = uuid.uuid4().hex[:10]
    BASH_COMMANDS[name] = command
    return f"Work on the attached files. [[bash:{name}]]"


def test_an_upload_put_over_http_reaches_the_agent_and_its_artifact_downloads(
    stack: DevProcess,
) -> None:
    data = f"line one {uuid.uuid4().hex}\nline two\n".encode()
    with httpx.Client(base_url=stack.url, headers=auth(), timeout=60) as http:
        # Given an upload created over HTTP
        created = http.post("/v1/uploads", json={"filename": "notes.txt", "size_bytes": len(data)})
        assert created.status_code == 201, created.text
        upload = created.json()
        # When its bytes are PUT with exactly the returned URL, method and headers (no API key)
        put = httpx.request(
            upload["method"], upload["upload_url"], content=data, headers=upload["headers"]
        )
        assert put.status_code == 200, put.text
        # and a job lists it, its agent reading the file and writing out/result.txt
        prompt = bash_prompt(
            "cat notes.txt && { tr a-z A-Z < notes.txt; echo done; } > out/result.txt"
        )
        submitted = http.post(
            "/v1/jobs",
            json={"prompt": prompt, "allowed_tools": ["Bash"], "inputs": [upload["upload_id"]]},
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        job = http.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
        for _ in range(JOB_WAIT // 20):
            if job["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
                break
            job = http.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
    # Then the agent saw the file's bytes (its answer is the tool's output)
    assert job["status"] == "succeeded", job
    assert data.decode().splitlines()[0] in job["result"]["text"]
    # and the job shows its input and lists the artifact with a working download URL
    assert job["inputs"] == [
        {"upload_id": upload["upload_id"], "filename": "notes.txt", "size_bytes": len(data)}
    ]
    expected = data.decode().upper().encode() + b"done\n"
    (artifact,) = job["artifacts"]
    assert (artifact["path"], artifact["size_bytes"]) == ("out/result.txt", len(expected))
    downloaded = httpx.get(artifact["download_url"], timeout=60)
    assert downloaded.status_code == 200
    assert downloaded.content == expected


def test_another_tenants_upload_is_refused_and_hostile_names_are_422(stack: DevProcess) -> None:
    with Client(stack.url, TENANTS["alpha"], timeout=60) as alpha:
        theirs = alpha.upload_bytes(b"alpha's data", "private.txt")
        # Given a hostile filename
        with pytest.raises(ApiError) as hostile:
            alpha.create_upload("../../etc/passwd", 10)
    assert hostile.value.status == 422
    assert hostile.value.errors[0]["loc"] == ["body", "filename"]
    # When tenant beta lists alpha's upload in a job
    with Client(stack.url, TENANTS["beta"], timeout=60) as beta, pytest.raises(ApiError) as refused:
        beta.submit("Read it.", inputs=[theirs])
    # Then 422 names the input, as unknown to beta
    assert refused.value.status == 422
    assert refused.value.errors == [
        {
            "loc": ["body", "inputs", 0],
            "msg": f"no upload {theirs} (unknown to this tenant, or expired)",
        }
    ]


def test_the_cli_submits_files_and_downloads_artifacts(stack: DevProcess, tmp_path: Path) -> None:
    # Given a local file
    source = tmp_path / "input.csv"
    source.write_text("a,b\n1,2\n")
    env = base_env(CLAUDE_JOBS_URL=stack.url, CLAUDE_JOBS_API_KEY=TENANTS["alpha"])
    prompt = bash_prompt(
        "wc -l < input.csv > out/count.txt && mkdir out/copy && cp input.csv out/copy/"
    )
    # When `claude-jobs submit --file … --wait` runs it
    done = subprocess.run(
        [
            CLAUDE_JOBS,
            "submit",
            prompt,
            "--file",
            str(source),
            "--tools",
            "Bash",
            "--wait",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_WAIT + 30,
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert [a["path"] for a in job["artifacts"]] == ["out/copy/input.csv", "out/count.txt"]
    # and `claude-jobs download` fetches the artifacts
    target = tmp_path / "results"
    fetched = subprocess.run(
        [CLAUDE_JOBS, "download", job["job_id"], "--dir", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then they are on disk under the directory, out/ dropped from their paths
    assert fetched.returncode == 0, fetched.stderr
    assert (target / "count.txt").read_text().strip() == "2"
    assert (target / "copy" / "input.csv").read_text() == "a,b\n1,2\n"
    assert sorted(fetched.stdout.split()) == sorted(
        [str(target / "copy" / "input.csv"), str(target / "count.txt")]
    )


def test_a_put_of_another_size_than_declared_is_refused(stack: DevProcess) -> None:
    # Given an upload declared as 5 bytes
    with Client(stack.url, TENANTS["alpha"], timeout=60) as alpha:
        upload = alpha.create_upload("five.txt", 5)
    # When 500 bytes are PUT to its URL (the size is part of the signature, as in S3)
    bigger = b"x" * 500
    headers = {**upload["headers"], "Content-Length": str(len(bigger))}
    put = httpx.request(upload["method"], upload["upload_url"], content=bigger, headers=headers)
    # Then the emulator refuses it, and a job cannot use the upload
    assert put.status_code == 403
    assert "SignatureDoesNotMatch" in put.text
    with (
        Client(stack.url, TENANTS["alpha"], timeout=60) as alpha,
        pytest.raises(ApiError) as refused,
    ):
        alpha.submit("Read it.", inputs=[upload["upload_id"]])
    assert "has no file yet" in refused.value.errors[0]["msg"]
