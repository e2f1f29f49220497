"""A naive submit handler, for comparison only (never deployed): what the Powertools and
pydantic tutorials lead to. Clients, Tracer, Metrics and Logger at import; the resolver's
`enable_validation=True` builds its OpenAPI/pydantic machinery per route at import."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from claude_jobs.models import JobLinks, JobRequest, JobStatus, SubmitResponse
from claude_jobs.settings import Settings

settings = Settings.from_env()
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="ClaudeJobsNaive")
app = APIGatewayRestResolver(enable_validation=True)


@app.post("/v1/jobs")
@tracer.capture_method
def submit(request: JobRequest) -> SubmitResponse:  # pragma: no cover - never called
    raise NotImplementedError(request.prompt)


@app.get("/v1/jobs/<job_id>")
def status(job_id: str) -> dict[str, Any]:  # pragma: no cover - never called
    return {"job_id": job_id, "status": JobStatus.QUEUED, "links": JobLinks(self=job_id)}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


__all__ = ["SubmitResponse", "dynamodb", "lambda_handler", "settings", "sqs"]
