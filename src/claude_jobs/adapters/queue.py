"""The jobs queue on SQS: one message per job."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..job_message import JobMessage
from ..models import Job

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def job_message(job: Job) -> str:
    return JobMessage(job_id=job.job_id, tenant_id=job.tenant_id).body()


class SqsJobQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, job: Job) -> None:
        self._client.send_message(QueueUrl=self._url, MessageBody=job_message(job))
