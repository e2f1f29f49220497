"""The containers' boto3 session (`adapters/aws_session.py`, issue 28): botocore's own, except
that a service's model is found without listing every service botocore knows first (about half
of a cold start's first client); everything a caller sees of the loader is botocore's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import botocore
import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import Loader, create_loader

from claude_jobs.adapters.aws_session import DirectLoader, new_session, shared_loader
from claude_jobs.wiring import Container

DATA_ROOT = os.path.join(os.path.dirname(botocore.__file__), "data")


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)


def test_a_service_model_is_botocores_found_without_listing_every_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the directory reads of a fresh loader, counted
    listed: list[str] = []
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:
        listed.append(os.path.normpath(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    # When it loads a service's model and endpoint rules, as a client's creation does
    model = DirectLoader().load_service_model("dynamodb", "service-2")
    rules = DirectLoader().load_service_model("dynamodb", "endpoint-rule-set-1")
    direct_reads = list(listed)
    monkeypatch.setattr(os, "listdir", real_listdir)
    # Then they are botocore's own
    assert model == Loader().load_service_model("dynamodb", "service-2")
    assert rules == Loader().load_service_model("dynamodb", "endpoint-rule-set-1")
    # read from the service's own directory, never by listing every service's
    assert DATA_ROOT not in direct_reads
    assert os.path.join(DATA_ROOT, "dynamodb") in direct_reads
    assert len(direct_reads) <= 8, direct_reads


def test_the_list_of_services_is_botocores_and_an_unknown_service_is_refused_as_by_botocore() -> (
    None
):
    loader = DirectLoader()
    known = loader.list_available_services("service-2")
    expected = Loader().list_available_services("service-2")
    assert list(known) == expected and len(known) == len(expected) and known[0] == expected[0]
    assert "sqs" in known and "dynamodb" in known
    for name in ("no-such-service", "", "../dynamodb", ".", "dynamodb/2012-08-10", 7):
        assert name not in known
    with pytest.raises(UnknownServiceError) as refused:
        loader.load_service_model("no-such-service", "service-2")
    assert "dynamodb" in str(refused.value)


def test_aws_data_path_is_searched_first_as_botocore_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an extra data path with a model of its own (AWS_DATA_PATH)
    model_dir = tmp_path / "madeup" / "2020-01-01"
    model_dir.mkdir(parents=True)
    (model_dir / "service-2.json").write_text(json.dumps({"metadata": {"x": 1}}))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    # Then a session's loader finds it, and still botocore's services
    loader = new_session()._loader
    assert loader is shared_loader(str(tmp_path)) and isinstance(loader, DirectLoader)
    # with botocore's paths and boto3's own data directory once, however many sessions use it
    new_session()
    boto3_data = os.path.join(os.path.dirname(boto3.__file__), "data")
    assert loader.search_paths == [*create_loader(str(tmp_path)).search_paths, boto3_data]
    assert "madeup" in loader.list_available_services("service-2")
    assert loader.load_service_model("madeup", "service-2")["metadata"] == {"x": 1}
    assert "sqs" in loader.list_available_services("service-2")


def test_containers_share_the_loader_and_read_credentials_when_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two containers, created under different credentials
    first = Container().client("dynamodb")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "other")
    second = Container().client("dynamodb")
    # Then each client has its container's credentials, and both the one shared loader
    assert first._request_signer._credentials.access_key == "testing"
    assert second._request_signer._credentials.access_key == "other"
    assert first._loader is second._loader and isinstance(first._loader, DirectLoader)
