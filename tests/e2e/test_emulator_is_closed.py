"""A hostile agent against the local stack's emulated AWS account (issue 9).

A tenant whose job may use Bash probes every listening loopback port of the machine with
AWS-shaped requests — unsigned, and signed with made-up credentials, as any SDK default would —
and reads moto's own data dump. The emulator must give it nothing: no secret, no secret's name,
no other tenant's job.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from claude_jobs_client import Client
from claude_jobs_tools.local.fake_anthropic import FakeAnthropic

from .conftest import ANTHROPIC_KEY, BASH_COMMANDS, BIG_ANSWER_BYTES, DevProcess

pytestmark = [pytest.mark.e2e, pytest.mark.cli, pytest.mark.timeout(400)]

JOB_WAIT = 240  # seconds: the probe sends a dozen requests to each listening port
PROBE_SCRIPT = Path(__file__).with_name("loopback_probe.py")


def stack_client(stack: DevProcess, service: str) -> Any:
    """A client with the credentials the banner gives the developer."""
    exports = stack.exports()
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )


def probe_command(needles: dict[str, str], secret_ids: list[str], report_ports: set[int]) -> str:
    """The probe of every loopback port; answers printed in full: `report_ports`' and any
    that leaked (the rest counted: the CLI keeps only so much of a tool's output)."""
    params = base64.b64encode(
        json.dumps(
            {"needles": needles, "secret_ids": secret_ids, "report_ports": sorted(report_ports)}
        ).encode()
    ).decode()
    return f"python3 - {shlex.quote(params)} <<'PROBE_EOF'\n{PROBE_SCRIPT.read_text()}\nPROBE_EOF"


def test_an_agent_probing_every_loopback_port_reads_nothing_from_the_emulator(
    stack: DevProcess, fake_model: FakeAnthropic, alpha: Client, beta: Client
) -> None:
    # Given another tenant's finished job
    other = beta.submit(f"[[echo:{uuid.uuid4().hex[:10]}]]", allowed_tools=[])["job_id"]
    assert beta.wait(other, timeout=JOB_WAIT)["status"] == "succeeded"
    # And the stack's secrets, as the developer reads them with the banner's credentials
    secrets = stack_client(stack, "secretsmanager")
    secret_ids = [s["Name"] for s in secrets.list_secrets()["SecretList"]]
    webhook_key = secrets.get_secret_value(SecretId=stack.exports()["WEBHOOK_SECRET_ID"])
    # (the values and the job id are this run's own; the names are every local stack's)
    unique = {
        "anthropic_key": ANTHROPIC_KEY,
        "webhook_master_key": webhook_key["SecretString"],
        "other_tenants_job": other,
    }
    names = {f"secret_name_{n}": name for n, name in enumerate(secret_ids)}
    assert len(names) >= 2

    # When a job's agent probes every listening loopback port with AWS-shaped requests
    marker = uuid.uuid4().hex[:10]
    emulator_port = urlsplit(stack.exports()["AWS_ENDPOINT_URL"]).port
    ours = {emulator_port, urlsplit(stack.url).port, urlsplit(fake_model.url).port}
    BASH_COMMANDS[marker] = probe_command(
        unique | names, secret_ids, {p for p in ours if p is not None}
    )
    job_id = alpha.submit(
        f"Look around. [[bash:{marker}]]",
        allowed_tools=["Bash"],
        max_turns=3,
        timeout_seconds=JOB_WAIT,
    )["job_id"]
    job = alpha.wait(job_id, timeout=JOB_WAIT + 30)

    # Then the probe ran and reached the emulator with every request it tries
    assert job["status"] == "succeeded", job
    text = job["result"]["text"]
    answers = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("PROBE ")]
    (counted,) = [json.loads(line[7:]) for line in text.splitlines() if line.startswith("PROBED ")]
    assert counted["ports"] >= len(ours) and counted["answers"] >= len(answers), text
    at_emulator = {a["probe"]: a for a in answers if a["port"] == emulator_port}
    assert {"sm-list-unsigned", "sm-list-forged", "sm-get0-forged", "ddb-list-forged"} <= set(
        at_emulator
    ), text
    assert {"sqs-list-unsigned", "s3-list-forged", "moto-api-data"} <= set(at_emulator), text
    # And no answer carried a secret or another tenant's job, whatever port gave it, nor a
    # secret's name from this stack's ports. (Other developers' local stacks on this machine,
    # perhaps without this defence, use the same secret names: their ports may show them.)
    leaked = [
        (a["port"], a["probe"], a["status"], found)
        for a in answers
        if (found := [n for n in a["leaks"] if n in unique or a["port"] in ours])
    ]
    assert leaked == [], f"{leaked}\n{text}"
    assert not [label for label, value in unique.items() if value in text]
    # And the emulator refused every one of them
    assert all(a["status"] == 403 for a in at_emulator.values()), at_emulator


def test_a_large_results_download_url_works_with_no_credentials_and_only_as_signed(
    alpha: Client,
) -> None:
    # Given a job whose answer is too large to be kept inline
    name = uuid.uuid4().hex[:10]
    job = alpha.wait(alpha.submit(f"[[big:{name}]]", allowed_tools=[])["job_id"], timeout=JOB_WAIT)
    assert job["status"] == "succeeded", job
    url = job["result"]["download_url"]
    assert "text" not in job["result"]
    # When the caller fetches its download URL, with no credentials of any kind
    text = alpha.download_result(job)
    # Then it gets the whole answer from the emulator, which served the stack's signature
    assert text == f"echo {name} " + "x" * BIG_ANSWER_BYTES
    # But the same URL with its signature changed gets 403 and nothing
    forged = httpx.get(re.sub(r"(Signature=)([^&]+)", r"\1AAAA\2", url))
    assert forged.status_code == 403 and "xxxx" not in forged.text
