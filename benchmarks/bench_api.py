"""Cold start of the API functions, and the AWS calls each request makes.

Cold start: fresh Python processes, interleaved round by round, timed from spawn to exit.
- `baseline`: `import boto3; boto3.client("dynamodb")`, the least any DynamoDB handler does;
- `submit` / `status`: import `functions/<name>/handler.py` as the Lambda runtime does (the
  function's folder on `sys.path`, `import handler`): everything a request needs is imported;
  only the boto3 clients are created on the first request (one per container);
- `naive submit`: `naive_submit_handler.py`, the tutorial-style handler, for comparison;
- `baseline, no GC`: the baseline with the garbage collector paused, as the functions' init
  phase does (`claude_jobs.api.boot`), to show how much of the ratio that accounts for.
Then the same with one request answered, against a local moto server:
- `baseline+call`: the above plus one `GetItem`;
- `submit+request` / `status+request`: import the handler and answer one real-shaped event.

From source (issue 28; `from_source`, also `python -m benchmarks.bench_api` alone): the import
and the first answer again, with no bytecode read or written in any process (the layer ships
sources only), 9 rounds after 2 warm-ups, the baseline with its collector on; next to them,
`libraries alone`: the same libraries' calls with no code of ours (informative).

AWS calls: the real handlers answer real-shaped events against the moto server while botocore's
`before-call` hook counts every API call their clients make.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DESCRIPTION = "API functions: cold start vs boto3 + one client, AWS calls per request"
ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.25
DEFAULT_ROUNDS = 7
#: The source-only measure (issue 28): 9 rounds after 2 warm-ups, medians.
SOURCE_ROUNDS = 9
SOURCE_WARMUPS = 2

#: What every child process gets, as Lambda would set it.
LAMBDA_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "claude-jobs-bench",
    "POWERTOOLS_METRICS_NAMESPACE": "ClaudeJobsBench",
    "POWERTOOLS_TRACE_DISABLED": "1",
}

BASELINE = "import boto3\nboto3.client('dynamodb')\n"
IMPORT_HANDLER = "import sys\nsys.path.insert(0, {folder!r})\nimport handler\n"
BASELINE_CALL = BASELINE.replace(
    "boto3.client('dynamodb')\n",
    "boto3.client('dynamodb').get_item(TableName={table!r}, Key={{'job_id': {{'S': 'x'}}}})\n",
)
HANDLER_REQUEST = IMPORT_HANDLER + (
    "import json\n"
    "class Context:\n"  # what Powertools reads from Lambda's context object
    "    function_name = 'claude-jobs-bench'\n"
    "    memory_limit_in_mb = 512\n"
    "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:bench'\n"
    "    aws_request_id = 'bench'\n"
    "response = handler.lambda_handler(json.loads({event!r}), Context())\n"
    "assert response['statusCode'] < 500, response\n"
)


#: Compiled bytecode for the children, kept apart from the tree: Lambda runs precompiled
#: modules (the runtime's boto3 ships .pyc, and so should the layer), while a shell with
#: PYTHONDONTWRITEBYTECODE would otherwise recompile every module in every child.
PYCACHE = Path(tempfile.gettempdir()) / "claude-jobs-bench-pycache"


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "PYTHONPATH"}}
    return {**keep, **LAMBDA_ENV, "PYTHONPYCACHEPREFIX": str(PYCACHE), **(extra or {})}


def _time(code: str, env: dict[str, str], source_only: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh process running `code`. CPU time (user + system) is
    much less disturbed than wall time when other work shares the machine.

    `source_only`: every module is compiled from its source, as from the layer (which ships no
    bytecode, on read-only storage): bytecode is neither written nor read from any cache (an
    empty `PYTHONPYCACHEPREFIX` of its own for this one process; the `__pycache__` directories
    beside the sources are not consulted while a prefix is set)."""
    with tempfile.TemporaryDirectory(prefix="claude-jobs-bench-nopyc-") as empty:
        if source_only:
            env = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": empty}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


Medians = dict[str, tuple[float, float]]


