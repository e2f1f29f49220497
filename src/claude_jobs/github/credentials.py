"""Tenants' GitHub credentials, and the token a job's Git traffic and REST calls use.

A tenant's credential is one Secrets Manager secret, `<GITHUB_SECRET_PREFIX><tenant>`, holding
JSON: `{"token": "…"}` (a token the tenant made) or `{"installation_id": 123}` (the tenant's
installation of the deployment's GitHub App). `claude-jobs github connect` writes it.

For an App installation, the worker mints an installation token for each job, restricted to the
job's one repository and to `contents` and `pull_requests` (write), and revokes it when the job
ends; the App's JWT (RS256, ten minutes) is made from its private key (`GITHUB_APP_KEY_SECRET_ID`)
and kept until a minute before it expires. A tenant token is used as it is, and never revoked.
Neither ever reaches the agent: only the worker's broker and REST client hold it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .rest import GitHubError, GitHubRest

#: A tenant id as it may appear in a secret's name.
_TENANT = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
#: The App JWT's life (GitHub allows at most 10 minutes), and the margin kept before it ends.
APP_JWT_SECONDS = 540
APP_JWT_MARGIN_SECONDS = 60
#: What a job's installation token may do.
JOB_PERMISSIONS = {"contents": "write", "pull_requests": "write", "metadata": "read"}


@dataclass(frozen=True)
class StoredCredential:
    """What a tenant's secret holds: a token, or an App installation id."""

    token: str | None = None
    installation_id: int | None = None

    def to_json(self) -> str:
        if self.token is not None:
            return json.dumps({"token": self.token})
        return json.dumps({"installation_id": self.installation_id})

    @classmethod
    def parse(cls, raw: str | bytes) -> StoredCredential:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("the GitHub secret is not a JSON object")
        token = data.get("token")
        installation = data.get("installation_id")
        if isinstance(token, str) and token.strip():
            return cls(token=token.strip())
        if (
            isinstance(installation, int)
            and not isinstance(installation, bool)
            and installation > 0
        ):
            return cls(installation_id=installation)
        raise ValueError("the GitHub secret holds neither a token nor an installation_id")


class TenantCredentials(Protocol):
    """Port: tenants' stored GitHub credentials."""

    def get(self, tenant_id: str) -> StoredCredential | None:
        """The tenant's credential; None when it has none."""
        ...

    def put(self, tenant_id: str, credential: StoredCredential) -> None: ...


class InstallationTenants(Protocol):
    """Port: which tenant an App installation belongs to (GitHub events)."""

    def tenant_of_installation(self, installation_id: int) -> str | None:
        """The tenant connected through App installation `installation_id` (GitHub events);
        None when no tenant is (any more)."""
        ...


def secret_name(prefix: str, tenant_id: str) -> str:
    if not _TENANT.fullmatch(tenant_id):
        raise ValueError(f"{tenant_id!r} is not a tenant id")
    return prefix + tenant_id


def default_installation_prefix(prefix: str) -> str:
    """Where the installation → tenant lookups go by default: BESIDE the credentials' prefix,
    never under it (`<app>/github/` → `<app>/github-installations/`), so a grant of the
    credentials' prefix (the worker's, the notifier's) does not cover them."""
    return prefix.rstrip("/") + "-installations/"


