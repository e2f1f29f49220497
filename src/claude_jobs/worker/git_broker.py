"""The Git broker: the loopback endpoint through which a job's `git` reaches the Git host.

The agent's Git config (written by the worker, `repository.py`) maps `<GITHUB_GIT_URL>/` to
`http://127.0.0.1:<port>/` and sends the job's broker token as a bearer header. For a request
with a live token the broker:

- accepts only the smart-HTTP paths of the job's own repository (`/<owner>/<repo>[.git]/`
  `info/refs?service=git-upload-pack|git-receive-pack`, `git-upload-pack`,
  `git-receive-pack`): another repository, path, query or method → 403/404;
- reads a push's commands (`git_policy.push_problem`) and refuses the whole push unless it only
  creates or updates its grant's branch, `refs/heads/claude-jobs/<job_id>` (a follow-up that
  updates an earlier job's pull request: its agent may push nothing, the worker's delivery
  token only fast-forwards that job's branch from the tip it fetched);
- forwards it to the Git host with the tenant's credential (HTTP basic, `x-access-token`), which
  only the worker's memory holds (never the agent's environment, argv, files or Git config),
  and relays the answer, at most the job's repository cap in bytes (more: 502, `over_cap`).

One broker serves every job of the process; tokens are issued per job and revoked when it ends.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import http.client
import re
import secrets
import ssl
import tempfile
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from ..repository_models import RepoName, job_branch
from .git_policy import error_packet, pkt, push_problem, rejection
from .loopback import LoopbackServer

_PATH = re.compile(
    r"^/(?P<owner>[A-Za-z0-9-]{1,39})/(?P<name>[A-Za-z0-9._-]{1,100}?)(?:\.git)?"
    r"/(?P<service>info/refs|git-upload-pack|git-receive-pack)$"
)
_SERVICES = ("service=git-upload-pack", "service=git-receive-pack")
#: A request's body at most before it is refused (a push's pack included): the cap's.
UPSTREAM_TIMEOUT_SECONDS = 300


@dataclass
class Grant:
    """What one job's token may do."""

    job_id: str
    repository: RepoName
    credential: str
    max_bytes: int
    #: The one branch a push may update (None: no push), and the oid it must be updated from
    #: (None: any; set: fast-forward only from that tip, no create).
    branch: str | None = None
    fast_forward_from: str | None = None
    over_cap: bool = False
    refused: int = 0  # requests refused (tests, logs)


class GitBroker(LoopbackServer):
    thread_name = "claude-jobs-git-broker"
    what = "the Git broker"

    def __init__(self, git_url: str, *, host: str = "127.0.0.1") -> None:
        parts = urlsplit(git_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) Git host URL: {git_url!r}")
        self.git_url = git_url.rstrip("/")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port
        self._prefix = parts.path.rstrip("/")
        super().__init__(host)
        self._grants: dict[str, Grant] = {}
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None

    # ------------------------------------------------------------ lifecycle (LoopbackServer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    # ------------------------------------------------------------ tokens

    def issue(
        self,
        job_id: str,
        repository: RepoName,
        credential: str,
        max_bytes: int,
        *,
        branch: str | Literal["own"] | None = "own",
        fast_forward_from: str | None = None,
    ) -> str:
        """A token for one job: pushes only `branch` (default the job's own; None: none)."""
        token = "cj-git-" + secrets.token_urlsafe(32)
        pushes = job_branch(job_id) if branch == "own" else branch
        with self._lock:
            self._grants[token] = Grant(
                job_id, repository, credential, max_bytes, pushes, fast_forward_from
            )
        return token

    def revoke(self, token: str) -> Grant | None:
        with self._lock:
            return self._grants.pop(token, None)

    def grant_for(self, presented: str | None) -> Grant | None:
        if not presented:
            return None
        with self._lock:
            items = list(self._grants.items())
        found = None
        for token, grant in items:  # constant-time comparison with every live token
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = grant
        return found

    # ------------------------------------------------------------ forwarding

    def connection(self) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(
                self._upstream_host,
                self._upstream_port,
                timeout=UPSTREAM_TIMEOUT_SECONDS,
                context=self._ssl,
            )
        return http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=UPSTREAM_TIMEOUT_SECONDS
        )

    def upstream_target(self, path: str, query: str) -> str:
        return self._prefix + path + (f"?{query}" if query else "")

    @property
    def upstream_netloc(self) -> str:
        return self._netloc


