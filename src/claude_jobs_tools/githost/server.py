"""The Git host stand-in: one loopback HTTP server.

- Git smart HTTP at `/<owner>/<repo>[.git]/info/refs`, `/git-upload-pack`,
  `/git-receive-pack`, served by `git http-backend` (CGI) over bare repositories under
  `root/<owner>/<repo>.git`. Every request needs a token (HTTP basic with the token as the
  password, as GitHub takes it, or a bearer token) that may reach that repository.
- REST under `/api` (`GITHUB_API_URL=<url>/api`): `GET /repos/{o}/{r}`, `GET|POST
  /repos/{o}/{r}/pulls`, `POST /app/installations/{id}/access_tokens` (with the App's JWT, checked
  against its public key), `DELETE /installation/token`; for GitHub events:
  `GET /repos/{o}/{r}/pulls/{n}`, `GET|POST /repos/{o}/{r}/issues/{n}/comments`,
  `PATCH /repos/{o}/{r}/issues/comments/{id}`,
  `GET /repos/{o}/{r}/collaborators/{user}/permission` (roles from `collaborators`).

What it saw is kept for tests: `pulls`, `pushes` (ref updates), `revoked` tokens, `requests`,
`comments` (id → `{repository, number, body, edits}`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from claude_jobs.worker.loopback import QuietHTTPServer

_GIT_PATH = re.compile(
    r"^/(?P<owner>[A-Za-z0-9-]+)/(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?"
    r"(?P<rest>/info/refs|/git-upload-pack|/git-receive-pack)$"
)
_REPO_API = re.compile(r"^/api/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)(?P<rest>/.+)?$")
_PULL = re.compile(r"^/pulls/(?P<number>\d+)$")
_NEW_COMMENT = re.compile(r"^/issues/(?P<number>\d+)/comments$")
_COMMENT = re.compile(r"^/issues/comments/(?P<id>\d+)$")
_PERMISSION = re.compile(r"^/collaborators/(?P<user>[^/]+)/permission$")
_TOKENS_API = re.compile(r"^/api/app/installations/(?P<id>\d+)/access_tokens$")

DEMO_FILES = {
    "README.md": "# hello\n\nA demo repository of the claude-jobs Git host stand-in.\n",
    "hello.py": 'print("hello, world")\n',
}


@dataclass
class HostedApp:
    """A GitHub App the stand-in knows: its id, public key (PEM) and installations (id →
    the repositories, `owner/name`, it may reach)."""

    app_id: str
    public_key: str
    installations: dict[int, set[str]] = field(default_factory=dict)


@dataclass
class _Token:
    repositories: set[str] | None  # None: every repository
    expires_at: float | None = None
    installation: int | None = None


class GitHost:
    def __init__(self, root: Path | None = None, *, app: HostedApp | None = None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="claude-jobs-githost-")) if root is None else root
        self.app = app
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self.pulls: list[dict[str, Any]] = []
        self.pushes: list[dict[str, str]] = []
        self.revoked: list[str] = []
        self.requests: list[str] = []  # "METHOD path" of every request
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.default_branches: dict[str, str] = {}
        #: `owner/name` → user → role (`admin`, `maintain`, `write`, `read`, ...).
        self.collaborators: dict[str, dict[str, str]] = {}
        self.comments: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------ setup

    def add_token(self, token: str, repositories: set[str] | None = None) -> str:
        """A token that may reach `repositories` (`owner/name`; None: all)."""
        with self._lock:
            self._tokens[token] = _Token(repositories)
        return token

    def create_repository(
        self, full_name: str, files: dict[str, str] | None = None, branch: str = "main"
    ) -> Path:
        """A bare repository with one commit of `files` on `branch`."""
        bare = self.root / f"{full_name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        env = _git_env()
        with tempfile.TemporaryDirectory(prefix="githost-seed-") as seed:
            _git(["init", "-q", "-b", branch, seed], env)
            for name, text in (files if files is not None else DEMO_FILES).items():
                target = Path(seed) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            _git(["-C", seed, "add", "-A"], env)
            _git(["-C", seed, "commit", "-q", "-m", "Initial commit"], env)
            _git(["clone", "-q", "--bare", seed, str(bare)], env)
        _git(["-C", str(bare), "config", "http.receivepack", "true"], env)
        _git(["-C", str(bare), "config", "uploadpack.allowReachableSHA1InWant", "true"], env)
        self.default_branches[full_name] = branch
        return bare

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        bare = self.root / f"{full_name}.git"
        done = subprocess.run(
            ["git", "-C", str(bare), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
            env=_git_env(),
            check=False,
        )
        return done.stdout.strip() or None

    def read_file(self, full_name: str, ref: str, path: str) -> str:
        bare = self.root / f"{full_name}.git"
        return subprocess.run(
            ["git", "-C", str(bare), "show", f"{ref}:{path}"],
            capture_output=True,
            text=True,
            env=_git_env(),
            check=True,
        ).stdout

    # ------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> GitHost:
        server = QuietHTTPServer((host, port), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True, name="githost")
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> GitHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """GITHUB_GIT_URL of the stand-in."""
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """GITHUB_API_URL of the stand-in."""
        return self.url + "/api"

    # ------------------------------------------------------------ checks

    def _may(self, token: str | None, full_name: str) -> bool:
        if not token:
            return False
        with self._lock:
            known = self._tokens.get(token)
        if known is None:
            return False
        if known.expires_at is not None and known.expires_at < time.time():
            return False
        return known.repositories is None or full_name.lower() in {
            r.lower() for r in known.repositories
        }

    def _mint(self, installation: int, names: list[str] | None) -> tuple[str, float]:
        assert self.app is not None
        reachable = self.app.installations[installation]
        wanted = {r for r in reachable if r.split("/", 1)[1] in names} if names else set(reachable)
        token = "ghs_" + secrets.token_urlsafe(24)
        expires = time.time() + 3600
        with self._lock:
            self._tokens[token] = _Token(wanted, expires, installation)
        return token, expires

    def _revoke(self, token: str) -> bool:
        with self._lock:
            known = self._tokens.get(token)
            if known is None or known.installation is None:
                return False
            del self._tokens[token]
        self.revoked.append(token)
        return True


def _git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "githost",
        "GIT_AUTHOR_EMAIL": "githost@example.invalid",
        "GIT_COMMITTER_NAME": "githost",
        "GIT_COMMITTER_EMAIL": "githost@example.invalid",
    }


def _git(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(["git", *args], env=env, check=True, capture_output=True)


def _presented_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token"):
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:
            return None
        return decoded.partition(":")[2] or None
    return None


def _handler_for(host: GitHost) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        githost = host

    return Handler


class _Handler(BaseHTTPRequestHandler):
    githost: GitHost
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()

    def do_PATCH(self) -> None:
        self._route()

    # ------------------------------------------------------------ routing

    def _route(self) -> None:
        parts = urlsplit(self.path)
        self.githost.requests.append(f"{self.command} {parts.path}")
        body = self._body()
        token = _presented_token(self.headers.get("Authorization"))
        git = _GIT_PATH.fullmatch(parts.path)
        if git is not None:
            return self._git(git, parts.query, body, token)
        if parts.path == "/api/installation/token" and self.command == "DELETE":
            ok = token is not None and self.githost._revoke(token)
            return self._json(204 if ok else 401, None if ok else {"message": "Bad credentials"})
        tokens = _TOKENS_API.fullmatch(parts.path)
        if tokens is not None and self.command == "POST":
            return self._access_tokens(int(tokens["id"]), body, token)
        repo = _REPO_API.fullmatch(parts.path)
        if repo is not None:
            return self._repo_api(repo, parts.query, body, token)
        self._json(404, {"message": "Not Found"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, data: Any) -> None:
        raw = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        if data is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    # ------------------------------------------------------------ Git

    def _git(self, match: re.Match[str], query: str, body: bytes, token: str | None) -> None:
        full_name = f"{match['owner']}/{match['name']}"
        bare = self.githost.root / f"{full_name}.git"
        if not self.githost._may(token, full_name) or not bare.is_dir():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="githost"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        env = {
            **_git_env(),
            "GIT_PROJECT_ROOT": str(self.githost.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": f"/{full_name}.git{match['rest']}",
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "token",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_HTTP_MAX_REQUEST_BUFFER": str(1024 * 1024 * 1024),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        before = _refs(bare) if match["rest"] == "/git-receive-pack" else None
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            check=False,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name.strip():
                headers.append((name.strip(), value.strip()))
        if before is not None:
            after = _refs(bare)
            for ref in sorted(set(before) | set(after)):
                if before.get(ref) != after.get(ref):
                    self.githost.pushes.append(
                        {"repository": full_name, "ref": ref, "sha": after.get(ref, "")}
                    )
        self.send_response(status)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # ------------------------------------------------------------ REST

    def _access_tokens(self, installation: int, body: bytes, presented: str | None) -> None:
        app = self.githost.app
        if app is None or not presented:
            return self._json(401, {"message": "A JSON web token could not be decoded"})
        import jwt

        try:
            claims = jwt.decode(presented, app.public_key, algorithms=["RS256"])
        except jwt.PyJWTError:
            return self._json(401, {"message": "A JSON web token could not be decoded"})
        if str(claims.get("iss")) != app.app_id:
            return self._json(401, {"message": "'Issuer' claim ('iss') must be the app id"})
        if installation not in app.installations:
            return self._json(404, {"message": "Not Found"})
        sent = json.loads(body or b"{}")
        token, expires = self.githost._mint(installation, sent.get("repositories"))
        at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._json(201, {"token": token, "expires_at": at, "permissions": sent.get("permissions")})

    def _repo_api(self, match: re.Match[str], query: str, body: bytes, token: str | None) -> None:
        full_name = f"{match['owner']}/{match['name']}"
        bare = self.githost.root / f"{full_name}.git"
        if not bare.is_dir() or not self.githost._may(token, full_name):
            return self._json(404, {"message": "Not Found"})
        if match["rest"] is None and self.command == "GET":
            branch = self.githost.default_branches.get(full_name, "main")
            return self._json(
                200,
                {"full_name": full_name, "default_branch": branch, "private": True},
            )
        rest = match["rest"] or ""
        if _events_api(self, full_name, rest, body):
            return None
        if match["rest"] == "/pulls" and self.command == "GET":
            head = parse_qs(query).get("head", [""])[0]
            found = [
                p
                for p in self.githost.pulls
                if p["repository"] == full_name and f"{match['owner']}:{p['head']['ref']}" == head
            ]
            return self._json(200, found)
        if match["rest"] == "/pulls" and self.command == "POST":
            sent = json.loads(body or b"{}")
            head, base = str(sent.get("head") or ""), str(sent.get("base") or "")
            sha = self.githost.branch_sha(full_name, head)
            if sha is None or self.githost.branch_sha(full_name, base) is None:
                return self._json(
                    422, {"message": "Validation Failed", "errors": [{"code": "invalid"}]}
                )
            number = len(self.githost.pulls) + 1
            pull = {
                "number": number,
                "html_url": f"{self.githost.url}/{full_name}/pull/{number}",
                "repository": full_name,
                "title": sent.get("title"),
                "body": sent.get("body"),
                "draft": bool(sent.get("draft")),
                "state": "open",
                "head": {"ref": head, "sha": sha},
                "base": {"ref": base},
            }
            self.githost.pulls.append(pull)
            return self._json(201, pull)
        self._json(404, {"message": "Not Found"})


def _events_api(self: _Handler, full_name: str, rest: str, body: bytes) -> bool:
    """The REST calls of GitHub events; False when `rest` is none of them."""
    host = self.githost
    pull, new, comment = (
        _PULL.fullmatch(rest),
        _NEW_COMMENT.fullmatch(rest),
        _COMMENT.fullmatch(rest),
    )
    permission = _PERMISSION.fullmatch(rest)
    if pull is not None and self.command == "GET":
        found = [
            p
            for p in host.pulls
            if p["repository"] == full_name and p["number"] == int(pull["number"])
        ]
        self._json(200 if found else 404, found[0] if found else {"message": "Not Found"})
    elif new is not None and self.command == "POST":
        with host._lock:
            comment_id = 1000 + len(host.comments)
            host.comments[comment_id] = {
                "repository": full_name,
                "number": int(new["number"]),
                "body": str(json.loads(body or b"{}").get("body") or ""),
                "edits": 0,
            }
        self._json(201, {"id": comment_id, "html_url": f"{host.url}/{full_name}#{comment_id}"})
    elif new is not None and self.command == "GET":
        # The comments, oldest first (`edits`: the stand-in's count of updates).
        found = [
            {
                "id": i,
                "body": c["body"],
                "edits": c["edits"],
                "html_url": f"{host.url}/{full_name}#{i}",
            }
            for i, c in sorted(host.comments.items())
            if c["repository"] == full_name and c["number"] == int(new["number"])
        ]
        self._json(200, found)
    elif comment is not None and self.command == "PATCH":
        known = host.comments.get(int(comment["id"]))
        if known is None or known["repository"] != full_name:
            self._json(404, {"message": "Not Found"})
        else:
            known["body"] = str(json.loads(body or b"{}").get("body") or "")
            known["edits"] += 1
            self._json(200, {"id": int(comment["id"])})
    elif permission is not None and self.command == "GET":
        role = host.collaborators.get(full_name, {}).get(permission["user"])
        if role is None:
            self._json(404, {"message": "Not Found"})
        else:
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            self._json(200, {"permission": legacy, "role_name": role})
    else:
        return False
    return True


def _refs(bare: Path) -> dict[str, str]:
    done = subprocess.run(
        ["git", "-C", str(bare), "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True,
        text=True,
        env=_git_env(),
        check=False,
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