class SecretsManagerCredentials:
    """Adapter: one secret per tenant under a prefix (the worker may read only those), and the
    installation → tenant lookups under another prefix (only GitHub events read those)."""

    def __init__(self, client: Any, prefix: str, installation_prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix
        self._installations = installation_prefix or default_installation_prefix(prefix)
        if self._installations.startswith(prefix):
            raise ValueError(
                f"the installations' prefix {self._installations!r} is under the credentials' "
                f"prefix {prefix!r}: a grant of the credentials would cover the lookups"
            )

    def get(self, tenant_id: str) -> StoredCredential | None:
        try:
            name = secret_name(self._prefix, tenant_id)
        except ValueError:
            return None
        try:
            answer = self._client.get_secret_value(SecretId=name)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ResourceNotFoundException":
                return None
            raise
        return StoredCredential.parse(answer.get("SecretString") or "")

    def put(self, tenant_id: str, credential: StoredCredential) -> None:
        name = secret_name(self._prefix, tenant_id)
        self._write(name, credential.to_json(), f"GitHub credential of tenant {tenant_id}")
        if credential.installation_id is not None:
            # The reverse lookup GitHub events need: installation → tenant (not a secret,
            # but kept beside the credentials, outside their prefix: the worker cannot read it).
            self._write(
                installation_secret_name(self._installations, credential.installation_id),
                json.dumps({"tenant_id": tenant_id}),
                f"tenant of GitHub App installation {credential.installation_id}",
            )

    def tenant_of_installation(self, installation_id: int) -> str | None:
        try:
            answer = self._client.get_secret_value(
                SecretId=installation_secret_name(self._installations, installation_id)
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ResourceNotFoundException":
                return None
            raise
        try:
            tenant = json.loads(answer.get("SecretString") or "").get("tenant_id")
        except (ValueError, AttributeError):
            return None
        if not isinstance(tenant, str):
            return None
        # Connected since through something else (a token, another installation): not theirs.
        stored = self.get(tenant)
        if stored is None or stored.installation_id != installation_id:
            return None
        return tenant

    def _write(self, name: str, value: str, description: str) -> None:
        try:
            self._client.put_secret_value(SecretId=name, SecretString=value)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code != "ResourceNotFoundException":
                raise
            self._client.create_secret(
                Name=name,
                SecretString=value,
                Description=f"claude-jobs: {description}",
            )


def installation_secret_name(installation_prefix: str, installation_id: int) -> str:
    """Where the tenant of an App installation is written."""
    return f"{installation_prefix}{int(installation_id)}"


class AppJwt:
    """A GitHub App's JWT, made from its private key and kept until near its expiry."""

    def __init__(
        self,
        app_id: str,
        private_key: Callable[[], str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app_id = app_id
        self._private_key = private_key
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # (jwt, expires at)
        self.made = 0  # JWTs signed (tests, metrics)

    def get(self) -> str:
        with self._lock:
            now = self._clock()
            if self._cached is not None and self._cached[1] - APP_JWT_MARGIN_SECONDS > now:
                return self._cached[0]
            import jwt  # PyJWT (with cryptography): only where an App is configured

            issued = int(now) - 60  # GitHub's advice: allow for clock drift
            expires = int(now) + APP_JWT_SECONDS
            token = jwt.encode(
                {"iat": issued, "exp": expires, "iss": self._app_id},
                self._private_key(),
                algorithm="RS256",
            )
            self._cached = (token, float(expires))
            self.made += 1
            return token


class CredentialUnavailableError(Exception):
    """The tenant has no usable credential for the repository (ends the job, clearly)."""


@dataclass
class JobCredential:
    """The token one job's Git traffic and REST calls use; `close` revokes a minted one."""

    token: str
    minted: bool
    _rest: GitHubRest | None = None
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.minted and self._rest is not None:
            self._rest.revoke_installation_token(self.token)


class JobCredentials:
    """Makes a job's credential from its tenant's stored one."""

    def __init__(
        self,
        stored: TenantCredentials,
        rest: GitHubRest,
        app_jwt: AppJwt | None = None,
    ) -> None:
        self._stored = stored
        self._rest = rest
        self._app_jwt = app_jwt

    def for_job(
        self, tenant_id: str, repository: str, permissions: dict[str, str] | None = None
    ) -> JobCredential:
        """The credential for `repository` (its name, without owner, restricts a minted
        token); CredentialUnavailableError when the tenant has none."""
        stored = self._stored.get(tenant_id)
        if stored is None:
            raise CredentialUnavailableError(
                f"tenant {tenant_id!r} has no GitHub credential "
                "(`claude-jobs github connect --tenant …`)"
            )
        if stored.token is not None:
            return JobCredential(stored.token, minted=False)
        if self._app_jwt is None:
            raise CredentialUnavailableError(
                f"tenant {tenant_id!r} is connected through a GitHub App installation, but "
                "this deployment has no GitHub App (GITHUB_APP_ID)"
            )
        assert stored.installation_id is not None
        try:
            minted = self._rest.create_installation_token(
                self._app_jwt.get(),
                stored.installation_id,
                [repository],
                dict(permissions or JOB_PERMISSIONS),
            )
        except GitHubError as exc:
            if exc.status in (401, 403, 404, 422):
                raise CredentialUnavailableError(
                    f"the GitHub App installation of tenant {tenant_id!r} cannot reach "
                    f"{repository!r}: {exc.message}"
                ) from None
            raise
        return JobCredential(minted.token, minted=True, _rest=self._rest)
