"""Where a job's documents live: inline in its item when small, otherwise in the bucket.

A job's free-form documents — the prompt, the system prompt, the output schema, the metadata,
the result text and the structured result — can together weigh hundreds of KiB, while every
write of the job item is charged per KiB (twice with an index copy), an update on the larger of
the old and the new item, and every 1,000 write units a second fill one DynamoDB partition. So
a job's documents share a small inline budget, `INLINE_DOCUMENTS_BYTES` for the request's and
the same for the result's (the request's texts are dropped when the result is written); what
does not fit goes to the documents store under a tenant-scoped key and the item names the key
(`Job.documents`, or `JobResult.s3_key` for the result text). A job item stays about 1 KiB of
fixed fields plus at most 1 KiB of documents whatever the job. Why 1 KiB: see docs/data.md
("Small items").

The domain reads a document through `load()` only where it needs it: the worker the request's
documents after its claim, the status function what a job view shows.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .models import INLINE_RESULT_BYTES, Artifact, Job, JobResult
from .ports import DocumentStore

#: Inline budget (UTF-8 bytes) of the request's documents, and again of the result's.
INLINE_DOCUMENTS_BYTES = 1024

PROMPT = "prompt"
SYSTEM_PROMPT = "system_prompt"
OUTPUT_SCHEMA = "output_schema"
METADATA = "metadata"
STRUCTURED = "structured"
RESULT_TEXT = "result.txt"
#: Files (issue 13): the job's artifacts' key prefix (`documents[ARTIFACTS_PREFIX]` + the
#: artifact's `out/…` path is its object key), and the artifact list when it is too large for
#: the item (`artifacts` and `artifact_notes` as one JSON document).
ARTIFACTS_PREFIX = "artifacts/"
ARTIFACTS = "artifacts.json"
#: Documents of the request, dropped (item and object) once the job is terminal.
PROMPTS = (PROMPT, SYSTEM_PROMPT)
#: What a job view shows (the prompts are not echoed).
VIEWED = (OUTPUT_SCHEMA, METADATA, STRUCTURED, ARTIFACTS)


def _text(value: str) -> bytes:
    return value.encode()


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _inline(sizes: dict[str, int], budget: int = INLINE_DOCUMENTS_BYTES) -> set[str]:
    """The documents kept inline: smallest first, while the budget lasts."""
    kept: set[str] = set()
    used = 0
    for name, size in sorted(sizes.items(), key=lambda item: (item[1], item[0])):
        if used + size > budget:
            break
        kept.add(name)
        used += size
    return kept


class JobDocuments:
    """Places, loads and discards a job's documents. Without a store every document stays
    inline (a deployment with no bucket; tests)."""

    def __init__(self, store: DocumentStore | None, *, workers: int = 8) -> None:
        self._store = store
        self._workers = workers

    @property
    def store(self) -> DocumentStore | None:
        return self._store

    # ------------------------------------------------------------ write

    def place_request(self, job: Job) -> Job:
        """The job to create: its request documents over the budget moved to the store."""
        if self._store is None:
            return job
        bodies: dict[str, tuple[bytes, str]] = {}
        if job.prompt is not None:
            bodies[PROMPT] = (_text(job.prompt), "text/plain; charset=utf-8")
        if job.system_prompt is not None:
            bodies[SYSTEM_PROMPT] = (_text(job.system_prompt), "text/plain; charset=utf-8")
        if job.options.output_schema is not None:
            bodies[OUTPUT_SCHEMA] = (_json(job.options.output_schema), "application/json")
        if job.metadata:
            bodies[METADATA] = (_json(job.metadata), "application/json")
        kept = _inline({name: len(body) for name, (body, _) in bodies.items()})
        keys = {
            name: self._store.put(job.tenant_id, job.job_id, name, body, content_type)
            for name, (body, content_type) in bodies.items()
            if name not in kept
        }
        if not keys:
            return job
        options = job.options
        if OUTPUT_SCHEMA in keys:
            options = options.model_copy(update={"output_schema": None})
        return job.model_copy(
            update={
                "prompt": None if PROMPT in keys else job.prompt,
                "system_prompt": None if SYSTEM_PROMPT in keys else job.system_prompt,
                "options": options,
                "metadata": {} if METADATA in keys else job.metadata,
                "documents": {**job.documents, **keys},
            }
        )

    def place_result(
        self, job: Job, text: str | None, structured: Any | None, is_error: bool
    ) -> tuple[JobResult, dict[str, str]]:
        """The result to record, its documents over the budget moved to the store; and the
        job's document keys once the result is written (the prompts' keys dropped)."""
        documents = {k: v for k, v in job.documents.items() if k not in PROMPTS}
        result = JobResult(text=text, structured=structured, is_error=is_error)
        if self._store is None:
            return result, documents
        bodies: dict[str, tuple[bytes, str]] = {}
        if text:
            bodies[RESULT_TEXT] = (_text(text), "text/plain; charset=utf-8")
        if structured is not None:
            bodies[STRUCTURED] = (_json(structured), "application/json")
        kept = _inline({name: len(body) for name, (body, _) in bodies.items()})
        for name, (body, content_type) in bodies.items():
            if name in kept:
                continue
            key = self._store.put(job.tenant_id, job.job_id, name, body, content_type)
            if name == RESULT_TEXT:
                result.text, result.s3_key, result.text_bytes = None, key, len(body)
            else:
                result.structured = None
                documents[STRUCTURED] = key
        return result, documents

    def place_artifacts(
        self, job: Job, artifacts: list[Artifact], notes: list[str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The fields to record for a job's artifacts (inline when they fit the budget), and
        the documents to add (their list, when it does not)."""
        if not artifacts and not notes:
            return {}, {}
        listed = {
            "artifacts": [a.model_dump(mode="json") for a in artifacts],
            "artifact_notes": notes,
        }
        body = _json(listed)
        if self._store is None or len(body) <= INLINE_DOCUMENTS_BYTES:
            return {"artifacts": artifacts or None, "artifact_notes": notes or None}, {}
        key = self._store.put(job.tenant_id, job.job_id, ARTIFACTS, body, "application/json")
        return {}, {ARTIFACTS: key}

    # ------------------------------------------------------------ read

    def load(self, job: Job, names: Iterable[str], *, text_limit: int = INLINE_RESULT_BYTES) -> Job:
        """The job with the named documents (and, for `RESULT_TEXT`, a result text of at most
        `text_limit` bytes) read back from the store into their fields."""
        names = tuple(names)
        wanted = [n for n in names if n in job.documents]
        result = job.result
        text_key = (
            result.s3_key
            if RESULT_TEXT in names
            and result is not None
            and result.s3_key
            and result.text_bytes is not None
            and result.text_bytes <= text_limit
            else None
        )
        if self._store is None or (not wanted and text_key is None):
            return job
        keys = [job.documents[n] for n in wanted] + ([text_key] if text_key else [])
        bodies = dict(zip(keys, self._get_all(keys), strict=True))
        update: dict[str, Any] = {}
        for name in wanted:
            body = bodies[job.documents[name]]
            if name == PROMPT:
                update["prompt"] = body
            elif name == SYSTEM_PROMPT:
                update["system_prompt"] = body
            elif name == OUTPUT_SCHEMA:
                update["options"] = job.options.model_copy(
                    update={"output_schema": json.loads(body)}
                )
            elif name == METADATA:
                update["metadata"] = json.loads(body)
            elif name == STRUCTURED and result is not None:
                result = result.model_copy(update={"structured": json.loads(body)})
            elif name == ARTIFACTS:
                listed = json.loads(body)
                update["artifacts"] = [Artifact.model_validate(a) for a in listed["artifacts"]]
                update["artifact_notes"] = [str(n) for n in listed["artifact_notes"]]
        if text_key is not None and result is not None:
            result = result.model_copy(update={"text": bodies[text_key], "s3_key": None})
        update["result"] = result
        return job.model_copy(update=update)

    def load_many(self, jobs: Sequence[Job], names: Iterable[str]) -> list[Job]:
        """`load` for a page of jobs, the store's reads in parallel."""
        names = tuple(names)
        return self._map(lambda job: self.load(job, names), jobs)

    def _get_all(self, keys: list[str]) -> list[str]:
        assert self._store is not None
        return self._map(self._store.get, keys)

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(min(self._workers, len(items))) as pool:
            return list(pool.map(fn, items))

    # ------------------------------------------------------------ forget

    def discard_prompts(self, job: Job) -> None:
        """Delete the stored prompts of a job that has ended (best effort: the bucket's
        lifecycle rule removes what a failed delete leaves)."""
        keys = [job.documents[n] for n in PROMPTS if n in job.documents]
        if keys and self._store is not None:
            # A failed delete is not an error: the bucket's lifecycle rule is the backstop.
            with contextlib.suppress(Exception):
                self._store.delete(keys)
