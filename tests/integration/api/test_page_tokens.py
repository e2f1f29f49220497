"""Page tokens are signed with a generated secret in every deployment (issue 20).

With an empty secret the MAC's key is public (derived from the empty string: anyone who reads
the code can make it), so a caller could write any cursor into a `next_token`. The stack here is
provisioned as every deployment is (a generated secret in Secrets Manager, named by
PAGE_TOKEN_SECRET_ID); the status function signs with it, and refuses to start on Lambda
without one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import uuid
from pathlib import Path

import boto3
import pytest

from claude_jobs.page_tokens import PageTokenSecretError
from claude_jobs_tools.dev_process import free_port
from claude_jobs_tools.local.stack import settings_env
from claude_jobs_tools.provision import Provisioned
from tests.events import load_event
from tests.lambda_context import lambda_context

from .conftest import TENANT, Api, as_tenant, failing
from .test_status import submitted

ROOT = Path(__file__).resolve().parents[3]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_with_public_key(payload: bytes) -> str:
    """A token an attacker can make: the MAC keyed as the code keys it with an empty secret."""
    key = hashlib.sha256(b"claude-jobs page token\x00").digest()
    return _b64(payload) + "." + _b64(hmac.new(key, payload, hashlib.sha256).digest()[:16])


def test_a_token_signed_with_the_public_empty_key_is_refused(api: Api) -> None:
    # Given a tenant with several jobs, and a genuine token of its listing
    for _ in range(3):
        submitted(api)
    genuine = api.list_jobs(limit="1").json["next_token"]
    payload = _unb64(genuine.split(".")[0])
    cursor = json.loads(payload)["c"]
    # When the caller sends the same cursor (and one of its own making) signed with the key an
    # empty secret gives
    forged_same = signed_with_public_key(payload)
    forged_own = signed_with_public_key(
        json.dumps({"t": "tenant-a", "c": cursor}, separators=(",", ":")).encode()
    )
    # Then both are refused as tokens this API did not return, and the genuine one still works
    for forged in (forged_same, forged_own):
        problem = api.list_jobs(limit="1", next_token=forged).is_problem(422)
        assert problem["errors"][0]["loc"] == ["query", "next_token"]
    assert api.list_jobs(limit="1", next_token=genuine).status == 200


def _load_status_handler() -> object:
    path = ROOT / "functions" / "status" / "handler.py"
    spec = importlib.util.spec_from_file_location(f"_status_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def on_lambda(provisioned: Provisioned, monkeypatch: pytest.MonkeyPatch) -> Provisioned:
    """The status function's environment as Lambda gives it, from the provisioned stack."""
    for name, value in settings_env(provisioned.settings).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "claude-jobs-status")
    return provisioned


def test_on_lambda_the_status_function_starts_with_the_generated_secret(
    on_lambda: Provisioned,
) -> None:
    # Given the deployment's environment with PAGE_TOKEN_SECRET_ID naming a generated secret
    # When Lambda imports the status function
    module = _load_status_handler()
    # Then it started, with that secret's value as its key
    container = module.function.container  # type: ignore[attr-defined]
    value = boto3.client("secretsmanager").get_secret_value(
        SecretId=on_lambda.settings.page_token_secret_id
    )["SecretString"]
    assert len(value) >= 32 and container.page_token_secret == value


@pytest.mark.parametrize("secret", [None, "   "])
def test_on_lambda_the_status_function_refuses_to_start_without_a_secret(
    on_lambda: Provisioned, monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    # Given a deployment that gives it no secret, or an empty one
    if secret is None:
        monkeypatch.delenv("PAGE_TOKEN_SECRET_ID")
    else:
        boto3.client("secretsmanager").put_secret_value(
            SecretId=on_lambda.settings.page_token_secret_id, SecretString=secret
        )
    monkeypatch.delenv("PAGE_TOKEN_SECRET", raising=False)
    # When Lambda imports the status function
    # Then it fails at startup with a clear error naming what to set
    with pytest.raises(PageTokenSecretError, match=r"PAGE_TOKEN_SECRET_ID|empty"):
        _load_status_handler()


def test_secrets_manager_failing_at_first_use_is_503_and_the_listing_works_after(
    api: Api,
) -> None:
    # Given a status function whose key was not read yet, and Secrets Manager failing
    # When a caller lists its jobs
    with failing(api.container.client("secretsmanager"), "get_secret_value"):
        answer = api.list_jobs()
    # Then 503 with Retry-After (not 500)
    answer.is_unavailable()
    # And once Secrets Manager answers, the listing works (and pages are signed)
    for _ in range(2):
        submitted(api)
    page = api.list_jobs(limit="1")
    assert page.status == 200 and page.json["next_token"]


def test_on_lambda_secrets_manager_failing_at_init_does_not_stop_the_start(
    on_lambda: Provisioned, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Secrets Manager unreachable while Lambda starts the status function
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    # When Lambda imports it, Then it starts (a failed init would answer callers 502)
    module = _load_status_handler()
    # And a listing, which needs the key, is a 503 with Retry-After while it is unreachable
    event = as_tenant(load_event("apigw_list_jobs.json"), TENANT)
    response = module.lambda_handler(event, lambda_context("status"))  # type: ignore[attr-defined]
    headers = {k: v[-1] for k, v in response.get("multiValueHeaders", {}).items()}
    headers.update(response.get("headers") or {})
    assert response["statusCode"] == 503 and int(headers["Retry-After"]) > 0


def test_on_lambda_a_secret_that_does_not_exist_stops_the_start(
    on_lambda: Provisioned, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment naming a page token secret that is not there
    monkeypatch.setenv("PAGE_TOKEN_SECRET_ID", "claude-jobs/no-such-secret")
    monkeypatch.delenv("PAGE_TOKEN_SECRET", raising=False)
    # When Lambda imports the status function, Then it fails at startup, naming the secret
    with pytest.raises(PageTokenSecretError, match=r"no-such-secret.*ResourceNotFoundException"):
        _load_status_handler()
