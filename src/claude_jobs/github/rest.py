"""The GitHub REST calls of the service, over the standard library's HTTP client (the worker
image ships no other): the repository, pull requests, installation tokens. `api_url` is the
deployment's `GITHUB_API_URL` (https://api.github.com, a GitHub Enterprise `/api/v3`, or the
local stand-in)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

#: Seconds a REST call may take.
REST_TIMEOUT_SECONDS = 30
#: An answer's size at most (a repository or pull request is a few KiB).
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class GitHubError(RuntimeError):
    """A REST call failed: `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message}" if status else message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InstallationToken:
    token: str
    expires_at: float  # epoch seconds


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a credential is never sent on to another place


class GitHubRest:
    """The REST subset the service uses; every call takes the credential it is made with."""

    def __init__(self, api_url: str, *, timeout: float = REST_TIMEOUT_SECONDS) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) API URL: {api_url!r}")
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect())

    # ------------------------------------------------------------ calls

    def get_repository(self, token: str, owner: str, name: str) -> dict[str, Any] | None:
        """The repository (`default_branch`, `private`, …), or None when it is not there or
        not visible with `token`."""
        try:
            found = self._call("GET", f"/repos/{_seg(owner)}/{_seg(name)}", token)
        except GitHubError as exc:
            if exc.status in (403, 404):
                return None
            raise
        return found if isinstance(found, dict) else None

    def find_pull_request(
        self, token: str, owner: str, name: str, head_branch: str
    ) -> dict[str, Any] | None:
        """The pull request (open or not) from `owner:head_branch`, if there is one."""
        query = f"?head={quote(owner + ':' + head_branch, safe='')}&state=all&per_page=5"
        found = self._call("GET", f"/repos/{_seg(owner)}/{_seg(name)}/pulls{query}", token)
        if isinstance(found, list):
            for pull in found:
                if isinstance(pull, dict) and (pull.get("head") or {}).get("ref") == head_branch:
                    return pull
        return None

    def create_pull_request(
        self,
        token: str,
        owner: str,
        name: str,
        *,
        head: str,
        base: str,
        title: str,
        body: str,
        draft: bool,
    ) -> dict[str, Any]:
        sent = {"head": head, "base": base, "title": title, "body": body, "draft": draft}
        pull = self._call("POST", f"/repos/{_seg(owner)}/{_seg(name)}/pulls", token, sent)
        if not isinstance(pull, dict):
            raise GitHubError(0, "the pull request answer is not an object")
        return pull

    def get_pull_request(self, token: str, owner: str, name: str, number: int) -> dict[str, Any]:
        pull = self._call("GET", f"/repos/{_seg(owner)}/{_seg(name)}/pulls/{int(number)}", token)
        if not isinstance(pull, dict):
            raise GitHubError(0, "the pull request answer is not an object")
        return pull

    def collaborator_permission(self, token: str, owner: str, name: str, user: str) -> str:
        """`user`'s role on the repository (`admin`, `maintain`, `write`, `triage`, `read`,
        `none`); `none` when GitHub does not know them there."""
        path = f"/repos/{_seg(owner)}/{_seg(name)}/collaborators/{_seg(user)}/permission"
        try:
            found = self._call("GET", path, token)
        except GitHubError as exc:
            if exc.status in (403, 404):
                return "none"
            raise
        if not isinstance(found, dict):
            return "none"
        role = found.get("role_name") or found.get("permission")
        return role if isinstance(role, str) else "none"

    def create_issue_comment(
        self, token: str, owner: str, name: str, number: int, body: str
    ) -> dict[str, Any]:
        """A comment on an issue or pull request (`id`, `html_url`)."""
        path = f"/repos/{_seg(owner)}/{_seg(name)}/issues/{int(number)}/comments"
        comment = self._call("POST", path, token, {"body": body})
        if not isinstance(comment, dict) or not isinstance(comment.get("id"), int):
            raise GitHubError(0, "the comment answer has no id")
        return comment

    def update_issue_comment(
        self, token: str, owner: str, name: str, comment_id: int, body: str
    ) -> None:
        path = f"/repos/{_seg(owner)}/{_seg(name)}/issues/comments/{int(comment_id)}"
        self._call("PATCH", path, token, {"body": body})

    def create_installation_token(
        self,
        app_jwt: str,
        installation_id: int,
        repositories: list[str] | None = None,
        permissions: dict[str, str] | None = None,
    ) -> InstallationToken:
        """A short-lived installation token (an hour on GitHub), restricted to `repositories`
        (names) and `permissions` when given."""
        from datetime import datetime

        sent: dict[str, Any] = {}
        if repositories:
            sent["repositories"] = repositories
        if permissions:
            sent["permissions"] = permissions
        path = f"/app/installations/{int(installation_id)}/access_tokens"
        answer = self._call("POST", path, app_jwt, sent)
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            raise GitHubError(0, "the installation token answer has no token")
        expires = str(answer.get("expires_at") or "")
        try:
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise GitHubError(0, "the installation token answer has no expiry") from None
        return InstallationToken(answer["token"], expires_at)

    def revoke_installation_token(self, token: str) -> None:
        """End an installation token before its expiry (204; already ended: 401)."""
        try:
            self._call("DELETE", "/installation/token", token)
        except GitHubError as exc:
            if exc.status != 401:
                raise

    # ------------------------------------------------------------ transport

    def _call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method)  # noqa: S310 - http(s) only (checked above)
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", "2022-11-28")
        request.add_header("User-Agent", "claude-jobs")
        request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                raw = answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise GitHubError(exc.code, _message(exc.read(64 * 1024))) from None
        except OSError as exc:
            raise GitHubError(0, f"GitHub could not be reached ({type(exc).__name__})") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise GitHubError(0, "the answer is too large")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise GitHubError(0, "the answer is not JSON") from None


def _seg(part: str) -> str:
    return quote(part, safe="")


def _message(raw: bytes) -> str:
    """GitHub's `message` (and the first error's), never the request's credential."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:300] or "no message"
    if not isinstance(data, dict):
        return "no message"
    message = str(data.get("message") or "no message")
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        detail = errors[0].get("message") or errors[0].get("code")
        if detail:
            message += f" ({detail})"
    return message[:500]