def measure(
    variants: dict[str, tuple[str, dict[str, str]]],
    rounds: int,
    *,
    source_only: bool = False,
    warmups: int = 1,
) -> Medians:
    """Median (wall, CPU) time of each variant; each round runs every variant once, in a
    shuffled order, so that load drifts and ordering hit all variants alike. The warm-up
    rounds (not counted) write the .pyc files (unless `source_only`) and warm the OS page
    cache."""
    for _ in range(warmups):
        for code, env in variants.values():
            _time(code, env, source_only)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    order = list(variants)
    shuffler = random.Random(1)  # noqa: S311 - an order, not a secret
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            samples[name].append(_time(*variants[name], source_only))
    return {
        name: (statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
        for name, times in samples.items()
    }


@contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment meanwhile (the benchmarks that run after this one
    must not find an endpoint that is gone)."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _report(title: str, medians: Medians, baseline: str, subjects: list[str]) -> bool:
    """Print medians and ratios; True when every subject's wall-time ratio meets the target."""
    print(f"\n{title}")
    print(f"  {'':<16} {'wall (median)':>14} {'ratio':>6}   {'CPU (median)':>13} {'ratio':>6}")
    base_wall, base_cpu = medians[baseline]
    ok = True
    for name in [baseline, *subjects]:
        wall, cpu = medians[name]
        verdict = ""
        if name != baseline:
            met = wall / base_wall <= TARGET_RATIO
            ok = ok and met
            verdict = "ok" if met else f"over the {TARGET_RATIO} target"
        print(
            f"  {name:<16} {wall * 1000:11.0f} ms {wall / base_wall:6.2f}"
            f"   {cpu * 1000:10.0f} ms {cpu / base_cpu:6.2f}   {verdict}"
        )
    return ok


class CallCounter:
    """Counts every AWS API call a botocore client makes (`before-call`, once per call)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call.*.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def take(self) -> dict[str, int]:
        taken = dict(self.calls)
        self.calls.clear()
        return taken


def count_calls(settings: Any) -> bool:
    """Answer one request of each kind through the real handlers; print and check the calls."""
    sys.path.insert(0, str(ROOT))
    from claude_jobs.clock import utcnow
    from claude_jobs.resources import TENANT_SHARDS
    from claude_jobs.wiring import Container
    from claude_jobs_tools.api_gateway_events import authorizer_event, rest_event
    from claude_jobs_tools.local.runtime import LambdaContext

    def lambda_context() -> LambdaContext:
        return LambdaContext("claude-jobs-bench", memory_limit_in_mb=512, timeout_seconds=30)

    from tests.integration.api.conftest import load_handler

    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # before the handlers build their logger
    counter = CallCounter()

    class CountingContainer(Container):
        def client(self, service: str) -> Any:
            fresh = service not in self._clients
            client = super().client(service)
            if fresh:
                counter.attach(client)
            return client

    container = CountingContainer(settings)
    submit, status, authorizer = (load_handler(n) for n in ("submit", "status", "authorizer"))
    submit.function.container = status.function.container = container
    authorizer.authorizer.container = container
    key, record = container.key_service.create("bench", "bench", utcnow())
    context = {"tenant_id": "bench", "key_id": record.key_id}
    body = json.dumps({"prompt": "hello"})
    with contextlib.redirect_stdout(io.StringIO()):
        first = submit.lambda_handler(
            rest_event("POST", "/v1/jobs", body=body, authorizer=context), lambda_context()
        )
    job_id = json.loads(first["body"])["job_id"]
    keyed = {"Idempotency-Key": "bench-1"}
    requests: list[tuple[str, Any, dict[str, Any], dict[str, int]]] = [
        (
            "POST /v1/jobs",
            submit,
            rest_event("POST", "/v1/jobs", body=body, authorizer=context),
            # The job and its tenant's pending count in one transaction (fair sharing).
            {"dynamodb.TransactWriteItems": 1, "sqs.SendMessage": 1},
        ),
        (
            "POST /v1/jobs (Idempotency-Key)",
            submit,
            rest_event("POST", "/v1/jobs", body=body, authorizer=context, headers=keyed),
            {"dynamodb.TransactWriteItems": 1, "sqs.SendMessage": 1},
        ),
        (
            "GET /v1/jobs/{job_id}",
            status,
            rest_event("GET", f"/v1/jobs/{job_id}", authorizer=context),
            {"dynamodb.GetItem": 1},
        ),
        (
            "GET /v1/jobs",
            status,
            rest_event("GET", "/v1/jobs", authorizer=context),
            # One Query per shard of the tenant index, then the page's items in one batch.
            {"dynamodb.Query": TENANT_SHARDS, "dynamodb.BatchGetItem": 1},
        ),
        (
            "GET /v1/jobs/{job_id}/events",
            status,
            rest_event("GET", f"/v1/jobs/{job_id}/events", authorizer=context),
            {"dynamodb.GetItem": 1, "dynamodb.Query": 1},
        ),
        ("GET /v1/health", status, rest_event("GET", "/v1/health"), {}),
        (
            "authorizer (TOKEN)",
            authorizer,
            authorizer_event(f"Bearer {key}", "GET", "/v1/jobs"),
            {"dynamodb.GetItem": 1},
        ),
    ]
    print("\nAWS calls per request (real handlers, counted with botocore's before-call hook)")
    ok = True
    for name, module, event, expected in requests:
        counter.take()
        with contextlib.redirect_stdout(io.StringIO()):  # the handlers' logs and metrics
            response = module.lambda_handler(event, lambda_context())
        calls = counter.take()
        code = response.get("statusCode", 200)  # an authorizer answers a policy
        good = calls == expected and code < 400
        ok = ok and good
        shown = ", ".join(f"{k} x{v}" for k, v in sorted(calls.items())) or "none"
        print(f"  {name:<32} {code}  {shown:<50} {'ok' if good else f'expected {expected}'}")
    return ok


def _served_env(endpoint: str, settings: Any) -> dict[str, str]:
    return _child_env(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "JOBS_TABLE": settings.jobs_table,
            "KEYS_TABLE": settings.keys_table,
            "EVENTS_TABLE": settings.events_table,
            "JOBS_QUEUE_URL": settings.jobs_queue_url,
            "RESULTS_BUCKET": settings.results_bucket,
        }
    )


def _first_answer_variants(settings: Any, served: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """Fresh processes that answer one request (and the baseline's one GetItem)."""
    from claude_jobs_tools.api_gateway_events import rest_event

    context = {"tenant_id": "bench", "key_id": "bench"}
    submit_event = rest_event("POST", "/v1/jobs", body='{"prompt":"hi"}', authorizer=context)
    status_event = rest_event(
        "GET", "/v1/jobs/00000000-0000-4000-8000-000000000000", authorizer=context
    )
    return {
        "baseline+call": (BASELINE_CALL.format(table=settings.jobs_table), served),
        "submit+request": (
            HANDLER_REQUEST.format(folder=FOLDERS["submit"], event=json.dumps(submit_event)),
            served,
        ),
        "status+request": (
            HANDLER_REQUEST.format(folder=FOLDERS["status"], event=json.dumps(status_event)),
            served,
        ),
    }


#: A submit handler written plainly on the same libraries, with no code of its own: boto3 with a
#: DynamoDB and an SQS client and one call each, pydantic with one model, Powertools' Logger and
#: Metrics writing one line each; the collector paused, as the functions' init and first
#: invocation run (`claude_jobs.api.boot`). Informative: `submit+request` against it is what
#: the function's own code costs over its libraries (or saves: its clients skip botocore's
#: service listing, `adapters.aws_session`).
LIBRARIES = (
    "import gc\n"
    "gc.disable()\n"
    "import os\n"
    "os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
    "import boto3\n"
    "from pydantic import BaseModel\n"
    "from aws_lambda_powertools import Logger, Metrics\n"
    "from aws_lambda_powertools.metrics import MetricUnit\n"
    "class Request(BaseModel):\n"
    "    prompt: str\n"
    "logger = Logger(service='bench')\n"
    "metrics = Metrics(namespace='Bench', service='bench')\n"
    'request = Request.model_validate_json(\'{{"prompt":"hi"}}\')\n'
    "boto3.client('dynamodb').get_item(TableName={table!r}, Key={{'job_id': {{'S': 'x'}}}})\n"
    "boto3.client('sqs').send_message(QueueUrl={queue!r}, MessageBody=request.model_dump_json())\n"
    "metrics.add_metric(name='Answered', unit=MetricUnit.Count, value=1)\n"
    "metrics.flush_metrics()\n"
    "logger.info('answered')\n"
)
LIBRARIES_NAME = "libraries alone"

FOLDERS = {name: str(ROOT / "functions" / name) for name in ("submit", "status")}
FIRST_ANSWER_TITLE = "Cold start to the first answer (moto server on loopback; what a caller feels)"
SOURCE_TITLE = "from source, as the layer ships it: no bytecode read or written, collector on"


def from_source(
    rounds: int | None, settings: Any = None, served: dict[str, str] | None = None
) -> bool:
    """Issue 28's measure: every module compiled from source in every process (the layer ships
    no bytecode), the baseline with its garbage collector on, 9 rounds after 2 warm-ups; the
    import alone, then (given a provisioned emulator) to the first answer. True when every
    wall-time ratio meets the target."""
    env = _child_env()
    rounds = rounds or SOURCE_ROUNDS
    print(f"\n{rounds} rounds after {SOURCE_WARMUPS} warm-ups, {SOURCE_TITLE}")
    imports = measure(
        {
            "baseline": (BASELINE, env),
            "submit": (IMPORT_HANDLER.format(folder=FOLDERS["submit"]), env),
            "status": (IMPORT_HANDLER.format(folder=FOLDERS["status"]), env),
        },
        rounds,
        source_only=True,
        warmups=SOURCE_WARMUPS,
    )
    ok = _report("Cold start from source: import only", imports, "baseline", ["submit", "status"])
    if settings is None or served is None:
        return ok
    libraries = LIBRARIES.format(table=settings.jobs_table, queue=settings.jobs_queue_url)
    first = measure(
        {**_first_answer_variants(settings, served), LIBRARIES_NAME: (libraries, served)},
        rounds,
        source_only=True,
        warmups=SOURCE_WARMUPS,
    )
    first_ok = _report(
        FIRST_ANSWER_TITLE.replace("Cold start", "Cold start from source"),
        first,
        "baseline+call",
        ["submit+request", "status+request"],
    )
    wall, cpu = first[LIBRARIES_NAME]
    base_wall, base_cpu = first["baseline+call"]
    print(
        f"  {LIBRARIES_NAME:<16} {wall * 1000:11.0f} ms {wall / base_wall:6.2f}"
        f"   {cpu * 1000:10.0f} ms {cpu / base_cpu:6.2f}   (informative: no code of ours)"
    )
    return ok and first_ok


def run(args: argparse.Namespace) -> bool:
    rounds = args.rounds or DEFAULT_ROUNDS
    folder = FOLDERS
    env = _child_env()
    started = time.perf_counter()
    print(f"{rounds} rounds, medians of fresh processes ({sys.executable})")
    imports = measure(
        {
            "baseline": (BASELINE, env),
            "submit": (IMPORT_HANDLER.format(folder=folder["submit"]), env),
            "status": (IMPORT_HANDLER.format(folder=folder["status"]), env),
            "naive submit": ("import benchmarks.naive_submit_handler\n", env),
            "baseline, no GC": ("import gc\ngc.disable()\n" + BASELINE, env),
        },
        rounds,
    )
    ok = _report(
        "Cold start: import only (bytecode precompiled)", imports, "baseline", ["submit", "status"]
    )
    naive_wall, naive_cpu = imports["naive submit"]
    print(
        f"  {'naive submit':<16} {naive_wall * 1000:11.0f} ms"
        f" {naive_wall / imports['baseline'][0]:6.2f}   {naive_cpu * 1000:10.0f} ms"
        f" {naive_cpu / imports['baseline'][1]:6.2f}   (comparison: naive_submit_handler.py)"
    )
    # The functions pause the garbage collector while they load (claude_jobs.api.boot); the
    # baseline as defined does not. Shown so that the ratio can be read both ways.
    ref_wall, ref_cpu = imports["baseline, no GC"]
    print(
        f"  {'baseline, no GC':<16} {ref_wall * 1000:11.0f} ms {'':6}   {ref_cpu * 1000:10.0f} ms"
        f"          (submit/status vs this: {imports['submit'][1] / ref_cpu:.2f}"
        f" / {imports['status'][1] / ref_cpu:.2f} CPU)"
    )
    parts = measure(
        {
            "import boto3": ("import boto3\n", env),
            "pydantic+models": ("import claude_jobs.models\n", env),
            # What the functions use of Powertools: its logger and metrics (the package's
            # `__init__` loads its Tracer too); the API routes with `claude_jobs.api.resolver`.
            "powertools": ("from aws_lambda_powertools import Logger, Metrics\n", env),
        },
        rounds,
    )
    print("\nWhere an import goes (each alone, interpreter start included; informative)")
    for name, (wall, cpu) in parts.items():
        print(f"  {name:<16} {wall * 1000:11.0f} ms {'':6}   {cpu * 1000:10.0f} ms")

    from claude_jobs_tools.provision import provision

    with moto_server() as endpoint, _environment({**LAMBDA_ENV, "AWS_ENDPOINT_URL": endpoint}):
        settings = provision("bench").settings
        served = _served_env(endpoint, settings)
        first = measure(_first_answer_variants(settings, served), rounds)
        first_ok = _report(
            FIRST_ANSWER_TITLE + ", bytecode precompiled",
            first,
            "baseline+call",
            ["submit+request", "status+request"],
        )
        source_ok = from_source(args.rounds, settings, served)
        ok = count_calls(settings) and first_ok and source_ok and ok
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")
    return ok


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.bench_api`: only the from-source measure (issue 28), import and
    first answer; exit status 0 when both functions meet the target."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_api", description=main.__doc__
    )
    parser.add_argument("--rounds", type=int, default=None, help=f"default {SOURCE_ROUNDS}")
    parser.add_argument("--import-only", action="store_true", help="no first-answer table")
    args = parser.parse_args(argv)
    print(f"({sys.executable})")
    if args.import_only:
        return 0 if from_source(args.rounds) else 1
    from claude_jobs_tools.provision import provision

    with moto_server() as endpoint, _environment({**LAMBDA_ENV, "AWS_ENDPOINT_URL": endpoint}):
        settings = provision("bench").settings
        ok = from_source(args.rounds, settings, _served_env(endpoint, settings))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
