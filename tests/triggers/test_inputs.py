"""`materialize_inputs`: a job's S3 inputs land inside its workspace, and only there."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from claude_jobs.models import InputObject
from claude_jobs.triggers.inputs import InputUnavailableError, materialize_inputs, safe_filename

BUCKET = "inputs"


@pytest.fixture
def s3(aws: None):  # type: ignore[no-untyped-def]
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def put(s3, key: str, body: bytes) -> InputObject:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return InputObject(bucket=BUCKET, key=key, size=len(body))


def test_the_object_is_placed_in_the_workspace(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given a job's input object and an empty workspace
    item = put(s3, "inbox/q3 report.csv", b"region,total\neu,42\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # When the inputs are materialized
    (path,) = materialize_inputs(s3, [item], workspace)
    # Then the object is a file of the workspace, named after the key's last segment
    assert path == workspace.resolve() / "q3_report.csv"
    assert path.read_bytes() == b"region,total\neu,42\n"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("../../etc/passwd", "passwd"),
        ("inbox/..", "input"),
        ("a/.bashrc", "bashrc"),
        ("a\\..\\..\\evil.sh", "evil.sh"),
        ("a/ünïcødé name.md", "n_c_d_name.md"),
        ("inbox/", "input"),
    ],
)
def test_keys_cannot_escape_the_workspace(s3, tmp_path: Path, key: str, name: str) -> None:  # type: ignore[no-untyped-def]
    # Given an object whose key tries to traverse out of (or hide in) the workspace
    item = put(s3, key, b"payload")
    workspace = tmp_path / "deep" / "ws"
    workspace.mkdir(parents=True)
    # When it is materialized
    (path,) = materialize_inputs(s3, [item], workspace)
    # Then it is a plain, visible file directly inside the workspace, and nothing else was written
    assert safe_filename(key) == name
    assert path.parent == workspace.resolve() and path.name == name
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == ["deep", "deep/ws", f"deep/ws/{name}"]


def test_a_planted_symlink_is_not_followed(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given a workspace where the input's name is already a symlink pointing outside
    workspace = tmp_path / "ws"
    workspace.mkdir()
    outside = tmp_path / "outside.txt"
    os.symlink(outside, workspace / "notes.txt")
    # When the input is materialized
    (path,) = materialize_inputs(s3, [put(s3, "notes.txt", b"data")], workspace)
    # Then it is written under another name and the link's target is untouched
    assert path.name == "notes-2.txt" and path.read_bytes() == b"data"
    assert not outside.exists()


def test_two_inputs_with_the_same_name_both_arrive(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    items = [put(s3, "a/x.txt", b"1"), put(s3, "b/x.txt", b"2")]
    paths = materialize_inputs(s3, items, tmp_path)
    assert [(p.name, p.read_bytes()) for p in paths] == [("x.txt", b"1"), ("x-2.txt", b"2")]


def test_an_input_over_the_cap_is_refused_and_leaves_nothing(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Given an object larger than the cap, whose recorded size understates it
    item = put(s3, "big.bin", b"x" * 2048).model_copy(update={"size": 10})
    # When it is materialized with a 1 KiB cap
    # Then it is refused and no partial file remains
    with pytest.raises(InputUnavailableError, match="exceeds the input limit"):
        materialize_inputs(s3, [item], tmp_path, max_bytes=1024)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_input_is_reported(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = InputObject(bucket=BUCKET, key="gone.txt", size=3)
    with pytest.raises(InputUnavailableError, match="not readable"):
        materialize_inputs(s3, [missing], tmp_path)
