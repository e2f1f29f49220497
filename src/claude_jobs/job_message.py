"""The jobs queue's message: one per job, written by the submit path, the reconciler and the
worker (a deferral, a long job's next segment), read by the worker."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, Json

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import SqsRecordModel


class JobMessage(BaseModel):
    """Body of a jobs-queue message (compact JSON; defaults are left out)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    tenant_id: str | None = None
    #: How many times the job was offered again later because its tenant ran its share.
    deferrals: int = Field(0, ge=0)

    def body(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


@cache
def job_record_model() -> type[SqsRecordModel]:
    """A Powertools parser model of an SQS record carrying a :class:`JobMessage` (`body`).
    Built on first use: the parser's models take ~70 ms to import, which the API's functions,
    writers of this message, need not pay."""
    from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

    class JobMessageRecord(SqsRecordModel):
        body: Json[JobMessage]

    return JobMessageRecord
