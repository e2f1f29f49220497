"""The emulator's door: it serves only requests signed with the stack's own key.

The key is a fresh IAM user's, made in moto's IAM backend directly (`issue_stack_key`), with
moto's IAM authentication on while an emulator runs (`iam_authentication`). In front of moto,
`require_stack_key` refuses everything else with 403 and checks presigned S3 URLs itself (see
:mod:`claude_jobs_tools.local.emulator`).
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

REGION = "us-east-1"
#: The stack's IAM user may do anything: it is the stack itself.
ALLOW_EVERYTHING = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
#: The query parameters that carry a presigned URL's authorization: SigV4's `X-Amz-…`, and
#: SigV2's (what botocore still presigns S3 URLs with by default), whose signed `x-amz-…`
#: headers travel in the query too.
_PRESIGN_V2_PARAMS = frozenset({"AWSAccessKeyId", "Signature", "Expires"})
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # what S3 allows
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class StackCredentials:
    """The access key the emulator serves; `repr` never shows the secret."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }


class Refused(Exception):
    """A request the emulator does not serve: 403 with an AWS-shaped error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def require_stack_key(app: WSGIApp, credentials: StackCredentials) -> WSGIApp:
    """`app`, serving only requests signed with `credentials` (see the module's docstring)."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            if environ.get("PATH_INFO", "").startswith("/moto-api"):
                raise Refused("AccessDenied", "The emulator's own API is closed.")
            params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
            if "X-Amz-Credential" in params or "X-Amz-Signature" in params:
                _check_presigned_v4(environ, params, credentials)
                _as_header_signed(environ, credentials)
            elif "AWSAccessKeyId" in params or "Signature" in params:
                _check_presigned_v2(environ, params, credentials)
                _as_header_signed(environ, credentials)
            else:
                _check_key_id(environ.get("HTTP_AUTHORIZATION", ""), credentials)
        except Refused as refused:
            return _refusal(environ, refused, start_response)
        return app(environ, start_response)

    return wrapped


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _check_key_id(authorization: str, credentials: StackCredentials) -> None:
    """A SigV4 `Authorization` header naming the stack's key; moto checks the signature."""
    algorithm, _, fields = authorization.partition(" ")
    credential = fields.partition("Credential=")[2].partition(",")[0]
    key_id = credential.partition("/")[0].strip()
    if algorithm != "AWS4-HMAC-SHA256" or not _same(key_id, credentials.access_key_id):
        raise Refused(
            "InvalidClientTokenId", "The security token included in the request is invalid."
        )


def _raw_path(environ: dict[str, Any]) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ["PATH_INFO"])
    return str(raw).split("?", 1)[0] or "/"


def _bad_signature() -> Refused:
    return Refused(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    )


def _expired() -> Refused:
    return Refused("AccessDenied", "Request has expired")


def _malformed() -> Refused:
    return Refused("AuthorizationQueryParametersError", "Malformed presigned URL.")


def _unknown_key() -> Refused:
    return Refused("InvalidAccessKeyId", "The AWS access key Id you provided does not exist.")


def _check_presigned_v2(
    environ: dict[str, Any], params: dict[str, str], credentials: StackCredentials
) -> None:
    """A SigV2 presigned S3 URL the stack signed, not expired, signature checked."""
    from botocore.auth import HmacV1QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    if not _same(params.get("AWSAccessKeyId", ""), credentials.access_key_id):
        raise _unknown_key()
    try:
        expires = int(params.get("Expires", ""))
    except ValueError:
        raise _malformed() from None
    now = datetime.now(UTC).timestamp()
    if now > expires:
        raise _expired()
    if expires > now + _MAX_PRESIGN_SECONDS:
        raise _malformed()

    class _At(HmacV1QueryAuth):
        def _get_date(self) -> str:
            return str(expires)

    # What was signed: the method, these headers (the `x-amz-…` ones travel in the query),
    # and the path with its S3 sub-resources.
    headers = {
        name: value
        for name, value in (
            ("Content-MD5", environ.get("HTTP_CONTENT_MD5")),
            ("Content-Type", environ.get("CONTENT_TYPE")),
        )
        if value
    }
    headers.update((k.lower(), v) for k, v in params.items() if k.lower().startswith("x-amz-"))
    query = environ.get("QUERY_STRING", "")
    method: str = environ["REQUEST_METHOD"]
    url = f"http://{environ.get('HTTP_HOST', '')}{_raw_path(environ)}" + (
        f"?{query}" if query else ""
    )
    # botocore reads the headers with `get_all`: its own header type, not a plain mapping.
    signed: Any = AWSRequest(method=method, url=url, headers=headers).headers
    auth = _At(Credentials(credentials.access_key_id, credentials.secret_access_key))
    expected = auth.get_signature(method, urlsplit(url), signed)
    if not _same(params.get("Signature", ""), expected):
        raise _bad_signature()


