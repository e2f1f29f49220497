"""Trigger events become jobs: S3 object notifications and EventBridge events.

A malformed event (bad shape, no matching trigger, invalid options, a missing object) is
*rejected*: it goes to the trigger dead-letter queue with its reason and is logged, and the
invocation carries on (an async retry could not fix it). Faults of the infrastructure (DynamoDB,
SQS, S3 errors other than "not there") raise, so Lambda's async retry and on-failure destination
apply; every job is created under an idempotency key, so a retry never makes a second job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3RecordModel
from pydantic import Field, ValidationError

from ..errors import IdempotencyConflictError, RequestValidationError
from ..job_service import JobService
from ..models import InputObject, JobOptions, JobRequest
from ..observability import get_logger
from .config import EventTrigger, S3Trigger, TriggersConfig
from .inputs import safe_filename
from .templates import RenderError, TemplateStore, as_text, lookup_path

#: An object at most this large, and valid UTF-8, is quoted in the prompt as `{{text}}`.
TEXT_INLINE_BYTES = 32 * 1024
METADATA_VALUE_MAX = 256


# ---------------------------------------------------------------- ports


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    version_id: str | None = None


class ObjectMissingError(Exception):
    """The object is not there (deleted since, or never readable by us)."""


class InboxObjects(Protocol):
    def head(self, bucket: str, key: str, version_id: str | None) -> ObjectInfo:
        """The object's size and ETag; ObjectMissingError when it is gone."""

    def read(self, bucket: str, key: str, version_id: str | None, max_bytes: int) -> bytes:
        """At most `max_bytes` of the object."""


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    kind: str  # "s3" | "events" | "unknown"
    event: Any
    trigger: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


class DeadLetters(Protocol):
    def send(self, letter: DeadLetter) -> None: ...


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    status: Literal["created", "duplicate", "rejected", "ignored"]
    kind: str
    trigger: str | None = None
    job_id: str | None = None
    reason: str | None = None


