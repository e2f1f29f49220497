"""The whole service on one machine: emulator, resources, model, HTTP front and workers.

    stack = LocalStack(StackConfig(port=0)).start()
    stack.url, stack.keys                 # base URL, API keys
    ...
    stack.stop()

Start order: the moto server, which serves only the random access key it issues to the stack;
the process environment pointed at it with that key (as the Lambda environment points the
functions at their resources and gives them their role's credentials); the resources, created by
:func:`claude_jobs_tools.provision.provision` from the definitions the CDK app uses; the
Anthropic key stored in the emulated Secrets Manager (never left in this process's
environment); the API keys; the offline model when there is no key; the functions of the
definition table (:mod:`claude_jobs.definitions`, with their AWS timeouts); the front; the
workers. Stop runs it backwards and
restores the environment.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_jobs.definitions import FUNCTIONS as DEFINED_FUNCTIONS
from claude_jobs.resources import (
    JOBS_DLQ,
    JOBS_QUEUE,
    LOST_JOBS_BATCH_SIZE,
    WEBHOOK_BATCH_SIZE,
    WEBHOOK_QUEUE,
)
from claude_jobs.settings import PUBLIC_ANTHROPIC_URL, Settings

from . import in_process, user_agent
from .runtime import REGION, FunctionPool, default_functions_dir
from .stack_config import (
    BEDROCK_ENDPOINT_ENV,
    CANNED_ANSWER,
    DEFAULT_ENV,
    DEFAULT_TENANT,
    DEV_KEYS_ENV,
    FAIR_SHARING_SETTINGS,
    FUNCTIONS,
    FUNCTIONS_DIR_ENV,
    LOCAL_WEBHOOK_RETRY_BASE_SECONDS,
    OPTIONAL_FUNCTIONS,
    PLACEHOLDER_KEY,
    REMOVED_ENV,
    Environ,
    RegisteredKey,
    StackConfig,
    StackError,
    fair_sharing_settings,
    own_uid_block,
    parse_dev_keys,
    reconcile_interval,
    settings_env,
)

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

    from .emulator import Emulator, StackCredentials
    from .fake_anthropic import FakeAnthropic
    from .fake_bedrock import FakeBedrock
    from .sources import PollingSource
    from .workers import QueueConsumer

#: Re-exported: the configuration moved to stack_config.
__all__ = [
    "BEDROCK_ENDPOINT_ENV",
    "CANNED_ANSWER",
    "DEFAULT_ENV",
    "DEFAULT_TENANT",
    "DEV_KEYS_ENV",
    "FAIR_SHARING_SETTINGS",
    "FUNCTIONS",
    "FUNCTIONS_DIR_ENV",
    "LOCAL_WEBHOOK_RETRY_BASE_SECONDS",
    "OPTIONAL_FUNCTIONS",
    "PLACEHOLDER_KEY",
    "REMOVED_ENV",
    "Environ",
    "LocalStack",
    "RegisteredKey",
    "StackConfig",
    "StackError",
    "fair_sharing_settings",
    "own_uid_block",
    "parse_dev_keys",
    "settings_env",
]

log = logging.getLogger(__name__)


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.keys: list[RegisteredKey] = []
        self.settings: Settings | None = None
        self.upstream_url = ""
        self.offline_model = False
        self.moto_url = ""
        self._environ = Environ()
        self._moto: Emulator | None = None
        self._in_process: in_process.InProcessServer | None = None
        self._fake: FakeAnthropic | FakeBedrock | None = None
        self.githost: Any = None  # githost.GitHost, with --githost
        self._github_app: Any = None  # githost.local.LocalApp, with --githost
        self.github_events: Any = None  # githost.local.Connected, with --githost
        self._server: BaseWSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self._consumer: QueueConsumer | None = None
        self._webhook_consumer: QueueConsumer | None = None
        self._lost_jobs_consumer: QueueConsumer | None = None
        self._sources: list[PollingSource] = []
        #: What the optional functions serve, for the banner (empty when not running).
        self.notifier_running = False
        self.triggers_running = False
        self.pools: dict[str, FunctionPool] = {}
        self._stopped = False

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise StackError("the stack is not started")
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
        if ":" in str(shown):
            shown = f"[{shown}]"
        return f"http://{shown}:{port}"

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop(grace_seconds=0)
            raise
        return self

    def _start(self) -> None:
        config = self.config
        functions_dir = config.functions_dir or default_functions_dir()
        missing = [
            s.name
            for s in FUNCTIONS.values()
            if not (functions_dir / s.name / f"{s.handler_module}.py").is_file()
        ]
        if missing:
            raise StackError(
                f"{functions_dir} lacks {', '.join(missing)}: run `claude-jobs dev` from a "
                "checkout of claude-jobs (the handlers are not part of the installed package)"
            )
        if config.workers < 1:
            raise StackError("--workers must be at least 1")
        dev_keys = parse_dev_keys(config.dev_keys) if config.dev_keys else None
        reconcile_interval(config)  # a bad CLAUDE_JOBS_RECONCILE_SECONDS stops the start here

        self._start_moto()
        self._point_environment_at_moto()

        provider: dict[str, Any] = {}
        if config.model_provider == "bedrock":
            secret_value, provider = None, self._bedrock()
        elif config.anthropic_api_key:
            secret_value = config.anthropic_api_key
            self.upstream_url = config.anthropic_base_url or PUBLIC_ANTHROPIC_URL
        elif config.anthropic_base_url:
            # An explicit upstream (a proxy, a fake) without a key: send a placeholder.
            secret_value = PLACEHOLDER_KEY
            self.upstream_url = config.anthropic_base_url
        else:
            from .fake_anthropic import FakeAnthropic, Text

            self._fake = FakeAnthropic(default=Text(CANNED_ANSWER)).start()
            self.offline_model = True
            secret_value = PLACEHOLDER_KEY
            self.upstream_url = self._fake.url

        from ..provision import provision

        provisioned = provision(
            config.prefix,
            region=REGION,
            secret_value=secret_value,
            queue_overrides=config.queue_overrides,
            anthropic_base_url=self.upstream_url,
            allow_loopback_webhooks=True,
            **{"agent_uid_range": os.environ.get("AGENT_UID_RANGE") or own_uid_block()},
            **provider,
            **{
                **fair_sharing_settings(os.environ, config.workers),
                "webhook_retry_base_seconds": LOCAL_WEBHOOK_RETRY_BASE_SECONDS,
                "worker_invocation_seconds": config.invocation_seconds,
                # MCP servers: the allowlist, from the environment as in a deployment's config.
                "mcp_allowed_urls": os.environ.get("MCP_ALLOWED_URLS", ""),
                # As deployed (infra/config.py `warm_start`), unless WARM_START says otherwise.
                "warm_start": os.environ.get("WARM_START", "true"),
                **self._github_settings(),
                **config.settings_overrides,
            },
        )
        self.settings = provisioned.settings
        for name, value in settings_env(provisioned.settings).items():
            self._environ.set(name, value)

        self._register_keys(provisioned.settings, dev_keys)
        if self.githost is not None:
            self._connect_githost(provisioned.settings)

        from .front import ApiGatewayFront, serve

        self.pools = {
            key: FunctionPool(
                replace(spec, timeout_seconds=config.invocation_seconds)
                if key == "worker"
                else spec,
                functions_dir,
            )
            for key, spec in FUNCTIONS.items()
        }
        for key, pool in self.pools.items():
            # A handler that cannot load fails here, not on a request; each worker thread
            # finds its environment loaded (none loads while the others run a job).
            pool.warm_up(config.workers if key == "worker" else 1)
        for key in sorted(OPTIONAL_FUNCTIONS):
            spec = DEFINED_FUNCTIONS[key]
            if (functions_dir / spec.name / f"{spec.handler_module}.py").is_file():
                optional = FunctionPool(spec, functions_dir)
                try:
                    optional.warm_up()
                except Exception:
                    log.warning("the %s function cannot load; it is off", key, exc_info=True)
                    continue
                self.pools[key] = optional
        front = ApiGatewayFront(
            self.pools, authorizer_cache_seconds=config.authorizer_cache_seconds
        )
        self._server = serve(front, config.host, config.port)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="front",
            daemon=True,
        )
        self._server_thread.start()

        from .workers import QueueConsumer

        self._consumer = QueueConsumer(
            self.pools["worker"],
            provisioned.queue_urls[JOBS_QUEUE.logical_id],
            provisioned.queue_arns[JOBS_QUEUE.logical_id],
            count=config.workers,
        )
        self._consumer.start()
        if "webhook" in self.pools:  # webhook deliveries, as the webhook queue's event source
            self._webhook_consumer = QueueConsumer(
                self.pools["webhook"],
                provisioned.queue_urls[WEBHOOK_QUEUE.logical_id],
                provisioned.queue_arns[WEBHOOK_QUEUE.logical_id],
                count=1,
                batch_size=WEBHOOK_BATCH_SIZE,
                name="webhooks",
            )
            self._webhook_consumer.start()
        if "lostjobs" in self.pools:  # the jobs dead-letter queue's event source
            self._lost_jobs_consumer = QueueConsumer(
                self.pools["lostjobs"],
                provisioned.queue_urls[JOBS_DLQ.logical_id],
                provisioned.queue_arns[JOBS_DLQ.logical_id],
                count=1,
                batch_size=LOST_JOBS_BATCH_SIZE,
                name="lost-jobs",
            )
            self._lost_jobs_consumer.start()
        self._start_sources(provisioned.settings, functions_dir)

    def _bedrock(self) -> dict[str, Any]:
        """Bedrock as the provider: the given runtime, or the offline stand-in, which accepts
        only requests signed with the stack's own credentials (those the worker holds)."""
        if self.config.model_provider != "bedrock":
            return {}
        if self.config.bedrock_endpoint_url:
            self.upstream_url = self.config.bedrock_endpoint_url
        else:
            from .fake_anthropic import Text
            from .fake_bedrock import Credentials, FakeBedrock

            key = self.aws_credentials
            self._fake = FakeBedrock(
                default=Text(CANNED_ANSWER),
                credentials=Credentials(key.access_key_id, key.secret_access_key),
                region=REGION,
            ).start()
            self.offline_model = True
            self.upstream_url = self._fake.url
        return {
            "model_provider": "bedrock",
            "bedrock_endpoint_url": self.upstream_url,
            "aws_region": REGION,
        }

    def _start_sources(self, settings: Settings, functions_dir: Path) -> None:
        """The notifier on the jobs table's stream, the trigger function on the relay queue.
        They are extras of the local stack: one that cannot start is reported and skipped."""
        import boto3

        from .sources import PollingSource, relay_to_function

        # provision() made the bus and the inbox bucket; the emulator needs the wiring.
        if "notifier" in self.pools:
            try:
                from .sources import notifier_source

                self._sources.append(
                    PollingSource(
                        "notifier",
                        notifier_source(
                            settings, self.pools["notifier"].invoke, self.config.prefix
                        ),
                    )
                )
                self.notifier_running = True
            except Exception as exc:
                log.warning("the notifier is off: %s", exc)
        if "expiry" in self.pools:  # REMOVE records of the stream (TTL) → slots back
            try:
                from .sources import expired_jobs_source

                self._sources.append(
                    PollingSource(
                        "expired-jobs",
                        expired_jobs_source(
                            settings, self.pools["expiry"].invoke, self.config.prefix
                        ),
                        idle_seconds=2.0,
                    )
                )
            except Exception as exc:
                log.warning("freeing the slots of expired jobs is off: %s", exc)
        if "trigger" in self.pools:
            try:
                from claude_jobs.triggers.config import load_config
                from claude_jobs.triggers.templates import TemplateStore

                from .trigger_relay import wire_local_triggers

                path = Path(settings.triggers_config or functions_dir / "trigger" / "triggers.json")
                triggers = load_config(path, TemplateStore(path.parent / "templates"))
                relay_url = wire_local_triggers(settings, triggers, prefix=self.config.prefix)
                sqs = boto3.client("sqs", region_name=REGION)
                self._sources.append(
                    PollingSource(
                        "triggers",
                        relay_to_function(
                            sqs, relay_url, self.pools["trigger"].invoke, settings.trigger_dlq_url
                        ),
                    )
                )
                self.triggers_running = True
            except Exception as exc:
                log.warning("triggers are off: %s", exc)
        if "reconciler" in self.pools:
            # The deployment's EventBridge schedule (docs/adr/0001-runtime-api.md), the first
            # run at start: every `reconcile_interval` seconds (approvals expire on it).
            reconciler = self.pools["reconciler"]

            def reconcile() -> int:
                reconciler.invoke(
                    {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
                )
                return 0

            self._sources.append(
                PollingSource("reconciler", reconcile, idle_seconds=reconcile_interval(self.config))
            )
        for source in self._sources:
            source.start()

    @property
    def aws_credentials(self) -> StackCredentials:
        """The only key the emulator serves. The stack's functions hold it in this process's
        environment; a job's agent never does (its environment is an allowlist)."""
        if self._moto is None:
            raise StackError("the stack is not started")
        return self._moto.credentials

    def _start_moto(self) -> None:
        from .emulator import Emulator

        self._moto = Emulator("127.0.0.1").start()
        self.moto_url = self._moto.url
        # The functions run in this process: their calls skip the socket (in_process.py).
        self._in_process = in_process.serve(self._moto.url, self._moto.app)
        # The functions' clients clean botocore's user-agent parts once (see that module).
        user_agent.install()

    def _point_environment_at_moto(self) -> None:
        for name in REMOVED_ENV:
            self._environ.set(name, None)
        values: dict[str, str | None] = {
            "AWS_ENDPOINT_URL": self.moto_url,
            **self.aws_credentials.environment(),
            "AWS_SESSION_TOKEN": None,  # the stack's key is an IAM user's: no session
            "AWS_SECURITY_TOKEN": None,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
        for name, value in values.items():
            self._environ.set(name, value)
        for name, value in DEFAULT_ENV.items():
            if name not in os.environ:
                self._environ.set(name, value)

    def _register_keys(self, settings: Settings, dev_keys: list[tuple[str, str]] | None) -> None:
        from claude_jobs.clock import utcnow
        from claude_jobs.wiring import Container

        service = Container(settings).key_service
        if dev_keys is None:
            key, _ = service.create(DEFAULT_TENANT, "local stack", utcnow())
            self.keys.append(RegisteredKey(DEFAULT_TENANT, key, generated=True))
            return
        for tenant, key in dev_keys:
            try:
                service.create(tenant, "local stack", utcnow(), plaintext=key)
            except ValueError as exc:
                raise StackError(f"{DEV_KEYS_ENV}: tenant {tenant!r}: {exc}") from None
            self.keys.append(RegisteredKey(tenant, key, generated=False))

    def _github_settings(self) -> dict[str, Any]:
        """GITHUB_GIT_URL/GITHUB_API_URL: the stand-in's (`--githost`), or the environment's."""
        if self.config.githost:
            from ..githost import GitHost
            from ..githost.local import local_app

            self._github_app = local_app()
            self.githost = GitHost(app=self._github_app.hosted).start()
            return {
                "github_git_url": self.githost.url,
                "github_api_url": self.githost.api_url,
                **self._github_app.settings(),
            }
        names = {"github_git_url": "GITHUB_GIT_URL", "github_api_url": "GITHUB_API_URL"}
        return {key: os.environ[env] for key, env in names.items() if os.environ.get(env)}

    def _connect_githost(self, settings: Settings) -> None:
        import boto3

        from ..githost.local import connect_local

        client = boto3.client("secretsmanager", region_name=REGION)
        self.github_events = connect_local(
            self.githost,
            self._github_app,
            client,
            prefix=settings.github_secret_prefix,
            installation_prefix=settings.github_installation_prefix,
            tenants=[key.tenant_id for key in self.keys],
        )

    def stop(self, grace_seconds: float = 10.0) -> int:
        """Stop everything; wait up to `grace_seconds` for running jobs. Returns how many jobs
        were abandoned mid-run."""
        if self._stopped:
            return 0
        self._stopped = True
        abandoned = 0
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._server_thread is not None:
                self._server_thread.join(timeout=5)
        if self._consumer is not None:
            abandoned = self._consumer.stop(grace_seconds)
            self._consumer = None
        for source in self._sources:
            source.stop()
        self._sources = []
        if self._webhook_consumer is not None:
            self._webhook_consumer.stop(grace_seconds=0)
            self._webhook_consumer = None
        if self._lost_jobs_consumer is not None:
            self._lost_jobs_consumer.stop(grace_seconds=0)
            self._lost_jobs_consumer = None
        for pool in self.pools.values():
            pool.drop_idle()  # the workers' warm CLIs end with their environments
        if self._fake is not None:
            self._fake.close()
            self._fake = None
        if self.githost is not None:
            self.githost.close()
            self.githost = None
        if self._in_process is not None:
            in_process.stop(self._in_process)
            self._in_process = None
        if self._moto is not None:
            try:
                self._moto.stop()
            except Exception:  # pragma: no cover - best effort at exit
                log.debug("stopping the emulator failed", exc_info=True)
            self._moto = None
        self._environ.restore()
        return abandoned

    @property
    def busy_workers(self) -> int:
        return self._consumer.busy if self._consumer is not None else 0

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