def _check_presigned_v4(
    environ: dict[str, Any], params: dict[str, str], credentials: StackCredentials
) -> None:
    """A SigV4 presigned S3 URL the stack signed, not expired, signature checked."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key_id, _, scope = params.get("X-Amz-Credential", "").partition("/")
    if not _same(key_id, credentials.access_key_id):
        raise _unknown_key()
    day, region, service, terminator = ([*scope.split("/"), "", "", "", ""])[:4]
    stamp = params.get("X-Amz-Date", "")
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = int(params.get("X-Amz-Expires", ""))
    except ValueError:
        raise _malformed() from None
    if (
        params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256"
        or service != "s3"
        or terminator != "aws4_request"
        or day != stamp[:8]
        or "X-Amz-Security-Token" in params
        or not 0 < expires <= _MAX_PRESIGN_SECONDS
    ):
        raise _malformed()
    now = datetime.now(UTC)
    if signed_at > now + _CLOCK_SKEW or now > signed_at + timedelta(seconds=expires):
        raise _expired()

    # What was signed: the URL without its signature, and the signed headers.
    query = "&".join(
        pair
        for pair in environ.get("QUERY_STRING", "").split("&")
        if pair.partition("=")[0] != "X-Amz-Signature"
    )
    host = environ.get("HTTP_HOST", "")
    headers = {}
    for name in params.get("X-Amz-SignedHeaders", "host").split(";"):
        # WSGI keeps these two outside the HTTP_ names (a presigned PUT of an upload signs
        # both: the size it may have is part of its signature).
        key = {"content-length": "CONTENT_LENGTH", "content-type": "CONTENT_TYPE"}.get(
            name, "HTTP_" + name.upper().replace("-", "_")
        )
        value = host if name == "host" else environ.get(key)
        if value is None:
            raise Refused("SignatureDoesNotMatch", "A signed header is missing.")
        headers[name] = value
    request = AWSRequest(
        method=environ["REQUEST_METHOD"],
        url=f"http://{host}{_raw_path(environ)}?{query}",
        headers=headers,
    )
    request.context["timestamp"] = stamp
    auth = S3SigV4QueryAuth(
        Credentials(credentials.access_key_id, credentials.secret_access_key),
        "s3",
        region,
        expires=expires,
    )
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    if not _same(params.get("X-Amz-Signature", ""), expected):
        raise _bad_signature()


def _is_authorization_param(name: str) -> bool:
    return name in _PRESIGN_V2_PARAMS or name.lower().startswith("x-amz-")


def _as_header_signed(environ: dict[str, Any], credentials: StackCredentials) -> None:
    """Turn a checked presigned request into the same request signed in its headers with the
    stack's key: moto's IAM authentication reads signatures from headers only."""
    from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class _UnsignedPayload(S3SigV4Auth):
        def payload(self, request: Any) -> str:
            return UNSIGNED_PAYLOAD

    query = "&".join(
        pair
        for pair in environ.get("QUERY_STRING", "").split("&")
        if pair and not _is_authorization_param(unquote(pair.partition("=")[0]))
    )
    path = _raw_path(environ)
    host = environ.get("HTTP_HOST", "")
    request = AWSRequest(
        method=environ["REQUEST_METHOD"],
        url=f"http://{host}{path}" + (f"?{query}" if query else ""),
        headers={"host": host},
    )
    _UnsignedPayload(
        Credentials(credentials.access_key_id, credentials.secret_access_key), "s3", REGION
    ).add_auth(request)
    environ["QUERY_STRING"] = query
    environ["RAW_URI"] = environ["REQUEST_URI"] = path + (f"?{query}" if query else "")
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
        environ["HTTP_" + name.upper().replace("-", "_")] = request.headers[name]


def _refusal(environ: dict[str, Any], refused: Refused, start_response: Any) -> list[bytes]:
    request_id = str(uuid.uuid4())
    if environ.get("HTTP_X_AMZ_TARGET"):  # the JSON protocols
        content_type = "application/x-amz-json-1.1"
        body = json.dumps({"__type": refused.code, "message": refused.message}).encode()
    else:  # query and REST-XML (S3): botocore reads the code from either shape
        content_type = "text/xml"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>{refused.code}</Code><Message>{refused.message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    start_response(
        "403 Forbidden",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", request_id),
        ],
    )
    return [body]


class _IamAuthentication:
    """moto's IAM authentication, on while at least one emulator in this process runs.

    moto reads `settings.INITIAL_NO_AUTH_ACTION_COUNT` on every request, process-wide: 0 means
    every request must be signed with a key moto issued. The value is put back when the last
    emulator stops (tests in the same process use moto without authentication).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: float = float("inf")

    def acquire(self) -> None:
        from moto import settings

        with self._lock:
            if self._users == 0:
                self._saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
                settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
            self._users += 1

    def release(self) -> None:
        from moto import settings

        with self._lock:
            self._users -= 1
            if self._users == 0:
                settings.INITIAL_NO_AUTH_ACTION_COUNT = self._saved


iam_authentication = _IamAuthentication()


def issue_stack_key() -> StackCredentials:
    """A fresh IAM user allowed everything, and its access key (made in moto's IAM backend
    directly: no request is served before authentication is on)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    user = f"claude-jobs-local-stack-{secrets.token_hex(6)}"
    iam.create_user(region_name=REGION, user_name=user)
    iam.put_user_policy(user, "stack-may-do-anything", ALLOW_EVERYTHING)
    key = iam.create_access_key(user)
    return StackCredentials(key.access_key_id, key.secret_access_key)