class Rejected(Exception):
    def __init__(
        self, reason: str, trigger: str | None = None, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trigger = trigger
        self.errors = errors or []


# ---------------------------------------------------------------- event shapes


class BusEvent(EventBridgeModel):
    """Powertools' EventBridge event model; the id (our idempotency key's part) is bounded."""

    id: str = Field(min_length=1, max_length=120)
    detail: dict[str, Any]  # a JSON object (Powertools also takes a model here)

    def rule_names(self) -> list[str]:
        """Names of the rules in `resources` (a schedule's event lists its rule)."""
        names = []
        for arn in self.resources:
            if ":rule/" in arn:
                names.append(arn.rsplit("/", 1)[-1])
        return names


def _field_errors(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in exc.errors()]


def _describe(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(".".join(str(p) for p in e["loc"]) + ": " + str(e["msg"]) for e in errors)


def s3_idempotency_key(bucket: str, key: str, version_or_etag: str) -> str:
    digest = hashlib.sha256(f"{bucket}/{key}/{version_or_etag}".encode()).hexdigest()
    return f"s3:{digest}"


def event_idempotency_key(event_id: str) -> str:
    return f"eb:{event_id}"


def _clip(value: str) -> str:
    return value if len(value) <= METADATA_VALUE_MAX else value[: METADATA_VALUE_MAX - 1] + "…"


# ---------------------------------------------------------------- service


class TriggerService:
    def __init__(
        self,
        config: TriggersConfig,
        templates: TemplateStore,
        jobs: JobService,
        objects: InboxObjects,
        dead_letters: DeadLetters,
        *,
        inbox_bucket: str = "",
    ) -> None:
        self._config = config
        self._templates = templates
        self._jobs = jobs
        self._objects = objects
        self._dead_letters = dead_letters
        self._inbox = inbox_bucket

    # ------------------------------------------------------------ entry point

    def handle(self, event: Any) -> list[Outcome]:
        """Act on one Lambda event: an S3 notification (many records) or an EventBridge event."""
        if isinstance(event, Mapping) and event.get("Event") == "s3:TestEvent":
            get_logger().info("ignoring the S3 test event sent when a notification is configured")
            return [Outcome("ignored", "s3", reason="s3:TestEvent")]
        if isinstance(event, Mapping) and isinstance(event.get("Records"), list):
            return [self._guard("s3", record, self._s3_record) for record in event["Records"]]
        if isinstance(event, Mapping) and "detail-type" in event:
            return [self._guard("events", event, self._bus_event)]
        return [self._reject("unknown", event, Rejected("not an S3 notification or an event"))]

    def _guard(self, kind: str, payload: Any, act: Callable[[Any], Outcome]) -> Outcome:
        try:
            return act(payload)
        except Rejected as rejected:
            return self._reject(kind, payload, rejected)

    def _reject(self, kind: str, payload: Any, rejected: Rejected) -> Outcome:
        get_logger().warning(
            "trigger event rejected: %s",
            rejected.reason,
            extra={"reason": rejected.reason, "trigger": rejected.trigger, "kind": kind},
        )
        self._dead_letters.send(
            DeadLetter(
                reason=rejected.reason,
                kind=kind,
                event=payload,
                trigger=rejected.trigger,
                errors=rejected.errors,
            )
        )
        return Outcome("rejected", kind, trigger=rejected.trigger, reason=rejected.reason)

    # ------------------------------------------------------------ S3

    def _s3_record(self, raw: Any) -> Outcome:
        try:
            record = S3RecordModel.model_validate(raw)
        except ValidationError as exc:
            errors = _field_errors(exc)
            raise Rejected(f"not an S3 event record: {_describe(errors)}", errors=errors) from None
        except (AttributeError, TypeError):
            # Powertools' model checks the object's fields before validating, and trips on a
            # record whose `s3` or `object` is missing or not an object.
            raise Rejected("not an S3 event record: s3.object: an object is required") from None
        if not record.eventName.startswith("ObjectCreated:"):
            raise Rejected(f"{record.eventName} is not an object-created event")
        entity = record.s3.object
        if entity is None or not entity.key or not record.s3.bucket.name:
            raise Rejected("the S3 event record names no bucket and object key")
        bucket = record.s3.bucket.name
        key = unquote_plus(entity.key)
        trigger = next((t for t in self._config.s3 if t.matches(bucket, key, self._inbox)), None)
        if trigger is None:
            raise Rejected(f"no trigger matches s3://{bucket}/{key}")
        version_id = entity.versionId
        try:
            info = self._objects.head(bucket, key, version_id)
        except ObjectMissingError as exc:
            raise Rejected(f"s3://{bucket}/{key} is not there: {exc}", trigger.name) from None
        if info.size > trigger.max_object_bytes:
            raise Rejected(
                f"s3://{bucket}/{key} is {info.size} bytes, more than the trigger's "
                f"{trigger.max_object_bytes}",
                trigger.name,
            )
        identity = version_id or entity.eTag or info.etag
        filename = safe_filename(key)
        values = {
            "bucket": bucket,
            "key": key,
            "size": str(info.size),
            "version_id": version_id or "",
            "file": filename,
            "trigger": trigger.name,
            "text": self._object_text(bucket, key, version_id, info.size, filename),
        }
        prompt = self._templates.get(trigger.template).render(lambda name: values[name])
        metadata = {
            **trigger.metadata,
            "trigger": trigger.name,
            "s3_bucket": _clip(bucket),
            "s3_key": _clip(key),
        }
        return self._submit(
            trigger,
            kind="s3",
            prompt=prompt,
            options=trigger.options.model_dump(exclude_unset=True),
            metadata=metadata,
            idempotency_key=s3_idempotency_key(bucket, key, identity),
            inputs=[InputObject(bucket=bucket, key=key, version_id=version_id, size=info.size)],
        )

    def _object_text(
        self, bucket: str, key: str, version_id: str | None, size: int, filename: str
    ) -> str:
        note = (
            f"[The object's content ({size} bytes) is not quoted here; it is the file "
            f"`{filename}` in your working directory.]"
        )
        if size > TEXT_INLINE_BYTES:
            return note
        try:
            data = self._objects.read(bucket, key, version_id, TEXT_INLINE_BYTES)
        except ObjectMissingError as exc:
            raise Rejected(f"s3://{bucket}/{key} is not there: {exc}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return note
        return note if "\x00" in text else text

    # ------------------------------------------------------------ EventBridge

    def _bus_event(self, raw: Any) -> Outcome:
        try:
            event = BusEvent.model_validate(raw)
        except ValidationError as exc:
            errors = _field_errors(exc)
            raise Rejected(
                f"not an EventBridge event: {_describe(errors)}", errors=errors
            ) from None
        rules = event.rule_names()
        trigger = next(
            (t for t in self._config.events if t.matches(event.source, event.detail_type, rules)),
            None,
        )
        if trigger is None:
            raise Rejected(
                f"no trigger matches source={event.source!r} detail-type={event.detail_type!r}"
                + (f" rules={rules}" if rules else "")
            )
        options = {
            **trigger.options.model_dump(exclude_unset=True),
            **self._detail_options(trigger, event.detail),
        }

        def lookup(name: str) -> str:
            if name == "detail":
                return json.dumps(event.detail, ensure_ascii=False, indent=2, sort_keys=True)
            if name.startswith("detail."):
                try:
                    return as_text(lookup_path(event.detail, name.split(".")[1:]))
                except KeyError:
                    raise RenderError(f"the event's detail has no field {name[7:]!r}") from None
            return {
                "source": event.source,
                "detail_type": event.detail_type,
                "event_id": event.id,
                # As the event spelled it (the model parses it into a datetime).
                "time": str(raw.get("time", "")),
                "trigger": trigger.name,
            }[name]

        try:
            prompt = self._templates.get(trigger.template).render(lookup)
        except RenderError as exc:
            raise Rejected(str(exc), trigger.name) from None
        metadata = {
            **trigger.metadata,
            "trigger": trigger.name,
            "event_id": _clip(event.id),
            "event_source": _clip(event.source),
            "event_detail_type": _clip(event.detail_type),
        }
        return self._submit(
            trigger,
            kind="events",
            prompt=prompt,
            options=options,
            metadata=metadata,
            idempotency_key=event_idempotency_key(event.id),
        )

    def _detail_options(self, trigger: EventTrigger, detail: Mapping[str, Any]) -> dict[str, Any]:
        """`detail.job`, checked against what the trigger lets an event choose."""
        if "job" not in detail:
            return {}
        requested = detail["job"]
        if not isinstance(requested, dict):
            raise Rejected("detail.job must be an object of job options", trigger.name)
        unknown = sorted(set(requested) - set(JobOptions.model_fields))
        if unknown:
            raise Rejected(f"detail.job has unknown option(s): {', '.join(unknown)}", trigger.name)
        refused = sorted(set(requested) - set(trigger.detail_options))
        if refused:
            raise Rejected(
                f"trigger {trigger.name} does not let an event set: {', '.join(refused)}",
                trigger.name,
            )
        tools = requested.get("allowed_tools")
        if trigger.detail_tools is not None and isinstance(tools, list):
            extra = sorted(str(t) for t in tools if t not in trigger.detail_tools)
            if extra:
                raise Rejected(
                    f"trigger {trigger.name} does not let an event ask for tool(s): "
                    + ", ".join(extra),
                    trigger.name,
                )
        return dict(requested)

    # ------------------------------------------------------------ submit

    def _submit(
        self,
        trigger: S3Trigger | EventTrigger,
        *,
        kind: str,
        prompt: str,
        options: Mapping[str, Any],
        metadata: Mapping[str, str],
        idempotency_key: str,
        inputs: Sequence[InputObject] = (),
    ) -> Outcome:
        try:
            request = JobRequest.model_validate(
                {
                    **options,
                    "prompt": prompt,
                    "system_prompt": trigger.system_prompt,
                    "metadata": dict(metadata),
                    "webhook_url": trigger.webhook_url,
                }
            )
        except ValidationError as exc:
            errors = _field_errors(exc)
            raise Rejected(
                f"the job is not valid: {_describe(errors)}", trigger.name, errors
            ) from None
        try:
            submission = self._jobs.submit(
                trigger.tenant_id,
                request,
                idempotency_key=idempotency_key,
                source=kind,
                inputs=inputs,
                # At the tenant's pending cap the job is queued all the same (an event is
                # not a caller who can submit again later); it waits for its running share.
                pending_cap=False,
            )
        except RequestValidationError as exc:
            errors = [{"loc": list(e.loc), "msg": e.msg} for e in exc.errors]
            raise Rejected(
                f"the job is not valid: {_describe(errors) or exc.detail}", trigger.name, errors
            ) from None
        except IdempotencyConflictError:
            if kind == "s3":
                # The same object version again, rendered differently (the config changed in
                # between): it already has its job.
                get_logger().info("duplicate S3 notification", extra={"trigger": trigger.name})
                return Outcome("duplicate", kind, trigger=trigger.name)
            raise Rejected(
                "an earlier event with this id had different content", trigger.name
            ) from None
        job = submission.job
        status: Literal["created", "duplicate"] = "created" if submission.created else "duplicate"
        get_logger().info(
            "trigger %s: job %s %s",
            trigger.name,
            job.job_id,
            status,
            extra={"trigger": trigger.name, "job_id": job.job_id, "tenant_id": job.tenant_id},
        )
        return Outcome(status, kind, trigger=trigger.name, job_id=job.job_id)
