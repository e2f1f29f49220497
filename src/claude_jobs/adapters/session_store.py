"""Session transcripts in S3, through claude-agent-sdk's `SessionStore` protocol.

Adapted from the SDK's reference S3 adapter (examples/session_stores/s3_session_store.py). Each
`append` writes one part object, `load` lists, sorts and concatenates them:

    s3://{bucket}/{prefix}{project_key}/{session_id}[/{subpath}]/part-{epochMs13}-{rand6}.jsonl

Differences from the reference: every key segment is percent-encoded (a `project_key` or
`session_id` cannot reach another's prefix with a `/` or `..`), objects are written with
server-side encryption, entries that carry a `uuid` are de-duplicated on load (the protocol
treats `uuid` as an idempotency key: a batch mirrored twice loads once) and part files of
malformed JSON are skipped.

The service uses one project key per tenant (`TenantSessions.key`): a tenant's transcripts live
under `sessions/<tenant>/<session>/`, which the bucket's lifecycle rule expires after the
deployment's `SESSION_RETENTION_DAYS`. Only the worker process and the API touch the store; the
agent never does (the worker materialises the one transcript a job resumes inside its sandbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote

from ..resources import SESSIONS_PREFIX

if TYPE_CHECKING:  # the API's layer has no SDK: its types are for the checker only
    from claude_agent_sdk.types import (
        SessionKey,
        SessionListSubkeysKey,
        SessionStoreEntry,
        SessionStoreListEntry,
    )

_LOAD_CONCURRENCY = 16
_PART_RE = re.compile(r"^part-(\d{13})-[0-9a-f]{6}\.jsonl$")


class TranscriptStore(Protocol):
    """What the service uses of a `SessionStore` (the SDK's protocol, without the summaries
    it leaves optional)."""

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None: ...

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None: ...

    async def delete(self, key: SessionKey) -> None: ...

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]: ...


def _segment(value: str) -> str:
    """One key segment: percent-encoded, so that it never holds a `/` (and `.`/`..` are
    spelled out, never a segment of their own)."""
    encoded = quote(value, safe="")
    if encoded in ("", ".", ".."):
        encoded = encoded.replace(".", "%2E") or "%00"
    return encoded


class S3SessionStore:
    """`SessionStore` on S3 (boto3 client calls run in worker threads). Duck-typed, as the
    protocol allows: it implements `append`, `load`, `list_sessions`, `delete` and
    `list_subkeys`. asyncio only (the SDK runs on it), no anyio: the module ships in the API's
    layer too."""

    def __init__(self, client: Any, bucket: str, prefix: str = SESSIONS_PREFIX) -> None:
        if not bucket:
            raise ValueError("S3SessionStore needs a bucket")
        self._client = client
        self._bucket = bucket
        self._prefix = (prefix.rstrip("/") + "/") if prefix else ""
        self._last_ms = 0

    # ------------------------------------------------------------ keys

    def _project_prefix(self, project_key: str) -> str:
        return f"{self._prefix}{_segment(project_key)}/"

    def _session_prefix(self, project_key: str, session_id: str) -> str:
        return f"{self._project_prefix(project_key)}{_segment(session_id)}/"

    def _key_prefix(self, key: SessionKey) -> str:
        prefix = self._session_prefix(key["project_key"], key["session_id"])
        subpath = key.get("subpath")
        if subpath:
            prefix += "/".join(_segment(part) for part in subpath.split("/")) + "/"
        return prefix

    def _part_name(self) -> str:
        """Fixed-width epoch ms (lexical order = time order), monotonic within this instance;
        a random suffix tells concurrent writers apart."""
        ms = max(int(time.time() * 1000), self._last_ms + 1)
        self._last_ms = ms
        return f"part-{ms:013d}-{secrets.token_hex(3)}.jsonl"

    # ------------------------------------------------------------ S3 calls

    async def _call(self, name: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(partial(getattr(self._client, name), **kwargs))

    async def _keys(self, prefix: str, *, direct: bool) -> list[dict[str, Any]]:
        """Objects under `prefix` (only its direct children when `direct`)."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
            if direct:
                kwargs["Delimiter"] = "/"
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("list_objects_v2", **kwargs)
            for obj in page.get("Contents") or []:
                key = obj.get("Key") or ""
                if key and not (direct and "/" in key[len(prefix) :]):
                    found.append(obj)
            token = page.get("NextContinuationToken")
            if not token:
                return found

    # ------------------------------------------------------------ the protocol

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if not entries:
            return
        body = "".join(
            json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n" for entry in entries
        )
        await self._call(
            "put_object",
            Bucket=self._bucket,
            Key=self._key_prefix(key) + self._part_name(),
            Body=body.encode(),
            ContentType="application/x-ndjson",
            ServerSideEncryption="AES256",
        )

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        prefix = self._key_prefix(key)
        keys = sorted(
            obj["Key"]
            for obj in await self._keys(prefix, direct=True)
            if _PART_RE.match(obj["Key"][len(prefix) :])
        )
        if not keys:
            return None
        bodies: list[bytes] = [b""] * len(keys)
        limit = asyncio.Semaphore(_LOAD_CONCURRENCY)

        async def fetch(i: int, object_key: str) -> None:
            async with limit:
                answer = await self._call("get_object", Bucket=self._bucket, Key=object_key)
                bodies[i] = await asyncio.to_thread(answer["Body"].read)

        await asyncio.gather(*(fetch(i, object_key) for i, object_key in enumerate(keys)))
        entries: list[SessionStoreEntry] = []
        seen: set[str] = set()
        for body in bodies:
            for line in body.decode("utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if not isinstance(entry, dict):
                        continue
                    uuid = entry.get("uuid")
                    if isinstance(uuid, str):
                        if uuid in seen:
                            continue
                        seen.add(uuid)
                    entries.append(entry)  # type: ignore[arg-type]
        return entries or None

    async def stored_bytes(self, key: SessionKey) -> int:
        """The bytes stored for the session of `key`, its subagent transcripts included (from
        the listing: nothing is read)."""
        prefix = self._session_prefix(key["project_key"], key["session_id"])
        return sum(int(obj.get("Size") or 0) for obj in await self._keys(prefix, direct=False))

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        prefix = self._project_prefix(project_key)
        sessions: dict[str, int] = {}
        for obj in await self._keys(prefix, direct=False):
            rest = obj["Key"][len(prefix) :]
            parts = rest.split("/")
            if len(parts) != 2:  # subagent transcripts are deeper
                continue
            match = _PART_RE.match(parts[1])
            if match is None:
                continue
            session_id = unquote(parts[0])
            sessions[session_id] = max(sessions.get(session_id, 0), int(match.group(1)))
        return [{"session_id": sid, "mtime": mtime} for sid, mtime in sessions.items()]

    async def delete(self, key: SessionKey) -> None:
        prefix = self._key_prefix(key)
        # A session's delete takes its subagent transcripts too; a subpath's only its own.
        objects = await self._keys(prefix, direct=key.get("subpath") is not None)
        for start in range(0, len(objects), 1000):
            batch = [{"Key": obj["Key"]} for obj in objects[start : start + 1000]]
            answer = await self._call(
                "delete_objects", Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
            )
            errors = answer.get("Errors") or []
            if errors:
                raise RuntimeError(f"{len(errors)} transcript object(s) could not be deleted")

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        prefix = self._session_prefix(key["project_key"], key["session_id"])
        subkeys: set[str] = set()
        for obj in await self._keys(prefix, direct=False):
            parts = obj["Key"][len(prefix) :].split("/")
            if len(parts) >= 2:
                subpath = "/".join(unquote(part) for part in parts[:-1])
                if not any(seg in ("", ".", "..") for seg in subpath.split("/")):
                    subkeys.add(subpath)
        return sorted(subkeys)


class TenantSessions:
    """A tenant's view of a `SessionStore`: every key it makes or is given is scoped to the
    tenant (the SDK's own project key, derived from the job's working directory, is replaced),
    so nothing done through it reaches another tenant's transcripts."""

    def __init__(self, store: TranscriptStore, tenant_id: str) -> None:
        self._store = store
        self.tenant_id = tenant_id

    def key(self, session_id: str, subpath: str | None = None) -> SessionKey:
        key: SessionKey = {"project_key": self.tenant_id, "session_id": session_id}
        if subpath:
            key["subpath"] = subpath
        return key

    def _scoped(self, key: SessionKey | SessionListSubkeysKey) -> SessionKey:
        return self.key(key["session_id"], key.get("subpath"))  # type: ignore[arg-type]

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        await self._store.append(self._scoped(key), entries)

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        return await self._store.load(self._scoped(key))

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        return await self._store.list_subkeys(
            {"project_key": self.tenant_id, "session_id": key["session_id"]}
        )

    async def delete(self, key: SessionKey) -> None:
        await self._store.delete(self._scoped(key))


def session_prefix(tenant_id: str, session_id: str, prefix: str = SESSIONS_PREFIX) -> str:
    """Where a tenant's session's transcript objects live (its subagents' included)."""
    return f"{prefix}{_segment(tenant_id)}/{_segment(session_id)}/"


class S3SessionTranscripts:
    """The API's port onto the transcripts (`ports.SessionTranscripts`), in plain boto3 (the
    API's layer has no SDK): the same layout as `S3SessionStore` with a tenant's project key."""

    def __init__(self, client: Any, bucket: str, prefix: str = SESSIONS_PREFIX) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def delete(self, tenant_id: str, session_id: str) -> None:
        """Delete every object of the session's transcripts."""
        if not self._bucket:
            return
        prefix = session_prefix(tenant_id, session_id, self._prefix)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._client.list_objects_v2(**kwargs)
            objects = [{"Key": obj["Key"]} for obj in page.get("Contents") or []]
            if objects:
                answer = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": objects, "Quiet": True}
                )
                if answer.get("Errors"):
                    raise RuntimeError("transcript objects could not be deleted")
            token = page.get("NextContinuationToken")
            if not token:
                return
