"""Small items: whatever a job's prompt and result, its DynamoDB item stays small; the large
documents live in the results bucket under tenant-scoped keys and the API answers as before."""

from __future__ import annotations

from pathlib import Path

import boto3

from claude_jobs.adapters.dynamo import item_size
from claude_jobs.models import INLINE_RESULT_BYTES, JobStatus
from claude_jobs.settings import Settings
from claude_jobs.wiring import Container
from claude_jobs.worker.processor import JobProcessor
from tests.fakes import Finish, ScriptedRunner
from tests.fakes.worker import worker_ports

from .conftest import TENANT, Api

#: What a job item may weigh, whatever the job (documents.py: ~1 KiB fixed + ≤ 1 KiB inline).
ITEM_LIMIT_BYTES = 2048


def raw_item(settings: Settings, job_id: str) -> dict[str, object]:
    item = boto3.client("dynamodb").get_item(
        TableName=settings.jobs_table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
    )["Item"]
    return dict(item)


def bucket_keys(settings: Settings) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=settings.results_bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def run_worker(container: Container, job_id: str, runner: ScriptedRunner, tmp: Path) -> None:
    ports = worker_ports(
        container.job_repository,
        container.job_documents,
        runner=runner,
        key=lambda: "sk-ant-key",
        settings=container.settings,
        sandbox_dir=str(tmp),
    )
    processor = JobProcessor(ports)
    processor.process(job_id, remaining_seconds=900)


def test_a_huge_prompt_and_a_256_kib_result_keep_the_item_small_and_round_trip(
    api: Api, tmp_path: Path
) -> None:
    settings = api.container.settings
    # Given a job with a 100,000-character prompt
    prompt = "p" * 99_999 + "プ"
    system_prompt = "s" * 20_000
    answer = api.submit_job({"prompt": prompt, "system_prompt": system_prompt})
    assert answer.status == 202, answer.text
    job_id = answer.json["job_id"]
    # Then its stored item is small, and the prompts are in the bucket under the tenant's keys
    assert item_size(raw_item(settings, job_id)) < ITEM_LIMIT_BYTES
    assert bucket_keys(settings) == [
        f"tenant/{TENANT}/jobs/{job_id}/prompt",
        f"tenant/{TENANT}/jobs/{job_id}/system_prompt",
    ]
    # When a worker runs it to a 256 KiB result
    text = "r" * (INLINE_RESULT_BYTES - 3) + "末"
    assert len(text.encode()) == INLINE_RESULT_BYTES
    runner = ScriptedRunner(Finish(text=text))
    run_worker(api.container, job_id, runner, tmp_path)
    # Then the agent had the prompts exactly
    (request,) = runner.requests
    assert (request.prompt, request.system_prompt) == (prompt, system_prompt)
    # And the finished item is small too, the prompts' objects gone, the result kept
    assert item_size(raw_item(settings, job_id)) < ITEM_LIMIT_BYTES
    assert bucket_keys(settings) == [f"tenant/{TENANT}/jobs/{job_id}/result.txt"]
    # And the API answers the text inline, exactly, as before
    got = api.get_job(job_id)
    assert got.status == 200
    assert got.json["status"] == JobStatus.SUCCEEDED
    assert got.json["result"]["text"] == text
    assert "download_url" not in got.json["result"]
    (listed,) = api.list_jobs().json["items"]
    assert listed["result"]["text"] == text


def test_a_result_over_256_kib_is_a_download_and_a_small_job_stays_inline(
    api: Api, tmp_path: Path
) -> None:
    settings = api.container.settings
    # Given a small job and one whose result is over the API's inline limit
    small = api.submit_job({"prompt": "hi"}).json["job_id"]
    large = api.submit_job({"prompt": "hi"}).json["job_id"]
    run_worker(api.container, small, ScriptedRunner(Finish(text="hello")), tmp_path)
    big = "x" * (INLINE_RESULT_BYTES + 1)
    run_worker(api.container, large, ScriptedRunner(Finish(text=big)), tmp_path)
    # Then the small one never touched the bucket and answers inline
    assert bucket_keys(settings) == [f"tenant/{TENANT}/jobs/{large}/result.txt"]
    assert api.get_job(small).json["result"]["text"] == "hello"
    # And the large one answers with a URL that serves the full text
    result = api.get_job(large).json["result"]
    assert "text" not in result
    assert f"tenant/{TENANT}/jobs/{large}/result.txt" in result["download_url"]
    assert item_size(raw_item(settings, large)) < ITEM_LIMIT_BYTES
