"""The local stack's queue consumers: a message whose function raised comes back soon.

On Lambda, an SQS event source whose function raised retries the batch soon; the local stack
once left such a message invisible for the queue's whole visibility timeout (300 s for the jobs
queue), so a worker that failed to start (a fresh stack's first job, an import that failed)
stalled its job for five minutes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import boto3

from claude_jobs.definitions import FUNCTIONS as DEFINED
from claude_jobs_tools.local.runtime import REGION, FunctionPool
from claude_jobs_tools.local.workers import RAISED_RETRY_SECONDS, QueueConsumer

#: The jobs queue's visibility timeout is 300 s; this one is as long, so a message that is not
#: given back cannot come back within the test's wait.
VISIBILITY_SECONDS = 300
#: How long the test waits for the second delivery (far under the visibility timeout).
WAIT_SECONDS = 20

HANDLER = """
import time
from pathlib import Path

LOG = Path({log!r})

def lambda_handler(event, context):
    with LOG.open("a") as log:
        log.write(f"{{time.monotonic()}}\\n")
    if len(LOG.read_text().splitlines()) == 1:
        raise ModuleNotFoundError("No module named 'aws_xray_sdk'")  # as on that first job
    return {{"batchItemFailures": []}}
"""


def test_a_message_whose_function_raised_comes_back_within_seconds(
    aws: None, tmp_path: Path
) -> None:
    # Given a queue with the jobs queue's visibility timeout, and a function that raises on its
    # first invocation (as a worker whose import failed) and succeeds on the next
    log = tmp_path / "invocations.log"
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(HANDLER.format(log=str(log)))
    pool = FunctionPool(replace(DEFINED["worker"], name="fn"), tmp_path)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(
        QueueName="jobs", Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    consumer = QueueConsumer(pool, url, arn, count=1, poll_seconds=1)
    consumer.start()
    try:
        # When a message arrives
        sqs.send_message(QueueUrl=url, MessageBody='{"job_id": "j1"}')
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and consumer.processed < 2:
            time.sleep(0.1)
    finally:
        consumer.stop(grace_seconds=5)
    # Then it was delivered again soon after the function raised (as a Lambda retry is), not
    # after the visibility timeout
    times = [float(line) for line in log.read_text().splitlines()]
    assert len(times) == 2, times
    assert times[1] - times[0] < RAISED_RETRY_SECONDS + 5
    # and the second, successful invocation deleted it
    left = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert left == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