def _presented(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except ValueError:
            return None
    return None


def _handler_for(broker: GitBroker) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.broker = broker
    return Handler


class _Refused(Exception):
    def __init__(self, status: int, message: str, answer: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        #: A Git-protocol answer the client shows the agent (a rejected push, `ERR`).
        self.answer = answer


class _Handler(BaseHTTPRequestHandler):
    broker: GitBroker
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._refuse(405, "method not allowed")

    do_DELETE = do_PATCH = do_HEAD = do_PUT

    def _refuse(self, status: int, message: str, answer: bytes | None = None) -> None:
        raw = (message + "\n").encode() if answer is None else answer
        kind = "text/plain; charset=utf-8"
        if answer is not None:  # a Git client reads the refusal as the service's own answer
            status = 200
            path, _, query = self.path.partition("?")
            service = query.removeprefix("service=") or path.rsplit("/", 1)[-1]
            suffix = "advertisement" if path.endswith("/info/refs") else "result"
            kind = f"application/x-{service}-{suffix}"
            if suffix == "advertisement":
                raw = pkt(f"# service={service}\n".encode()) + b"0000" + raw
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)
        self.close_connection = True

    def _handle(self) -> None:
        grant = self.broker.grant_for(_presented(self.headers.get("Authorization")))
        try:
            if grant is None:
                raise _Refused(403, "claude-jobs Git broker: no live job token")
            target = self._checked_target(grant)
            body = self._body(grant) if self.command == "POST" else None
            if body is not None and target[0].endswith("/git-receive-pack"):
                body.seek(0)
                head = body.read(1024 * 1024)
                problem = push_problem(head, grant.branch, grant.fast_forward_from)
                if problem is not None:
                    reason = f"claude-jobs: push refused: {problem}"
                    raise _Refused(403, reason, rejection(head, reason))
            self._forward(grant, target, body)
        except _Refused as refused:
            if grant is not None:
                grant.refused += 1
            answer = refused.answer
            if answer is None and refused.status == 403 and self._is_git_path():
                answer = error_packet(str(refused))
            self._refuse(refused.status, str(refused), answer)

    def _is_git_path(self) -> bool:
        path, _, query = self.path.partition("?")
        match = _PATH.fullmatch(path)
        if match is None or match["service"] == "git-receive-pack":
            return False
        return match["service"] != "info/refs" or query in _SERVICES

    def _checked_target(self, grant: Grant) -> tuple[str, str]:
        raw = self.path
        if not raw.startswith("/") or "#" in raw or "%" in raw or "\\" in raw:
            raise _Refused(400, "claude-jobs Git broker: not a plain path")
        path, _, query = raw.partition("?")
        match = _PATH.fullmatch(path)
        if match is None:
            raise _Refused(404, "claude-jobs Git broker: not a Git smart-HTTP path")
        asked = f"{match['owner']}/{match['name']}".lower()
        if asked != grant.repository.full_name.lower():
            raise _Refused(
                403,
                f"claude-jobs Git broker: this job may reach only {grant.repository.full_name}",
            )
        service = match["service"]
        if service == "info/refs":
            if self.command != "GET" or query not in _SERVICES:
                raise _Refused(400, "claude-jobs Git broker: info/refs needs GET ?service=…")
        elif self.command != "POST" or query:
            raise _Refused(400, f"claude-jobs Git broker: {service} takes a POST only")
        return f"/{grant.repository.full_name}.git/{service}", query

    def _body(self, grant: Grant) -> IO[bytes]:
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        cap = grant.max_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            if self.headers.get("Content-Length"):
                raise _Refused(400, "claude-jobs Git broker: both a length and chunks")
            total = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _Refused(400, "claude-jobs Git broker: bad chunk") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > cap:
                    raise _Refused(413, "claude-jobs Git broker: the request is too large")
                spool.write(self.rfile.read(size))
                self.rfile.readline(8)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise _Refused(400, "claude-jobs Git broker: bad Content-Length") from None
            if length < 0 or length > cap:
                raise _Refused(413, "claude-jobs Git broker: the request is too large")
            left = length
            while left > 0:
                chunk = self.rfile.read(min(left, 1024 * 1024))
                if not chunk:
                    raise _Refused(400, "claude-jobs Git broker: the body is cut short")
                spool.write(chunk)
                left -= len(chunk)
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding in ("gzip", "x-gzip"):
            spool.seek(0)
            plain = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
            try:
                with gzip.GzipFile(fileobj=spool) as unzipped:
                    while chunk := unzipped.read(1024 * 1024):
                        if plain.tell() + len(chunk) > cap:
                            raise _Refused(413, "claude-jobs Git broker: too large")
                        plain.write(chunk)
            except (OSError, EOFError, zlib.error):
                raise _Refused(400, "claude-jobs Git broker: bad gzip body") from None
            spool = plain
        elif encoding not in ("", "identity"):
            raise _Refused(400, "claude-jobs Git broker: unsupported Content-Encoding")
        return spool

    def _forward(self, grant: Grant, target: tuple[str, str], body: IO[bytes] | None) -> None:
        broker = self.broker
        path, query = target
        credential = base64.b64encode(f"x-access-token:{grant.credential}".encode()).decode()
        headers = {
            "Host": broker.upstream_netloc,
            "Authorization": f"Basic {credential}",
            "User-Agent": "claude-jobs-git-broker",
        }
        for name in ("Content-Type", "Accept", "Git-Protocol"):
            value = self.headers.get(name)
            if value and len(value) < 512:
                headers[name] = value
        size = 0
        if body is not None:
            size = body.tell()
            body.seek(0)
            headers["Content-Length"] = str(size)
        connection = broker.connection()
        try:
            connection.request(
                self.command,
                broker.upstream_target(path, query),
                body=body if body is not None else None,
                headers=headers,
            )
            answer = connection.getresponse()
            relayed = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
            total = 0
            while chunk := answer.read(1024 * 1024):
                total += len(chunk)
                if total > grant.max_bytes:
                    grant.over_cap = True
                    raise _Refused(502, "claude-jobs Git broker: the repository is too large")
                relayed.write(chunk)
        except OSError:
            raise _Refused(
                502, "claude-jobs Git broker: the Git host could not be reached"
            ) from None
        finally:
            connection.close()
        status = answer.status
        if status in (401, 407):  # the credential was refused: the agent must not be asked
            status = 403
        self.send_response(status)
        for name in ("Content-Type", "Cache-Control", "Expires", "Pragma"):
            value = answer.getheader(name)
            if value:
                self.send_header(name, value)
        self.send_header("Content-Length", str(relayed.tell()))
        self.end_headers()
        relayed.seek(0)
        while chunk := relayed.read(1024 * 1024):
            self.wfile.write(chunk)
