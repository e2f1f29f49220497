"""Amazon Bedrock as the model provider: the proxy's Bedrock dialect.

With `MODEL_PROVIDER=bedrock` there is no Anthropic key anywhere. The CLI runs with
`CLAUDE_CODE_USE_BEDROCK=1`, its Bedrock base URL (`ANTHROPIC_BEDROCK_BASE_URL`) pointing at
the worker's loopback proxy and its own signing off (`CLAUDE_CODE_SKIP_BEDROCK_AUTH=1`); it
presents the job's token in the `x-claude-jobs-token` header (`ANTHROPIC_CUSTOM_HEADERS`). The
proxy signs each request it forwards with the worker role's credentials (botocore's SigV4
signer, service `bedrock`) and sends it to the region's Bedrock runtime endpoint, or to
`AWS_ENDPOINT_URL_BEDROCK_RUNTIME` when that is set.

What is forwarded, exactly (everything else gets an error in Bedrock's shape — `{"message"}`
and the exception's name in `x-amzn-ErrorType` — and never reaches the runtime):

- `POST /model/<id>/invoke` (InvokeModel) and `POST /model/<id>/invoke-with-response-stream`
  (InvokeModelWithResponseStream), where `<id>` is one of the deployment's model ids or
  inference profile ids (`BEDROCK_MODELS`). The id may spell its colons `%3A` (the AWS SDKs
  do); no other percent-encoding, no query string, no dot segment. Another id → 403
  `AccessDeniedException`; another path (the CLI's `GET /inference-profiles` included) → 404;
  another method → 405. The path sent upstream is rebuilt from the allowlist's own string.
- Only `content-type` and `accept` of the client's headers go upstream (with the signature's
  own): nothing the agent adds can change what is billed (a service tier, a guardrail) or
  carry a credential.

Answers are relayed unchanged; the meter reads their usage from the event-stream frames
(streamed) or the JSON message (not streamed) with the same budget rules as the Messages API.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
from collections.abc import Callable, Iterable
from email.message import Message
from typing import Any
from urllib.parse import quote

from ..settings import Settings
from . import forwarding
from .metering import UsageReader
from .proxy import Forward, KeyInjectingProxy, Refusal, UpstreamAuthError

log = logging.getLogger("claude_jobs.worker.bedrock")

#: The header the CLI presents its job token in (set through ANTHROPIC_CUSTOM_HEADERS).
TOKEN_HEADER = "x-claude-jobs-token"  # noqa: S105 - a header name
SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
#: The operations forwarded: path suffix → the IAM action it needs.
OPERATIONS = {
    "invoke": "bedrock:InvokeModel",
    "invoke-with-response-stream": "bedrock:InvokeModelWithResponseStream",
}
#: The client's headers that are forwarded (signed); every other one is dropped.
FORWARDED_HEADERS = ("content-type", "accept")

#: A model or inference profile id, as Bedrock spells them (`us.anthropic.claude-…-v1:0`).
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
_PATH = re.compile(r"/model/(?P<id>[A-Za-z0-9._:%-]+)/(?P<operation>[a-z-]+)")

#: Bedrock's exception names for the proxy's refusals, by the Messages API's error type.
EXCEPTIONS = {
    "invalid_request_error": "ValidationException",
    "not_found_error": "UnknownOperationException",
    "authentication_error": "UnrecognizedClientException",
    "permission_error": "AccessDeniedException",
    "billing_error": "AccessDeniedException",
    "rate_limit_error": "ThrottlingException",
    "request_too_large": "ValidationException",
    "api_error": "InternalServerException",
}


def runtime_endpoint(region: str, override: str = "") -> str:
    """The Bedrock runtime's URL: the override (AWS_ENDPOINT_URL_BEDROCK_RUNTIME) if set."""
    if override:
        return override
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ValueError(f"not an AWS region: {region!r}")
    return f"https://bedrock-runtime.{region}.amazonaws.com"


