"""The worker Lambda function: SQS batch (size 1) → one job run per message.

Powertools' batch processor answers with partial batch responses: a message whose job hit an
infrastructure fault is reported failed (SQS redelivers it, after an exponential backoff set on
the message rather than the queue's long visibility timeout); every other outcome — the job
ran, ended, or needed no run — deletes it. One `BatchProcessor` per invocation, so the function
can serve several threads of one process (the local stack does).

When a process the agent started could not be ended, the job is recorded first; then the
function logs it, counts `EnvironmentsRetired`, deletes the message itself and retires its
execution environment: on Lambda the process exits, so the next invocation gets a fresh one.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from ..job_message import JobMessage, job_record_model, malformed_fields
from ..observability import count, get_logger, instrumented
from ..resources import WORKER_TIMEOUT_SECONDS
from ..wiring import Container, ContainerHolder
from .isolation import make_non_dumpable
from .ports import WorkerPorts
from .processed import Action, Handling, Processed, WorkerFault
from .processor import JobProcessor

if TYPE_CHECKING:
    from ..job_message import JobMessageRecord

#: The worker's exit status when it retires its execution environment.
RETIRE_EXIT_CODE = 75

#: Worker-process variables whose values are scrubbed from anything stored or logged.
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ANTHROPIC_API_KEY")
#: Seconds an invocation keeps beyond the warm CLI's longest wait before it starts one.
WARM_UP_SPARE_SECONDS = 5
#: SQS's longest visibility timeout (12 h).
MAX_VISIBILITY_SECONDS = 43_200


class LeaseHeldError(Exception):
    """The message's job runs under another worker's lease: the message comes back later."""


class WorkerFunction(ContainerHolder):
    derived = ("processor",)

    def __init__(
        self,
        container: Container | None = None,
        *,
        retire: Callable[[], None] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(container)
        # First thing: from now on no process of the same user (the agent's) may read this
        # process's environment (Lambda's credentials) or memory.
        make_non_dumpable()
        #: Ends this execution environment (Lambda: the process exits; the local stack's runtime
        #: replaces it with its own way of dropping an environment).
        self.retire = retire or exit_environment
        #: `WorkerPorts` fields that replace the deployment's (tests, the local stack).
        self._overrides = overrides
        self._lock = threading.RLock()
        self._queue_urls: dict[str, str] = {}
        self._instrumented = instrumented(self._handle, traced=True)

    @cached_property
    def processor(self) -> JobProcessor:
        return JobProcessor(self.ports())

    def ports(self) -> WorkerPorts:
        """The processor's ports on AWS (with this function's overrides)."""
        from ..adapters.artifact_sink import S3ArtifactSink
        from ..adapters.secrets import SecretKeyProvider
        from ..adapters.session_store import S3SessionStore
        from ..adapters.vault import SecretsManagerVault
        from ..adapters.workspace_store import S3WorkspaceStore
        from .agent import AgentRunner
        from .containment import ProcessSweeper
        from .inputs import materialize_inputs
        from .isolation import resolve_identity, shared_pool
        from .mcp_broker import McpBroker
        from .progress import ProgressEvents
        from .proxy import AnthropicDialect, KeyInjectingProxy
        from .repository import github_worker
        from .segments import margins
        from .sessions import SessionKeeper

        container = self.container
        settings = container.settings
        proxy: KeyInjectingProxy
        key: Callable[[], str] | None
        if settings.uses_bedrock:  # no Anthropic key: the proxy signs with the worker's role
            from .bedrock import bedrock_proxy

            proxy, key = bedrock_proxy(settings), None
        else:
            keys = SecretKeyProvider(
                container.client("secretsmanager"),
                settings.anthropic_secret_id,
                settings.secret_max_age_seconds,
            )
            dialect = AnthropicDialect(keys.get, settings.proxy_models)
            proxy = KeyInjectingProxy(settings.anthropic_base_url, dialect=dialect)
            key = keys.get
        s3 = container.client("s3")
        bucket = settings.results_bucket
        ports = WorkerPorts(
            jobs=container.job_repository,
            documents=container.job_documents,
            runner=AgentRunner(poll_seconds=settings.cancel_poll_seconds),
            proxy=proxy,
            key=key,
            settings=settings,
            identities=shared_pool(
                resolve_identity(settings.agent_user),
                settings.agent_uid_range,
                settings.agent_max_processes + settings.agent_thread_allowance,
            ),
            inputs=lambda job, directory: materialize_inputs(
                s3, job.inputs, directory, max_bytes=settings.inputs_max_bytes
            ),
            # Files: what the agent leaves under out/ goes beside the job's documents.
            artifacts=S3ArtifactSink(s3, bucket) if bucket else None,
            known_secrets=[os.environ.get(name, "") for name in SECRET_VARIABLES],
            sessions=SessionKeeper(S3SessionStore(s3, bucket), max_bytes=settings.session_max_bytes)
            if bucket
            else None,
            # Long jobs: the working directory goes on with the job, beside its documents.
            workspaces=S3WorkspaceStore(s3, bucket) if bucket else None,
            progress=ProgressEvents(container.event_store),
            # Repositories and pull requests (repository.py).
            github=github_worker(settings, container.client("secretsmanager")),
            # Long jobs: margins scaled to the invocation's length (segments.py).
            margin_seconds=margins(settings.worker_invocation_seconds).record,
            boundary_seconds=margins(settings.worker_invocation_seconds).boundary,
            # MCP servers: the loopback broker, the tenants' vaults (started on first use).
            mcp=McpBroker(),
            vault=SecretsManagerVault(
                container.client("secretsmanager"), settings.vault_secret_prefix
            ),
            # On Lambda the worker is alone in its execution environment.
            sweeper=ProcessSweeper(
                scratch_dirs=tuple(d for d in settings.scratch_dirs.split(",") if d),
                alone="AWS_LAMBDA_RUNTIME_API" in os.environ,
            ),
        )
        return replace(ports, **self._overrides)

    def shutdown(self) -> None:
        """The execution environment ends (the local stack drops it): stop the warm CLI."""
        if "processor" in self.__dict__:
            self.processor.warm_pool.discard()

    def _record(
        self, raw: SQSRecord, lambda_context: Any = None, retiring: list[str] | None = None
    ) -> None:
        record = parse_record(raw)
        if record is None:  # dropped: deleted as processed, never retried
            self._log_processed(Processed(None, Action.MALFORMED))
            return
        measured_at = time.monotonic()  # the segment's stops count from this moment on:
        remaining = (  # building the processor (a cold start) and claiming come off them
            lambda_context.get_remaining_time_in_millis() / 1000
            if lambda_context is not None
            else float(WORKER_TIMEOUT_SECONDS)
        )
        with self._lock:
            processor = self.processor  # built once, under the lock
        try:
            processed = processor.process_message(record.body, remaining, measured_at)
        except WorkerFault as fault:  # an infrastructure fault: retried, after a backoff
            if fault.retire and retiring is not None:
                retiring.append(fault.retire)
            self._retry_later(record)
            raise
        except Exception:
            self._retry_later(record)
            raise
        handling = processed.handling
        if handling is Handling.COME_BACK:
            # Another worker holds the job: offered again when its lease ends (not deleted:
            # this may be the only message left if that worker dies).
            self._come_back(record, processed.retry_in or 0.0)
            raise LeaseHeldError(f"job {processed.job_id} is held by another worker's lease")
        if handling is Handling.DEFER:
            self._defer(record)  # raises if it cannot: the message is then retried as is
        if handling is Handling.NEXT_SEGMENT:
            try:
                self._next_segment(record)
            except WorkerFault:  # this message comes back instead, and claims the job
                self._retry_later(record)
                raise
        if processed.retire and retiring is not None:
            retiring.append(processed.retire)
            self._delete(record)  # done: it must not come back when the environment ends
        self._log_processed(processed)

    @staticmethod
    def _log_processed(processed: Processed) -> None:
        get_logger().info(
            "message processed",
            extra={
                "job_id": processed.job_id,
                "action": processed.action,
                "status": processed.status.value if processed.status else None,
            },
        )
        if processed.action is Action.RAN and processed.status is not None:
            count(f"Jobs_{processed.status.value}")

    def _time_to_warm_up(self, context: Any) -> bool:
        """Whether the invocation has time left to start (and wait for) the next job's CLI:
        an invocation that ran a job to its end must not time out for it."""
        if context is None or not hasattr(context, "get_remaining_time_in_millis"):
            return True
        remaining = float(context.get_remaining_time_in_millis()) / 1000
        needed = self.container.settings.warm_start_settle_seconds + WARM_UP_SPARE_SECONDS
        return remaining > needed

    def _defer(self, record: JobMessageRecord) -> None:
        """Offer a job whose tenant runs its share again later: a new message with a delay
        (a fresh receive count: waiting is neither a fault nor a step towards the DLQ); this
        one is then deleted as processed. The delay grows with each wait, up to 12 times
        TENANT_DEFER_SECONDS, jittered so that a backlog spreads out."""
        message = record.body
        waits = message.deferrals
        base = self.container.settings.tenant_defer_seconds * (1 + min(waits, 11))
        delay = min(900, max(1, round(base * random.uniform(0.75, 1.25))))  # noqa: S311
        self.container.client("sqs").send_message(
            QueueUrl=self._queue_url(record.eventSourceARN),
            MessageBody=message.model_copy(update={"deferrals": waits + 1}).body(),
            DelaySeconds=delay,
        )
        # The reconciler leaves the job alone until its message is due (docs/adr/0001).
        self._expect_message(message.job_id, delay)
        count("JobsDeferred")

    def _next_segment(self, record: JobMessageRecord) -> None:
        """Send the message of a long job's next segment (the job is queued again, not
        running: whichever message is received first claims it, by a conditional write; a
        duplicate finds it running or done and is skipped). When it cannot be sent this
        message is retried instead (WorkerFault), and its redelivery claims the job."""
        try:
            received = record.body
            message = JobMessage(job_id=received.job_id, tenant_id=received.tenant_id)
            self.container.client("sqs").send_message(
                QueueUrl=self._queue_url(record.eventSourceARN),
                MessageBody=message.body(),
            )
        except Exception as exc:
            raise WorkerFault("the next segment's message could not be sent") from exc
        self._expect_message(message.job_id, 0)
        count("JobSegments")

    def _come_back(self, record: JobMessageRecord, seconds: float) -> None:
        try:
            self.container.client("sqs").change_message_visibility(
                QueueUrl=self._queue_url(record.eventSourceARN),
                ReceiptHandle=record.receiptHandle,
                VisibilityTimeout=min(int(seconds) + 1, MAX_VISIBILITY_SECONDS),
            )
        except Exception as exc:  # the queue's own visibility timeout still brings it back
            get_logger().warning("could not set the message's return: %s", type(exc).__name__)

    def _retry_later(self, record: JobMessageRecord) -> None:
        """Make the failed message visible again after a backoff: the base, then twice, four
        times... as long for each earlier receive."""
        count_text = record.attributes.ApproximateReceiveCount
        receives = max(int(count_text), 1) if count_text.isdigit() else 1
        delay = min(self.container.settings.retry_base_seconds * 2 ** (receives - 1), 900)
        try:
            self.container.client("sqs").change_message_visibility(
                QueueUrl=self._queue_url(record.eventSourceARN),
                ReceiptHandle=record.receiptHandle,
                VisibilityTimeout=delay,
            )
        except Exception as exc:  # the queue's own visibility timeout still brings it back
            get_logger().warning("could not shorten the retry delay: %s", type(exc).__name__)
        else:
            get_logger().info("message retried in %s s", delay, extra={"receives": receives})
            self._expect_message(record.body.job_id, delay)

    def _expect_message(self, job_id: str, delay: float) -> None:
        """Note on a queued job when its message is due (the reconciler waits until then)."""
        if job_id:
            from ..adapters.reconcile_table import expect_message

            settings = self.container.settings
            due = time.time() + delay
            expect_message(self.container.client("dynamodb"), settings.jobs_table, job_id, due)

    def _delete(self, record: JobMessageRecord) -> None:
        try:
            self.container.client("sqs").delete_message(
                QueueUrl=self._queue_url(record.eventSourceARN),
                ReceiptHandle=record.receiptHandle,
            )
        except Exception as exc:  # it comes back; the job is terminal, so it is only skipped
            get_logger().warning("could not delete the message: %s", type(exc).__name__)

    def _queue_url(self, queue_arn: str) -> str:
        url: str | None = self._queue_urls.get(queue_arn)
        if url is None:
            _, _, _, _, account, name = queue_arn.split(":", 5)
            url = self.container.client("sqs").get_queue_url(
                QueueName=name, QueueOwnerAWSAccountId=account
            )["QueueUrl"]
            self._queue_urls[queue_arn] = url
        return url

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        retiring: list[str] = []
        try:
            # Metrics are flushed when the instrumented handler ends, before any retirement:
            # retiring may end the process.
            return self._instrumented(event, context, retiring=retiring)
        finally:
            if retiring:
                self.retire()

    def _handle(
        self, event: dict[str, Any], context: Any, *, retiring: list[str]
    ) -> dict[str, Any]:
        def record_handler(record: SQSRecord, lambda_context: Any = None) -> None:
            self._record(record, lambda_context, retiring)

        response = process_partial_response(
            event=event,
            record_handler=record_handler,
            processor=BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False),
            context=context,
        )
        if not retiring and self._time_to_warm_up(context):
            # Warm start: the next job's CLI boots now. On Lambda the environment is frozen
            # once this returns, so the CLI is waited for (billed here, not to the next job).
            self.processor.warm_pool.warm_up(settle="AWS_LAMBDA_RUNTIME_API" in os.environ)
        if retiring:
            get_logger().error(
                "retiring this execution environment: %s",
                "; ".join(retiring),
                extra={"retire": True},
            )
            count("EnvironmentsRetired")
        return dict(response)


def parse_record(record: SQSRecord) -> JobMessageRecord | None:
    """The record parsed by Powertools' SQS parser model, its body a JobMessage; None (logged)
    when it is not one: bad JSON, no job_id, SQS fields missing, not a record at all."""
    try:
        return job_record_model().model_validate(record.raw_event)
    except ValidationError as error:
        raw = record.raw_event
        message_id = raw.get("messageId") if isinstance(raw, dict) else None
        get_logger().error(
            "dropping a malformed jobs-queue message (%s)",
            malformed_fields(error),
            extra={"message_id": message_id if isinstance(message_id, str) else None},
        )
        return None


def exit_environment() -> None:
    """End the process: Lambda then starts a fresh execution environment for what comes next.
    Anything a job left that could not be ended goes with it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(RETIRE_EXIT_CODE)
