"""The S3 session store against moto: the SDK's own conformance suite, and tenant scoping."""

from __future__ import annotations

import json
from typing import Any

import anyio
import boto3
from claude_agent_sdk.testing import run_session_store_conformance

from claude_jobs.adapters.session_store import (
    S3SessionStore,
    S3SessionTranscripts,
    TenantSessions,
)
from claude_jobs_tools.provision import Provisioned


def _bucket(provisioned: Provisioned) -> str:
    return provisioned.settings.results_bucket


def test_the_s3_store_passes_the_sdks_conformance_suite(provisioned: Provisioned) -> None:
    """Given a fresh prefix per contract, when the SDK's suite runs, then every contract holds
    (the optional list_sessions, delete and list_subkeys included)."""
    s3 = boto3.client("s3")
    prefixes = iter(range(1000))

    def make() -> S3SessionStore:
        return S3SessionStore(s3, _bucket(provisioned), prefix=f"conformance/{next(prefixes)}")

    conformance: Any = run_session_store_conformance
    anyio.run(conformance, make)


def test_keys_cannot_escape_their_scope(provisioned: Provisioned) -> None:
    """Given hostile keys (slashes, dots), when entries are appended, then they stay under
    their own encoded segments and never show up in another session's load."""
    s3 = boto3.client("s3")
    store: Any = S3SessionStore(s3, _bucket(provisioned))

    async def scenario() -> None:
        await store.append({"project_key": "t1", "session_id": "../t2/s"}, [{"type": "x", "n": 1}])
        await store.append({"project_key": "t1/../t2", "session_id": "s"}, [{"type": "x", "n": 2}])
        assert await store.load({"project_key": "t2", "session_id": "s"}) is None
        assert await store.load({"project_key": "t1", "session_id": "../t2/s"}) == [
            {"type": "x", "n": 1}
        ]

    anyio.run(scenario)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=_bucket(provisioned))["Contents"]]
    assert all(k.startswith("sessions/t1") for k in keys), keys
    assert not any("/../" in k for k in keys)


def test_a_tenant_view_is_scoped_and_deletes_only_its_session(provisioned: Provisioned) -> None:
    """Given two tenants with the same session id, when one tenant's transcript is written
    through its view (whatever project key the SDK passes) and the API deletes it, then the
    other tenant's transcript is untouched; entries mirrored twice load once."""
    s3 = boto3.client("s3")
    store = S3SessionStore(s3, _bucket(provisioned))
    a, b = TenantSessions(store, "tenant-a"), TenantSessions(store, "tenant-b")
    entry: Any = {"type": "user", "uuid": "u1", "message": {"role": "user", "content": "hi"}}
    other: Any = {**entry, "uuid": "u2"}

    async def write() -> None:
        await a.append({"project_key": "-tmp-claude-job-x-work", "session_id": "s"}, [entry])
        await a.append({"project_key": "anything", "session_id": "s"}, [entry])  # a retry
        await b.append({"project_key": "-tmp", "session_id": "s"}, [other])

    anyio.run(write)
    assert anyio.run(a.load, a.key("s")) == [entry]
    S3SessionTranscripts(s3, _bucket(provisioned)).delete("tenant-a", "s")
    assert anyio.run(a.load, a.key("s")) is None
    assert anyio.run(b.load, b.key("s")) == [other]


def test_a_sessions_stored_size_is_known_from_the_listing(provisioned: Provisioned) -> None:
    """Given a session with a main and a subagent transcript, and another session, when its
    stored size is asked for, then it is the bytes of its own objects, subagents' included."""
    s3 = boto3.client("s3")
    store: Any = S3SessionStore(s3, _bucket(provisioned))
    main: Any = {"project_key": "t", "session_id": "s"}
    sub: Any = {"project_key": "t", "session_id": "s", "subpath": "subagents/a"}
    other: Any = {"project_key": "t", "session_id": "s2"}

    async def scenario() -> int:
        await store.append(main, [{"type": "x", "pad": "a" * 100}])
        await store.append(sub, [{"type": "x", "pad": "b" * 50}])
        await store.append(other, [{"type": "x", "pad": "c" * 1000}])
        assert await store.stored_bytes({"project_key": "t", "session_id": "none"}) == 0
        return int(await store.stored_bytes(main))

    size = anyio.run(scenario)
    assert size == len('{"type":"x","pad":""}\n') * 2 + 150


def test_a_new_session_is_prepared_with_one_listing_and_a_stored_one_is_loaded(
    provisioned: Provisioned, tmp_path: Any
) -> None:
    """Given a job starting a new session, when the worker prepares its sandbox, then the
    store is listed once and nothing is read (most jobs start a session: a second listing
    found nothing); a job continuing a stored session still gets its transcript."""
    import uuid
    from datetime import UTC, datetime

    from claude_jobs.models import Job, JobOptions, JobStatus
    from claude_jobs.worker.isolation import AgentIdentity
    from claude_jobs.worker.sandbox import Sandbox
    from claude_jobs.worker.sessions import SessionKeeper

    s3 = boto3.client("s3")
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(s3, name)

    keeper = SessionKeeper(S3SessionStore(Counting(), _bucket(provisioned)))

    def prepare(session_id: str) -> Any:
        job = Job(
            job_id=f"j-{uuid.uuid4().hex[:8]}",
            tenant_id="acme",
            status=JobStatus.RUNNING,
            created_at=datetime.now(UTC),
            options=JobOptions(),
            session_id=session_id,
        )
        sandbox = Sandbox(job.job_id, AgentIdentity(), tmp_path).create()
        return keeper.prepare(job, sandbox)

    # When a new session is prepared
    fresh = prepare(str(uuid.uuid4()))
    # Then one listing, nothing read, nothing to resume
    assert calls == ["list_objects_v2"]
    assert fresh.resume is False and fresh.loaded == set()
    # And when a stored session is prepared, its transcript is loaded as before
    stored = str(uuid.uuid4())
    entry: Any = {"type": "user", "uuid": str(uuid.uuid4()), "sessionId": stored}
    view = TenantSessions(S3SessionStore(s3, _bucket(provisioned)), "acme")
    anyio.run(view.append, view.key(stored), [entry])
    calls.clear()
    resumed = prepare(stored)
    assert resumed.resume is True and resumed.loaded == {entry["uuid"]}
    assert calls.count("get_object") == 1
    assert resumed.transcript.read_text().strip() == json.dumps(entry, separators=(",", ":"))
