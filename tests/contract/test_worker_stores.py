"""One contract for each of the worker's stores: the S3 adapters (on moto) and the in-memory
fakes the unit tests use must behave alike.

- `WorkspaceStore`: a long job's working directory, one archive per job, between segments.
- `ArtifactSink`: a job's artifacts, each under the job's own prefix.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import boto3
import pytest

from claude_jobs.worker.ports import ArtifactSink, WorkspaceStore
from tests.fakes.artifacts import MemoryArtifactSink
from tests.fakes.workspace import MemoryWorkspaceStore

#: Reads back what a sink stored under an object key.
Read = Callable[[str], bytes]


@pytest.fixture(params=["s3", "memory"])
def workspaces(request: pytest.FixtureRequest) -> WorkspaceStore:
    if request.param == "memory":
        return MemoryWorkspaceStore()
    from claude_jobs.adapters.workspace_store import S3WorkspaceStore

    bucket = request.getfixturevalue("provisioned").settings.results_bucket  # moto from here
    return S3WorkspaceStore(boto3.client("s3"), bucket)


@pytest.fixture(params=["s3", "memory"])
def sink(request: pytest.FixtureRequest) -> tuple[ArtifactSink, Read]:
    if request.param == "memory":
        memory = MemoryArtifactSink()
        return memory, lambda key: memory.objects[key]
    from claude_jobs.adapters.artifact_sink import S3ArtifactSink

    bucket = request.getfixturevalue("provisioned").settings.results_bucket  # moto from here
    s3 = boto3.client("s3")
    return S3ArtifactSink(s3, bucket), lambda key: s3.get_object(Bucket=bucket, Key=key)[
        "Body"
    ].read()


def loaded(store: WorkspaceStore, tenant: str, job: str) -> bytes | None:
    into = io.BytesIO()
    return into.getvalue() if store.load(tenant, job, into) else None


def test_nothing_saved_loads_nothing_and_deletes_quietly(workspaces: WorkspaceStore) -> None:
    assert loaded(workspaces, "acme", "job-none") is None
    workspaces.delete("acme", "job-none")  # no error


def test_a_saved_archive_loads_back_whole(workspaces: WorkspaceStore) -> None:
    # Given an archive larger than one read chunk
    body = bytes(range(256)) * 8192  # 2 MiB
    # When it is saved for one job
    workspaces.save("acme", "job-1", io.BytesIO(body), len(body))
    # Then that job loads it back byte for byte
    assert loaded(workspaces, "acme", "job-1") == body


def test_saving_again_replaces_and_deleting_removes(workspaces: WorkspaceStore) -> None:
    workspaces.save("acme", "job-2", io.BytesIO(b"first"), 5)
    workspaces.save("acme", "job-2", io.BytesIO(b"second"), 6)
    assert loaded(workspaces, "acme", "job-2") == b"second"
    workspaces.delete("acme", "job-2")
    assert loaded(workspaces, "acme", "job-2") is None


def test_each_job_of_each_tenant_has_its_own_archive(workspaces: WorkspaceStore) -> None:
    workspaces.save("acme", "job-3", io.BytesIO(b"acme's"), 6)
    workspaces.save("other", "job-3", io.BytesIO(b"other's"), 7)
    assert loaded(workspaces, "acme", "job-3") == b"acme's"
    assert loaded(workspaces, "other", "job-3") == b"other's"
    assert loaded(workspaces, "acme", "job-4") is None


def test_an_artifact_is_stored_under_its_jobs_prefix(sink: tuple[ArtifactSink, Read]) -> None:
    artifacts, read = sink
    # Given a job's prefix, beside the job's documents
    prefix = artifacts.prefix("acme", "job-1")
    assert prefix == "tenant/acme/jobs/job-1/artifacts/"
    # When an artifact is put
    artifacts.put("acme", "job-1", "out/report.md", io.BytesIO(b"# Report\n"), 9)
    # Then it is at the prefix and its path
    assert read(prefix + "out/report.md") == b"# Report\n"


def test_prefixes_keep_tenants_and_jobs_apart(sink: tuple[ArtifactSink, Read]) -> None:
    artifacts, _ = sink
    prefixes = {artifacts.prefix(t, j) for t in ("acme", "ac") for j in ("job-1", "job-10")}
    assert len(prefixes) == 4
    assert not any(a != b and b.startswith(a) for a in prefixes for b in prefixes)
    # A tenant or job id with a slash cannot reach another's prefix
    assert artifacts.prefix("acme/jobs/x", "y") != artifacts.prefix("acme", "x")
    assert "/jobs/x/" not in artifacts.prefix("acme/jobs/x", "y")
