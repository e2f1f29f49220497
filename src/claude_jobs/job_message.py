"""The jobs queue's message: one per job, written by the submit path, the reconciler and the
worker (a deferral, a long job's next segment), read by the worker."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, cast

from pydantic import ConfigDict, Field, Json, ValidationError, create_model

from .model_base import Model

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import SqsRecordModel


class JobMessage(Model):
    """Body of a jobs-queue message (compact JSON; defaults are left out)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    tenant_id: str | None = None
    #: How many times the job was offered again later because its tenant ran its share.
    deferrals: int = Field(0, ge=0)

    def body(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


if TYPE_CHECKING:  # for type checkers; built at run time by `job_record_model()`

    class JobMessageRecord(SqsRecordModel):
        body: Json[JobMessage]


@cache
def job_record_model() -> type[JobMessageRecord]:
    """A Powertools parser model of an SQS record carrying a :class:`JobMessage` (`body`).
    Built on first use (~1 ms): the parser's models take tens of ms to import, which the API's
    functions, writers of this message, need not pay. (The worker loads them at init anyway:
    Powertools' batch utility imports them once pydantic is loaded.)"""
    from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

    model = create_model("JobMessageRecord", __base__=SqsRecordModel, body=(Json[JobMessage], ...))
    return cast("type[JobMessageRecord]", model)


def malformed_fields(error: ValidationError) -> str:
    """Where a record failed the model, e.g. `attributes.SentTimestamp: missing` (no input
    values: a hostile record's content stays out of the logs)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'record'}: {detail['type']}"
        for detail in error.errors(include_url=False, include_input=False)[:10]
    )