class BedrockDialect:
    """Model invocation on the Bedrock runtime, for the deployment's model ids only."""

    def __init__(
        self,
        *,
        region: str,
        model_ids: Iterable[str],
        credentials: Callable[[], Any] | None = None,
    ) -> None:
        self.region = region
        self.model_ids = frozenset(model_ids)
        bad = [m for m in self.model_ids if not MODEL_ID.fullmatch(m)]
        if bad:
            raise ValueError(f"not Bedrock model ids: {sorted(bad)}")
        self._credentials = credentials or WorkerCredentials()

    # ------------------------------------------------------------ what is forwarded

    def presented_token(self, headers: Message) -> str | None:
        token = headers.get(TOKEN_HEADER)
        return str(token).strip() if token else None

    def route(self, method: str, target: str) -> Forward | Refusal:
        allowed = "only POST /model/<id>/invoke and /model/<id>/invoke-with-response-stream"
        if not target.startswith("/") or "#" in target:
            return Refusal(400, "invalid_request_error", "the request target must be a plain path")
        if "?" in target:
            return Refusal(400, "invalid_request_error", "no query string is allowed")
        found = _PATH.fullmatch(target)
        if found is None or found["operation"] not in OPERATIONS:
            return Refusal(404, "not_found_error", f"{target[:200]} is not available: {allowed}")
        if method != "POST":
            return Refusal(
                405, "invalid_request_error", f"{method}: {allowed}", (("allow", "POST"),)
            )
        model_id = _model_id(found["id"])
        if model_id is None:
            return Refusal(400, "invalid_request_error", "the model id is not in normal form")
        if model_id not in self.model_ids:
            return Refusal(
                403,
                "permission_error",
                f"model {model_id} is not enabled for this deployment; enabled: "
                + ", ".join(sorted(self.model_ids)),
            )
        path = f"/model/{quote(model_id, safe='')}/{found['operation']}"
        return Forward(path, metered=True, model=model_id)

    def render(self, refusal: Refusal) -> tuple[int, list[tuple[str, str]], bytes]:
        exception = EXCEPTIONS.get(refusal.kind, "ValidationException")
        body = json.dumps({"message": refusal.message}).encode()
        return (
            refusal.status,
            [
                ("content-type", "application/json"),
                ("x-amzn-errortype", exception),
            ],
            body,
        )

    def admit(
        self,
        incoming: Message,
        forward: Forward,
        payload: dict[str, Any],
        job_models: frozenset[str] | None,
    ) -> str:
        """The body's allowlist (`forwarding`; the betas are the body's `anthropic_beta`);
        the model is the path's, already one of the deployment's."""
        forwarding.check_request(payload, bedrock=True)
        betas = payload.get("anthropic_beta", [])
        if not isinstance(betas, list) or not all(isinstance(b, str) for b in betas):
            raise forwarding.Refused("anthropic_beta must be a list of strings")
        forwarding.check_betas(betas)
        return forward.model

    # ------------------------------------------------------------ signing

    def upstream_headers(
        self, incoming: Message, forward: Forward, body: bytes, url: str, host: str
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        try:
            credentials = self._credentials()
        except Exception as exc:
            log.error("no AWS credentials to sign with: %s", type(exc).__name__)
            credentials = None
        if credentials is None:
            raise UpstreamAuthError("the worker has no AWS credentials to sign Bedrock calls with")
        headers = {name: str(incoming[name]) for name in FORWARDED_HEADERS if incoming.get(name)}
        headers.setdefault("content-type", "application/json")
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(credentials, SERVICE, self.region).add_auth(request)
        signed = {name.lower(): str(value) for name, value in request.headers.items()}
        signed["host"] = host
        signed["content-length"] = str(len(body))
        signed["accept-encoding"] = "identity"  # an answer the meter can read
        return signed

    # ------------------------------------------------------------ metering

    def reader(
        self, forward: Forward, body: bytes, response: http.client.HTTPResponse, charge: Any
    ) -> UsageReader | None:
        content_type = (response.getheader("content-type") or "").lower()
        streaming = content_type.startswith(EVENT_STREAM)
        return UsageReader(
            streaming=streaming,
            event_stream=streaming,
            model=forward.model,
            charge=charge,
            content_encoding=response.getheader("content-encoding") or "",
        )


def _model_id(raw: str) -> str | None:
    """The id a path segment names: `%3A` (any case) is a colon; any other escape, or a dot
    segment, is not normal form."""
    decoded = re.sub("%3[Aa]", ":", raw)
    if "%" in decoded or decoded in (".", "..") or not MODEL_ID.fullmatch(decoded):
        return None
    return decoded


class WorkerCredentials:
    """The worker's own AWS credentials (the Lambda role's), from botocore's usual chain,
    frozen for each signature (refreshable credentials refresh themselves)."""

    def __init__(self) -> None:
        self._session: Any = None

    def __call__(self) -> Any:
        if self._session is None:
            import botocore.session

            self._session = botocore.session.Session()
        credentials = self._session.get_credentials()
        return credentials.get_frozen_credentials() if credentials is not None else None


def bedrock_proxy(
    settings: Settings, *, credentials: Callable[[], Any] | None = None
) -> KeyInjectingProxy:
    """The loopback proxy of a Bedrock deployment: its runtime endpoint, region and models."""
    return KeyInjectingProxy(
        runtime_endpoint(settings.aws_region, settings.bedrock_endpoint_url),
        dialect=BedrockDialect(
            region=settings.aws_region,
            model_ids=settings.bedrock_model_ids,
            credentials=credentials,
        ),
    )
