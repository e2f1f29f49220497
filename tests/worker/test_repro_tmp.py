from __future__ import annotations
import json, os, re
from pathlib import Path
import boto3, pytest
from claude_jobs.models import JobStatus
from claude_jobs_tools.local.fake_anthropic import RecordedRequest, Reply, Text, ToolUse
from tests.worker.conftest import LambdaContext, WorkerStack
from tests.worker.test_segments_cli import short_invocations, _event, shared_dir  # noqa

pytestmark = pytest.mark.cli
STEP_S = os.environ.get("STEP_S", "4")
_DONE = re.compile(r"STEP-OK-(\d+)")


def seen(request):
    done = []
    for m in request.body.get("messages") or []:
        if m.get("role") == "user":
            done += _DONE.findall(json.dumps(m.get("content")))
    return done


@pytest.mark.parametrize("fixture", ["stack", "warm_stack"])
def test_repro(fixture, request, shared_dir: Path) -> None:
    stack = request.getfixturevalue(fixture)
    effects = shared_dir / "effects"
    effects.touch()
    os.chmod(effects, 0o666)

    def model(req: RecordedRequest) -> Reply:
        n = len(set(seen(req)))
        if n >= int(os.environ.get("STEPS", "5")):
            return Text("all 5 steps done")
        return ToolUse(
            "Bash",
            {
                "command": f"for i in $(seq {STEP_S}); do sleep 1; done; echo {n + 1} >> {effects}; echo STEP-OK-{n + 1}"
            },
            id=(f"toolu_step_{n + 1}" if os.environ.get("DUP") else None),
        )

    stack.fake.default = model
    job = stack.submit("Do five steps.", allowed_tools=["Bash"], timeout_seconds=300)
    worker = short_invocations(stack)
    sqs = boto3.client("sqs")
    q = stack.provisioned.settings.jobs_queue_url
    n = 0
    try:
        while stack.get(job).status is JobStatus.QUEUED and n < 8:
            worker.handler(_event(stack, job), LambdaContext(15000))
            n += 1
            dump(stack, job, fixture, n)
            for m in sqs.receive_message(QueueUrl=q, WaitTimeSeconds=0).get("Messages", []):
                sqs.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
    finally:
        worker.processor._proxy.close()
    out = Path("/tmp/lj") / fixture
    out.mkdir(exist_ok=True)
    (out / "requests.json").write_text(
        json.dumps([r.body for r in stack.fake.message_requests], indent=1)
    )
    done = stack.get(job)
    print(fixture, done.status, done.segments, effects.read_text().split(), done.error)
    assert done.status is JobStatus.SUCCEEDED
    assert effects.read_text().split() == ["1", "2", "3", "4", "5"]


def dump(stack, job, fixture, n):
    import asyncio
    from claude_jobs.adapters.session_store import S3SessionStore

    store = S3SessionStore(boto3.client("s3"), stack.provisioned.settings.results_bucket)
    sid = stack.get(job).session_id
    entries = asyncio.run(store.load({"project_key": stack.tenant, "session_id": sid})) or []
    out = Path("/tmp/lj") / fixture
    out.mkdir(exist_ok=True)
    with open(out / f"store-{n}.txt", "w") as f:
        for e in entries:
            msg = e.get("message") or {}
            c = msg.get("content")
            f.write(
                f"{e.get('type')} {str(e.get('uuid'))[:8]} <- {str(e.get('parentUuid'))[:8]} sid={str(e.get('sessionId'))[:8]} {e.get('timestamp')} {json.dumps(c)[:120] if c is not None else json.dumps({k: v for k, v in e.items() if k not in ('uuid', 'parentUuid')})[:160]}\n"
            )
