"""A stateful fake of the part of the OpenAI REST API that vectorgate uses.

OpenAI cannot be reached from the test machines, so tests point the real `openai` SDK
(or the service under test) at this fake instead. It serves, over real HTTP on
127.0.0.1, the endpoints below `/v1`:

* Files: `POST /files` (multipart upload), `GET /files`, `GET|DELETE /files/{id}`,
  `GET /files/{id}/content`. Upload bodies are parsed as a stream and the file part is
  written straight to a spool directory on disk while its sha256 is computed, so a large
  upload never sits whole in memory. Both raw UTF-8 `filename="..."` and RFC 5987
  `filename*=UTF-8''...` parameters are understood; the name is stored exactly as sent.
* Vector stores: `POST /vector_stores`, `GET|DELETE /vector_stores/{id}`.
* Vector store files: `POST|GET /vector_stores/{vs}/files`,
  `GET|DELETE /vector_stores/{vs}/files/{file_id}` (DELETE detaches).
* File batches: `POST /vector_stores/{vs}/file_batches`, `GET .../file_batches/{id}`,
  `POST .../file_batches/{id}/cancel`, `GET .../file_batches/{id}/files`.

File options: a batch takes `file_ids` with optional top-level `attributes` and
`chunking_strategy` applied to every file, or `files: [{"file_id", "attributes"?,
"chunking_strategy"?}]` (then the top-level options are ignored, as OpenAI documents;
`file_ids` and `files` together are a 400). A single attach takes the same two options.
They are checked against OpenAI's documented limits by this module's own code (16
attributes, keys of at most 64 characters, strings of at most 512, numbers or booleans;
`auto`, or `static` with integer `max_chunk_size_tokens` 100-4096 and
`chunk_overlap_tokens` 0 to half of it) and a violation is OpenAI's 400. Vector-store
file objects show them: `attributes` (`{}` when none) and `chunking_strategy`, `auto`
resolved to OpenAI's static default 800/400.

Every request needs `Authorization: Bearer sk-...`; keys in `rejected_keys` (or not
starting with `sk-`) get OpenAI's 401 body, which only ever shows a hint of the key.
Each object belongs to the key that created it; any other key gets a 404.

Processing is driven by polling, not by time. A batch (and each of its files) stays
`in_progress` until it has been retrieved `polls_to_complete` times, then ends according
to `batch_mode` ("complete", "fail", "cancel" or "stuck" = never ends); files named by
`fail_files_named()` fail while the rest complete. A file attached on its own
(`POST /vector_stores/{vs}/files`) advances the same way on each of its own retrieves;
files attached through a batch advance with their batch, whose retrieve or a retrieve
of any of its files counts as one poll. Cancelling a batch makes it
`cancelling`; the next retrieve makes it `cancelled` and cancels its unfinished files.
Retrieves of batches and vector store files carry `openai-poll-after-ms: <poll_after_ms>`,
which the SDK's `poll` helpers use as their interval.

Faults: `inject(method, path_pattern, ...)` adds a rule. Rules are tried in order against
the method and the path without its `/v1` prefix (`re.fullmatch`), and the first match is
consumed (`times`, or forever with -1) before authentication is checked. `delay` sleeps
first; then `status` answers with an OpenAI-style error body (plus `Retry-After` when
given, never `x-should-retry`) without performing the action, and `drop` sends the start
of a response and cuts the connection, which the SDK reports as `APIConnectionError`.
A `status` or `drop` fault is applied only after the whole request body has been read,
so a client that retries an upload has to send the whole file again.
`upload_read_delay` sleeps that many seconds for every started MiB of an upload body.

Limits: a batch holds at most `max_files_per_batch` files (2000, OpenAI's), beyond which
OpenAI's 400 "array too long" (`code: array_above_max_length`) in the OpenAI dialect;
Llama Stack has no such limit. Rate limits are off (None) unless set, in either dialect:
`attach_limit_per_store_per_minute` counts the writes that attach files to one vector
store (a file batch is one write, however many files it holds, and so is a single
attach; OpenAI's is 300 writes per minute per store) and `uploads_per_key_per_minute`
the `POST /files` of one API key (OpenAI's is 1,000), both over a rolling window of
`rate_window_s` seconds (60; tests shorten it). Only admitted requests count. The
request over a limit performs nothing (a batch attaches none of its files; an upload's
body is read and thrown away) and gets OpenAI's 429 (`type: requests`, `code:
rate_limit_exceeded`, `param: null`; a Llama Stack `{"detail": ...}` body in that
dialect) with `retry-after` (whole seconds), `retry-after-ms` (when a slot frees),
`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
`x-ratelimit-reset-requests` (`1.5s`, `6m0s`: until the window is empty); a request
larger than the limit itself (a limit of 0) can never pass and also gets
`x-should-retry: false`. `attach_times(vs_id)` and `upload_times(key)` show the admitted
ones still inside the window.

Dialects: `dialect = "llama_stack"` answers as Llama Stack's OpenAI-compatible server
does where it differs from OpenAI: an unknown (or another key's) vector store, file or
batch is a 400 `{"error": {"message": "Vector_store 'vs_x' not found"}}` instead of a 404;
every other error body is FastAPI's `{"detail": "..."}`; file objects carry no `status`
or `status_details`; failed vector-store files have no `last_error`; uploaded filenames
are rewritten to ASCII (`résumé 日本語.pdf` becomes `r_sum_____.pdf`); no
`openai-poll-after-ms` header is sent; and a batch takes only `file_ids` with top-level
`attributes` and `chunking_strategy` (Llama Stack's pydantic request model: `files` is an
ignored extra field, so a body without `file_ids` is its 400 validation error
`{"detail": {"errors": [{"loc", "msg", "type"}]}}`), checks no attribute limits (it
sanitizes on output: keys over 64 characters dropped, 16 kept, strings cut to 512, numbers
shown as floats, lists joined into a string, other values dropped), checks `static` only
for `max_chunk_size_tokens` 100-4096 (missing fields default to 800/400), and shows `auto`
as `{"type": "auto"}`. The same tests run over both dialects.

Use it from tests with `with FakeOpenAI() as fake: ...` (uvicorn runs in a daemon thread
on an ephemeral port; see `base_url`), or standalone for demos:
`python -m vectorgate.testing.fake_openai --host 127.0.0.1 --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import copy
import hashlib
import json
import logging
import math
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypeVar
from urllib.parse import unquote

import uvicorn
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

__all__ = [
    "BatchMode",
    "BatchSnapshot",
    "Dialect",
    "FakeOpenAI",
    "StoredFile",
    "key_hint",
    "main",
]

logger = logging.getLogger(__name__)

BatchMode = Literal["complete", "fail", "cancel", "stuck"]
Dialect = Literal["openai", "llama_stack"]
FileStatus = Literal["in_progress", "completed", "failed", "cancelled"]
FileErrorCode = Literal["server_error", "unsupported_file", "invalid_file"]
Json = dict[str, Any]

_MIB = 1024 * 1024
_MAX_FIELD_BYTES = 64 * 1024
_KEY_SCOPE = "fake_openai.api_key"
_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_BATCH_END_STATUS: dict[BatchMode, str] = {
    "complete": "completed",
    "fail": "failed",
    "cancel": "cancelled",
}
_CHUNKING = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
}
_INCOMPLETE_RESPONSE_LOG = "ASGI callable returned without completing response."
# Llama Stack keeps only these characters of an uploaded file's name.
_LLAMA_STACK_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class StoredFile:
    """An uploaded file as the fake keeps it; `path` is its content in the spool dir."""

    id: str
    filename: str
    bytes: int
    sha256: str
    purpose: str
    content_type: str | None
    deleted: bool
    path: Path
    created_at: int


@dataclass(frozen=True)
class BatchSnapshot:
    """A copy of a file batch's state at the time it was read."""

    id: str
    vector_store_id: str
    file_ids: tuple[str, ...]
    status: str
    cancel_requested: bool


def key_hint(key: str) -> str:
    """Show a key the way OpenAI does in errors: never whole, e.g. `sk-...wxyz`."""
    return f"{key[:3]}...{key[-4:]}" if len(key) > 10 else "***"


# --------------------------------------------------------------------------- errors


class _ApiError(Exception):
    """An error answered with OpenAI's `{"error": {...}}` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body: Json = {
            "error": {"message": message, "type": type_, "param": param, "code": code}
        }
        # (kind, id) of a missing object, which the Llama Stack dialect words its own way.
        self.missing: tuple[str, str] | None = None
        # Llama Stack's own `detail` (its validation errors), when it differs from `message`.
        self.detail: object | None = None
        # Headers the error always carries (a rate limit's `retry-after` and the like).
        self.headers: dict[str, str] = {}

    def response(
        self, headers: dict[str, str] | None = None, dialect: Dialect = "openai"
    ) -> JSONResponse:
        headers = {**self.headers, **(headers or {})}
        if dialect == "llama_stack":
            if self.missing is not None:
                kind, obj_id = self.missing
                message = f"{_LLAMA_STACK_KINDS[kind]} '{obj_id}' not found"
                return JSONResponse({"error": {"message": message}}, 400, headers=headers)
            detail = self.message if self.detail is None else self.detail
            return JSONResponse({"detail": detail}, self.status, headers=headers)
        return JSONResponse(self.body, status_code=self.status, headers=headers)


class _ClientGone(Exception):
    """The client disconnected before sending its whole request body."""


_LLAMA_STACK_KINDS = {
    "vector store": "Vector_store",
    "File object": "File",
    "vector store file": "File",
    "vector store file batch": "File_batch",
}


def _not_found(kind: str, obj_id: str) -> _ApiError:
    error = _ApiError(404, f"No such {kind}: {obj_id}", param="id")
    error.missing = (kind, obj_id)
    return error


def _bad_request(message: str, param: str | None = None) -> _ApiError:
    return _ApiError(400, message, param=param)


def _fault_error(status: int) -> _ApiError:
    if status == 429:
        return _ApiError(
            429,
            "Rate limit reached (injected fault).",
            type_="requests",
            code="rate_limit_exceeded",
        )
    if status >= 500:
        return _ApiError(
            status,
            "The server had an error while processing your request (injected fault).",
            type_="server_error",
        )
    return _ApiError(status, f"Injected fault with status {status}.")


def _auth_error(key: str | None, rejected: set[str]) -> _ApiError | None:
    if key is None:
        return _ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    if key.startswith("sk-") and key not in rejected:
        return None
    return _ApiError(401, f"Incorrect API key provided: {key_hint(key)}.", code="invalid_api_key")


# --------------------------------------------------------------------------- rate limits


@dataclass(frozen=True)
class _Rate:
    """A limit of `limit` events per rolling `window` seconds (None: no limit)."""

    limit: int | None
    window: float


def _duration(seconds: float) -> str:
    """A duration as OpenAI's `x-ratelimit-reset-*` headers write it (Go's style):
    `120ms`, `1s`, `17.28s`, `6m0s`, `1h0m0s`."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    ms = math.ceil(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _rate_limited(what: str, rate: _Rate, times: list[float], n: int, now: float) -> _ApiError:
    """OpenAI's 429 for `n` more events of `what` when `times` (sorted, all inside the
    window) already hold too many.

    OpenAI's rate-limit guide (platform.openai.com/docs/guides/rate-limits) documents the
    body's `code: rate_limit_exceeded`, type `requests` for a request-count limit, and the
    headers `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
    `x-ratelimit-reset-requests` (a duration such as `1s` or `6m0s`: the time until the
    limit is back to its initial state). The SDK waits for `retry-after-ms`, else
    `retry-after` (seconds), when either is at most 2 minutes
    (`BaseClient._parse_retry_after_header`, `_calculate_retry_timeout`), and obeys
    `x-should-retry: false` before retrying any 429 (`_should_retry`).
    """
    assert rate.limit is not None
    used = len(times)
    reset = (times[-1] if times else now) + rate.window - now
    headers = {
        "x-ratelimit-limit-requests": str(rate.limit),
        "x-ratelimit-remaining-requests": str(max(0, rate.limit - used)),
        "x-ratelimit-reset-requests": _duration(reset),
    }
    if n > rate.limit:
        # No wait makes it fit: say so, so that a client does not retry it as it is.
        wait = rate.window
        headers["x-should-retry"] = "false"
        message = (
            f"Request too large for {what}: Limit {rate.limit}, Requested {n}. "
            "Send fewer at a time."
        )
    else:
        # The oldest events leave the window first; enough of them must have left.
        wait = times[used + n - rate.limit - 1] + rate.window - now
        message = (
            f"Rate limit reached for {what}: Limit {rate.limit}, Used {used}, Requested {n}. "
            f"Please try again in {_duration(wait)}. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        )
    headers["retry-after"] = str(max(1, math.ceil(wait)))
    headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    error = _ApiError(429, message, type_="requests", code="rate_limit_exceeded")
    error.headers = headers
    return error


def _admit(times: list[float], n: int, rate: _Rate, what: str) -> None:
    """Count `n` events now in `times`, or raise the 429 if that would exceed the limit.

    `times` holds the monotonic times of admitted events, oldest first; those that have
    left the rolling window are forgotten here. A refused request counts for nothing.
    """
    now = time.monotonic()
    del times[: bisect.bisect_right(times, now - rate.window)]
    if rate.limit is not None and len(times) + n > rate.limit:
        raise _rate_limited(what, rate, times, n, now)
    times.extend([now] * n)


# --------------------------------------------------------------------------- internal records


@dataclass
class _VsFile:
    file_id: str
    vector_store_id: str
    filename: str
    bytes: int
    created_at: int
    batch_id: str | None = None
    status: FileStatus = "in_progress"
    last_error: dict[str, str] | None = None
    polls: int = 0
    attributes: Json = field(default_factory=dict)
    chunking_strategy: Json = field(default_factory=lambda: copy.deepcopy(_CHUNKING))

    def finish(self, mode: BatchMode, fail_rules: dict[str, dict[str, str]]) -> None:
        """End processing of an in-progress file according to the batch mode."""
        if self.status != "in_progress" or mode == "stuck":
            return
        if mode == "fail":
            self.status = "failed"
            self.last_error = {"code": "server_error", "message": "The file could not be parsed."}
        elif mode == "cancel":
            self.status = "cancelled"
        elif self.filename in fail_rules:
            self.status = "failed"
            self.last_error = dict(fail_rules[self.filename])
        else:
            self.status = "completed"

    def to_json(self) -> Json:
        return {
            "id": self.file_id,
            "object": "vector_store.file",
            "created_at": self.created_at,
            "usage_bytes": self.bytes if self.status == "completed" else 0,
            "vector_store_id": self.vector_store_id,
            "status": self.status,
            "last_error": self.last_error,
            "attributes": copy.deepcopy(self.attributes),
            "chunking_strategy": copy.deepcopy(self.chunking_strategy),
        }


@dataclass
class _Store:
    id: str
    name: str
    created_at: int
    metadata: dict[str, str]
    files: dict[str, _VsFile] = field(default_factory=dict)

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "object": "vector_store",
            "name": self.name,
            "created_at": self.created_at,
            "last_active_at": max([self.created_at, *(f.created_at for f in self.files.values())]),
            "status": "completed",
            "usage_bytes": sum(f.bytes for f in self.files.values() if f.status == "completed"),
            "file_counts": _counts(self.files.values()),
            "metadata": dict(self.metadata),
            "expires_after": None,
            "expires_at": None,
        }


@dataclass
class _Batch:
    id: str
    vector_store_id: str
    created_at: int
    files: list[_VsFile]
    status: str = "in_progress"
    cancel_requested: bool = False
    polls: int = 0

    def advance(
        self, mode: BatchMode, polls_to_complete: int, fail_rules: dict[str, dict[str, str]]
    ) -> None:
        """One retrieve's worth of processing."""
        if self.status == "cancelling":
            for f in self.files:
                if f.status == "in_progress":
                    f.status = "cancelled"
            self.status = "cancelled"
            return
        if self.status != "in_progress":
            return
        self.polls += 1
        if mode == "stuck" or self.polls < polls_to_complete:
            return
        for f in self.files:
            f.finish(mode, fail_rules)
        self.status = _BATCH_END_STATUS[mode]

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "object": "vector_store.files_batch",
            "created_at": self.created_at,
            "status": self.status,
            "vector_store_id": self.vector_store_id,
            "file_counts": _counts(self.files),
        }

    def snapshot(self) -> BatchSnapshot:
        return BatchSnapshot(
            id=self.id,
            vector_store_id=self.vector_store_id,
            file_ids=tuple(f.file_id for f in self.files),
            status=self.status,
            cancel_requested=self.cancel_requested,
        )


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int | None
    retry_after: float | None
    delay: float
    drop: bool
    times: int
    body: Json | None
    answer_delay: float = 0.0

    def response(self, dialect: Dialect) -> JSONResponse:
        assert self.status is not None
        headers = {} if self.retry_after is None else {"retry-after": f"{self.retry_after:g}"}
        if self.body is not None:
            return JSONResponse(self.body, status_code=self.status, headers=headers)
        return _fault_error(self.status).response(headers, dialect)


def _counts(files: Iterable[_VsFile]) -> dict[str, int]:
    counts = dict.fromkeys(("in_progress", "completed", "failed", "cancelled"), 0)
    for f in files:
        counts[f.status] += 1
    counts["total"] = sum(counts.values())
    return counts


def _file_json(f: StoredFile) -> Json:
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _page(items: list[Json], query: dict[str, str], default_limit: int) -> Json:
    """OpenAI's cursor list envelope, honouring `order`, `after` and `limit`."""
    if query.get("order", "desc") == "desc":
        items = items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = max(1, int(query.get("limit", default_limit)))
    except ValueError as exc:
        raise _bad_request("Invalid 'limit': expected an integer.", "limit") from exc
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


# --------------------------------------------------------------------------- state

_T = TypeVar("_T")


class _State:
    """Every object the fake holds, guarded by one lock.

    Handlers run on the server thread, tests read from theirs; every method takes the
    lock and returns JSON-ready dicts or immutable snapshots, never live records.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, StoredFile] = {}
        self.stores: dict[str, _Store] = {}
        self.batches: dict[str, _Batch] = {}
        self.owners: dict[str, str] = {}
        self.faults: list[_Fault] = []
        self.fail_rules: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        # Monotonic times of the attaches to each store and the uploads of each key
        # inside the rate window (kept whether or not a limit is set).
        self.attach_times: dict[str, list[float]] = {}
        self.upload_times: dict[str, list[float]] = {}

    def clear(self) -> None:
        """Forget everything and delete the spooled content of every upload."""
        with self.lock:
            for stored in self.files.values():
                stored.path.unlink(missing_ok=True)
            for table in (self.files, self.stores, self.batches, self.owners, self.fail_rules):
                table.clear()
            self.attach_times.clear()
            self.upload_times.clear()
            self.faults.clear()
            self.requests.clear()

    # -- requests and faults

    def record(self, method: str, path: str, hint: str | None) -> None:
        with self.lock:
            self.requests.append((method, path, hint))

    def add_fault(self, fault: _Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method in (method, "*") and fault.pattern.fullmatch(path):
                    if fault.times > 0:
                        fault.times -= 1
                        if fault.times == 0:
                            self.faults.remove(fault)
                    return fault
            return None

    # -- lookups (call with the lock held)

    def _owned(self, table: dict[str, _T], owner: str, obj_id: str, kind: str) -> _T:
        obj = table.get(obj_id)
        if obj is None or self.owners.get(obj_id) != owner:
            raise _not_found(kind, obj_id)
        return obj

    def _file(self, owner: str, file_id: str) -> StoredFile:
        stored = self._owned(self.files, owner, file_id, "File object")
        if stored.deleted:
            raise _not_found("File object", file_id)
        return stored

    def _store(self, owner: str, vs_id: str) -> _Store:
        return self._owned(self.stores, owner, vs_id, "vector store")

    def _batch(self, owner: str, vs_id: str, batch_id: str) -> _Batch:
        self._store(owner, vs_id)
        batch = self._owned(self.batches, owner, batch_id, "vector store file batch")
        if batch.vector_store_id != vs_id:
            raise _not_found("vector store file batch", batch_id)
        return batch

    def _vs_file(self, owner: str, vs_id: str, file_id: str) -> _VsFile:
        vs_file = self._store(owner, vs_id).files.get(file_id)
        if vs_file is None:
            raise _not_found("vector store file", file_id)
        return vs_file

    def _attach(self, owner: str, store: _Store, entry: _Entry, batch_id: str | None) -> _VsFile:
        file_id, attributes, chunking_strategy = entry
        stored = self._file(owner, file_id)
        vs_file = _VsFile(
            file_id=file_id,
            vector_store_id=store.id,
            filename=stored.filename,
            bytes=stored.bytes,
            created_at=int(time.time()),
            batch_id=batch_id,
            attributes=copy.deepcopy(attributes),
            chunking_strategy=copy.deepcopy(chunking_strategy),
        )
        store.files[file_id] = vs_file
        return vs_file

    # -- files

    def admit_upload(self, owner: str, rate: _Rate) -> None:
        """Count one `POST /files` of `owner`, or raise the 429 of its rate limit."""
        with self.lock:
            times = self.upload_times.setdefault(owner, [])
            _admit(
                times, 1, rate, f"file uploads per {rate.window:g}s of API key {key_hint(owner)}"
            )

    def add_file(self, owner: str, stored: StoredFile) -> Json:
        with self.lock:
            self.files[stored.id] = stored
            self.owners[stored.id] = owner
            return _file_json(stored)

    def get_file(self, owner: str, file_id: str) -> Json:
        with self.lock:
            return _file_json(self._file(owner, file_id))

    def file_path(self, owner: str, file_id: str) -> Path:
        with self.lock:
            return self._file(owner, file_id).path

    def list_files(self, owner: str, purpose: str | None) -> list[Json]:
        with self.lock:
            return [
                _file_json(f)
                for f in self.files.values()
                if not f.deleted and self.owners[f.id] == owner and purpose in (None, f.purpose)
            ]

    def delete_file(self, owner: str, file_id: str) -> Json:
        with self.lock:
            stored = self._file(owner, file_id)
            self.files[file_id] = replace(stored, deleted=True)
            for store in self.stores.values():
                store.files.pop(file_id, None)
            return {"id": file_id, "object": "file", "deleted": True}

    # -- vector stores

    def create_store(self, owner: str, name: str, metadata: dict[str, str]) -> Json:
        store = _Store(id=_new_id("vs_"), name=name, created_at=int(time.time()), metadata=metadata)
        with self.lock:
            self.stores[store.id] = store
            self.owners[store.id] = owner
            return store.to_json()

    def get_store(self, owner: str, vs_id: str) -> Json:
        with self.lock:
            return self._store(owner, vs_id).to_json()

    def delete_store(self, owner: str, vs_id: str) -> Json:
        with self.lock:
            self._store(owner, vs_id)
            del self.stores[vs_id]
            return {"id": vs_id, "object": "vector_store.deleted", "deleted": True}

    # -- vector store files

    def _admit_attaches(self, store: _Store, n: int, rate: _Rate) -> None:
        times = self.attach_times.setdefault(store.id, [])
        _admit(times, n, rate, f"writes per {rate.window:g}s to vector store {store.id}")

    def attach_file(self, owner: str, vs_id: str, entry: _Entry, rate: _Rate) -> Json:
        with self.lock:
            store = self._store(owner, vs_id)
            self._file(owner, entry[0])
            self._admit_attaches(store, 1, rate)
            return self._attach(owner, store, entry, None).to_json()

    def get_vs_file(
        self, owner: str, vs_id: str, file_id: str, mode: BatchMode, polls_to_complete: int
    ) -> Json:
        with self.lock:
            vs_file = self._vs_file(owner, vs_id, file_id)
            if vs_file.batch_id is not None:
                # Looking at one file of a batch is progress for the whole batch.
                self.batches[vs_file.batch_id].advance(mode, polls_to_complete, self.fail_rules)
            elif vs_file.status == "in_progress":
                vs_file.polls += 1
                if vs_file.polls >= polls_to_complete:
                    vs_file.finish(mode, self.fail_rules)
            return vs_file.to_json()

    def detach_file(self, owner: str, vs_id: str, file_id: str) -> Json:
        with self.lock:
            self._vs_file(owner, vs_id, file_id)
            del self.stores[vs_id].files[file_id]
            return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    def list_vs_files(self, owner: str, vs_id: str, status: str | None) -> list[Json]:
        with self.lock:
            files = self._store(owner, vs_id).files.values()
            return [f.to_json() for f in files if status in (None, f.status)]

    # -- batches

    def create_batch(self, owner: str, vs_id: str, entries: list[_Entry], rate: _Rate) -> Json:
        with self.lock:
            store = self._store(owner, vs_id)
            for file_id, _, _ in entries:
                self._file(owner, file_id)  # all-or-nothing: check before attaching any
            self._admit_attaches(store, 1, rate)  # one write, however many files
            batch_id = _new_id("vsfb_")
            files = [self._attach(owner, store, entry, batch_id) for entry in entries]
            batch = _Batch(
                id=batch_id, vector_store_id=vs_id, created_at=int(time.time()), files=files
            )
            self.batches[batch_id] = batch
            self.owners[batch_id] = owner
            return batch.to_json()

    def get_batch(
        self, owner: str, vs_id: str, batch_id: str, mode: BatchMode, polls_to_complete: int
    ) -> Json:
        with self.lock:
            batch = self._batch(owner, vs_id, batch_id)
            batch.advance(mode, polls_to_complete, self.fail_rules)
            return batch.to_json()

    def cancel_batch(self, owner: str, vs_id: str, batch_id: str) -> Json:
        with self.lock:
            batch = self._batch(owner, vs_id, batch_id)
            if batch.status == "in_progress":
                batch.status = "cancelling"
                batch.cancel_requested = True
            return batch.to_json()

    def list_batch_files(
        self, owner: str, vs_id: str, batch_id: str, status: str | None
    ) -> list[Json]:
        with self.lock:
            files = self._batch(owner, vs_id, batch_id).files
            return [f.to_json() for f in files if status in (None, f.status)]

    # -- inspection for tests

    def files_for(self, owner: str | None, include_deleted: bool) -> list[StoredFile]:
        with self.lock:
            return [
                f
                for f in self.files.values()
                if (include_deleted or not f.deleted) and owner in (None, self.owners[f.id])
            ]

    def stored_file(self, file_id: str) -> StoredFile:
        with self.lock:
            return self.files[file_id]

    def batch_snapshots(self) -> list[BatchSnapshot]:
        with self.lock:
            return [batch.snapshot() for batch in self.batches.values()]

    def vs_file_json(self, vs_id: str, file_id: str) -> Json:
        with self.lock:
            store = self.stores.get(vs_id)
            vs_file = None if store is None else store.files.get(file_id)
            if vs_file is None:
                raise KeyError(f"no file {file_id} in vector store {vs_id}")
            return vs_file.to_json()

    def window_times(self, table: dict[str, list[float]], name: str, window: float) -> list[float]:
        with self.lock:
            cutoff = time.monotonic() - window
            return [t for t in table.get(name, []) if t > cutoff]

    def store_file_ids(self, vs_id: str) -> list[str]:
        with self.lock:
            store = self.stores.get(vs_id)
            return [] if store is None else list(store.files)


# --------------------------------------------------------------------------- request bodies


async def _iter_body(receive: Receive, delay_per_mib: float = 0.0) -> AsyncIterator[bytes]:
    """Yield the request body as it arrives, sleeping `delay_per_mib` per started MiB."""
    received = 0
    delayed_mib = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        if chunk:
            received += len(chunk)
            while delay_per_mib > 0 and received > delayed_mib * _MIB:
                delayed_mib += 1
                await asyncio.sleep(delay_per_mib)
            yield chunk
        if not message.get("more_body", False):
            return


async def _discard_body(receive: Receive) -> None:
    try:
        async for _chunk in _iter_body(receive):
            pass
    except _ClientGone:
        logger.debug("client went away while its refused request was read")


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `type; k=v; k2="v 2"` into the lower-cased type and its parameters."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in re.finditer(r';?\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', rest):
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return head.strip().lower(), params


def _disposition_filename(params: dict[str, str]) -> str | None:
    """The part's filename, preferring RFC 5987 `filename*=UTF-8''...` over `filename`."""
    extended = params.get("filename*")
    if extended is not None and extended.count("'") >= 2:
        charset, _, rest = extended.partition("'")
        try:
            return unquote(rest.partition("'")[2], encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    return params.get("filename")


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _UploadSink:
    """Consumes a multipart body: the first `file` part goes to disk, other fields to memory."""

    def __init__(self, boundary: str, path: Path) -> None:
        self.path = path
        self.fields: dict[str, str] = {}
        self.has_file = False
        self.filename = ""
        self.content_type: str | None = None
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.ended = False
        self._headers: dict[str, str] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._field_name = ""
        self._field_value = bytearray()
        self._out: IO[bytes] | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def finish(self) -> None:
        self._parser.finalize()
        if not self.ended:
            raise _bad_request("The multipart body ended before its closing boundary.")

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
        self.path.unlink(missing_ok=True)

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._field_value = bytearray()

    def _on_header_end(self) -> None:
        name = bytes(self._header_name).decode("latin-1").strip().lower()
        self._headers[name] = _decode_header(bytes(self._header_value)).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, params = _header_params(self._headers.get("content-disposition", ""))
        self._field_name = params.get("name", "")
        filename = _disposition_filename(params)
        if self._field_name == "file" and filename is not None and not self.has_file:
            self.has_file = True
            self.filename = filename
            self.content_type = self._headers.get("content-type")
            self._out = self.path.open("wb")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            chunk = data[start:end]
            self._out.write(chunk)
            self.sha256.update(chunk)
            self.size += len(chunk)
            return
        self._field_value.extend(data[start:end])
        if len(self._field_value) > _MAX_FIELD_BYTES:
            raise _bad_request(f"Field {self._field_name!r} is too large.", self._field_name)

    def _on_part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._field_name:
            self.fields[self._field_name] = _decode_header(bytes(self._field_value))

    def _on_end(self) -> None:
        self.ended = True


def _upload_problem(has_file: bool, purpose: str) -> _ApiError | None:
    if not has_file:
        return _bad_request("Missing required parameter: 'file'.", "file")
    if not purpose:
        return _bad_request("Missing required parameter: 'purpose'.", "purpose")
    if purpose not in _PURPOSES:
        return _bad_request(f"'{purpose}' is not one of {sorted(_PURPOSES)} - 'purpose'", "purpose")
    return None


async def _json_body(request: Request) -> Json:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _bad_request("We could not parse the JSON body of your request.") from exc
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object.")
    return body


# --------------------------------------------------------------------------- file options

# (file_id, attributes as stored, chunking strategy as shown) of a file to attach.
_Entry = tuple[str, Json, Json]
_ENTRY_KEYS = frozenset({"file_id", "attributes", "chunking_strategy"})


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _unknown_keys(value: Json, allowed: Iterable[str], param: str) -> None:
    for key in value:
        if key not in allowed:
            raise _bad_request(f"Unknown parameter: '{param}.{key}'.", f"{param}.{key}")


def _openai_attributes(value: object, param: str) -> Json:
    """OpenAI's documented limits: 16 pairs, keys of at most 64 characters, values
    strings of at most 512 characters, booleans or numbers. `null` is none."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad_request(
            f"Invalid type for '{param}': expected an object, but got {_json_type(value)} instead.",
            param,
        )
    if len(value) > 16:
        raise _bad_request(
            f"Invalid '{param}': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(value)} properties instead.",
            param,
        )
    for key, item in value.items():
        if len(key) > 64:
            raise _bad_request(
                f"Invalid '{param}': property name too long. Expected a name with maximum "
                f"length 64, but got a name with length {len(key)} instead.",
                param,
            )
        where = f"{param}.{key}"
        if isinstance(item, str):
            if len(item) > 512:
                raise _bad_request(
                    f"Invalid '{where}': string too long. Expected a string with maximum "
                    f"length 512, but got a string with length {len(item)} instead.",
                    where,
                )
        elif isinstance(item, int | float) and not isinstance(item, bool):
            try:
                finite = math.isfinite(item)
            except OverflowError:
                finite = False
            if not finite:
                raise _bad_request(f"Invalid '{where}': expected a finite number.", where)
        elif not isinstance(item, bool):
            raise _bad_request(
                f"Invalid type for '{where}': expected one of a string, a number or a "
                f"boolean, but got {_json_type(item)} instead.",
                where,
            )
    return dict(value)


def _openai_tokens(static: Json, name: str, param: str) -> int:
    where = f"{param}.static.{name}"
    if name not in static:
        raise _bad_request(f"Missing required parameter: '{where}'.", where)
    value = static[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_request(
            f"Invalid type for '{where}': expected an integer, but got {_json_type(value)} "
            "instead.",
            where,
        )
    return value


def _openai_chunking(value: object, param: str) -> Json:
    """`auto` (shown as the static default it resolves to) or `static` with integer
    `max_chunk_size_tokens` 100-4096 and `chunk_overlap_tokens` 0 to half of it."""
    if value is None:
        return copy.deepcopy(_CHUNKING)
    if not isinstance(value, dict):
        raise _bad_request(
            f"Invalid type for '{param}': expected an object, but got {_json_type(value)} instead.",
            param,
        )
    kind = value.get("type")
    if kind == "auto":
        _unknown_keys(value, ("type",), param)
        return copy.deepcopy(_CHUNKING)
    if kind != "static":
        raise _bad_request(
            f"Invalid value: {kind!r}. Supported values are: 'auto' and 'static'.",
            f"{param}.type",
        )
    _unknown_keys(value, ("type", "static"), param)
    static = value.get("static")
    if not isinstance(static, dict):
        raise _bad_request(f"Missing required parameter: '{param}.static'.", f"{param}.static")
    _unknown_keys(static, ("max_chunk_size_tokens", "chunk_overlap_tokens"), f"{param}.static")
    size = _openai_tokens(static, "max_chunk_size_tokens", param)
    overlap = _openai_tokens(static, "chunk_overlap_tokens", param)
    if not 100 <= size <= 4096:
        raise _bad_request(
            f"Invalid '{param}.static.max_chunk_size_tokens': expected a value between 100 "
            f"and 4096, but got {size} instead.",
            f"{param}.static.max_chunk_size_tokens",
        )
    if overlap < 0 or 2 * overlap > size:
        raise _bad_request(
            f"Invalid '{param}.static.chunk_overlap_tokens': it must be at least 0 and must "
            "not exceed half of max_chunk_size_tokens.",
            f"{param}.static.chunk_overlap_tokens",
        )
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


def _openai_batch_entries(body: Json, max_files: int) -> list[_Entry]:
    """`file_ids` with top-level options for all, or `files` with options of their own
    (top-level options then ignored); never both; at most `max_files` of them."""
    ids, files = body.get("file_ids"), body.get("files")
    if ids is not None and files is not None:
        raise _bad_request(
            "Invalid request: 'file_ids' and 'files' are mutually exclusive.", "files"
        )
    if files is not None:
        if not isinstance(files, list) or not files:
            raise _bad_request("Invalid 'files': expected a non-empty array.", "files")
        entries: list[_Entry] = []
        for i, entry in enumerate(files):
            where = f"files[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("file_id"), str):
                raise _bad_request(
                    f"Missing required parameter: '{where}.file_id'.", f"{where}.file_id"
                )
            _unknown_keys(entry, _ENTRY_KEYS, where)
            entries.append(
                (
                    entry["file_id"],
                    _openai_attributes(entry.get("attributes"), f"{where}.attributes"),
                    _openai_chunking(entry.get("chunking_strategy"), f"{where}.chunking_strategy"),
                )
            )
    else:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _bad_request("Missing required parameter: 'file_ids'.", "file_ids")
        attributes = _openai_attributes(body.get("attributes"), "attributes")
        chunking = _openai_chunking(body.get("chunking_strategy"), "chunking_strategy")
        entries = [(file_id, attributes, chunking) for file_id in ids]
    if len(entries) > max_files:
        # OpenAI's words and code for any array over its maximum length.
        param = "files" if files is not None else "file_ids"
        raise _ApiError(
            400,
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{max_files}, but got an array with length {len(entries)} instead.",
            param=param,
            code="array_above_max_length",
        )
    return entries


def _llama_invalid(loc: list[str], msg: str, type_: str) -> _ApiError:
    """Llama Stack's answer to a request its pydantic model refuses."""
    error = _bad_request(msg)
    error.detail = {"errors": [{"loc": loc, "msg": msg, "type": type_}]}
    return error


def _llama_tokens(static: Json, name: str, default: int, loc: list[str]) -> int:
    value = static.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # pydantic's lax mode takes a float without a fraction
    if isinstance(value, bool) or not isinstance(value, int):
        raise _llama_invalid([*loc, name], "Input should be a valid integer", "int_type")
    return value


def _llama_chunking(value: object, loc: list[str]) -> Json:
    """Llama Stack's `VectorStoreChunkingStrategy`: a union tagged by `type`; `static`
    checks `max_chunk_size_tokens` 100-4096 only, both fields default 800/400."""
    if value is None:
        return {"type": "auto"}
    if not isinstance(value, dict):
        raise _llama_invalid(loc, "Input should be a valid dictionary", "model_attributes_type")
    kind = value.get("type")
    if kind == "auto":
        return {"type": "auto"}
    if kind != "static":
        raise _llama_invalid(
            loc,
            "Input tag does not match any of the expected tags: 'auto', 'static'",
            "union_tag_invalid",
        )
    static = value.get("static")
    static_loc = [*loc, "static", "static"]
    if not isinstance(static, dict):
        raise _llama_invalid(static_loc, "Field required", "missing")
    size = _llama_tokens(static, "max_chunk_size_tokens", 800, static_loc)
    overlap = _llama_tokens(static, "chunk_overlap_tokens", 400, static_loc)
    if not 100 <= size <= 4096:
        raise _llama_invalid(
            [*static_loc, "max_chunk_size_tokens"],
            "Input should be between 100 and 4096",
            "less_than_equal" if size > 4096 else "greater_than_equal",
        )
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


def _llama_attributes(value: object, loc: list[str]) -> Json:
    """Any object (Llama Stack checks nothing more on input; it sanitizes on output)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _llama_invalid(loc, "Input should be a valid dictionary", "dict_type")
    return dict(value)


def _llama_batch_entries(body: Json) -> list[_Entry]:
    """Llama Stack's batch request: `file_ids` required, `files` an ignored extra field."""
    ids = body.get("file_ids")
    if ids is None:
        raise _llama_invalid(["body", "file_ids"], "Field required", "missing")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise _llama_invalid(["body", "file_ids"], "Input should be a valid list", "list_type")
    if not ids:
        raise _bad_request("Missing required parameter: 'file_ids'.", "file_ids")
    attributes = _llama_attributes(body.get("attributes"), ["body", "attributes"])
    chunking = _llama_chunking(body.get("chunking_strategy"), ["body", "chunking_strategy"])
    return [(file_id, attributes, chunking) for file_id in ids]


def _llama_shown_attributes(attributes: Json) -> Json:
    """What Llama Stack's vector-store file object makes of stored attributes."""
    shown: Json = {}
    for key, value in attributes.items():
        if len(shown) >= 16:
            break
        if len(key) > 64:
            continue
        if isinstance(value, bool):
            shown[key] = value
        elif isinstance(value, int | float):
            shown[key] = float(value)
        elif isinstance(value, str):
            shown[key] = value[:512]
        elif isinstance(value, list):
            shown[key] = ", ".join(str(item) for item in value)[:512]
    return shown


def _attach_entry(body: Json, dialect: Dialect) -> _Entry:
    """The file and options of a single attach (`POST /vector_stores/{vs}/files`)."""
    file_id = body.get("file_id")
    if not isinstance(file_id, str):
        raise _bad_request("Missing required parameter: 'file_id'.", "file_id")
    if dialect == "llama_stack":
        return (
            file_id,
            _llama_attributes(body.get("attributes"), ["body", "attributes"]),
            _llama_chunking(body.get("chunking_strategy"), ["body", "chunking_strategy"]),
        )
    return (
        file_id,
        _openai_attributes(body.get("attributes"), "attributes"),
        _openai_chunking(body.get("chunking_strategy"), "chunking_strategy"),
    )


def _vs_file_view(file: Json, dialect: Dialect) -> Json:
    """A vector-store file as the dialect shows it."""
    if dialect == "llama_stack":
        return {
            **file,
            "last_error": None,
            "attributes": _llama_shown_attributes(file["attributes"]),
        }
    return file


def _status_filter(request: Request) -> str | None:
    status = request.query_params.get("filter")
    if status not in (None, "in_progress", "completed", "failed", "cancelled"):
        raise _bad_request(f"Invalid 'filter': {status!r}.", "filter")
    return status


# --------------------------------------------------------------------------- HTTP


def _key(request: Request) -> str:
    key: str = request.scope[_KEY_SCOPE]
    return key


def _bearer(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    value = dict(headers).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class _DropLogFilter(logging.Filter):
    """Hides uvicorn's error line for each connection the fake cut on purpose."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._pending = 0

    def expect(self) -> None:
        with self._lock:
            self._pending += 1

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != _INCOMPLETE_RESPONSE_LOG:
            return True
        with self._lock:
            if self._pending == 0:
                return True
            self._pending -= 1
            return False


class _Api:
    """The route handlers; each parses its request, calls `_State`, and renders JSON."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.state = fake._state

    def routes(self) -> list[Route]:
        vs = "/v1/vector_stores/{vs_id}"
        batch = vs + "/file_batches/{batch_id}"
        return [
            Route("/v1/files", self.create_file, methods=["POST"]),
            Route("/v1/files", self.list_files, methods=["GET"]),
            Route("/v1/files/{file_id}", self.get_file, methods=["GET"]),
            Route("/v1/files/{file_id}", self.delete_file, methods=["DELETE"]),
            Route("/v1/files/{file_id}/content", self.file_content, methods=["GET"]),
            Route("/v1/vector_stores", self.create_store, methods=["POST"]),
            Route(vs, self.get_store, methods=["GET"]),
            Route(vs, self.delete_store, methods=["DELETE"]),
            Route(vs + "/files", self.attach_file, methods=["POST"]),
            Route(vs + "/files", self.list_vs_files, methods=["GET"]),
            Route(vs + "/files/{file_id}", self.get_vs_file, methods=["GET"]),
            Route(vs + "/files/{file_id}", self.detach_file, methods=["DELETE"]),
            Route(vs + "/file_batches", self.create_batch, methods=["POST"]),
            Route(batch, self.get_batch, methods=["GET"]),
            Route(batch + "/cancel", self.cancel_batch, methods=["POST"]),
            Route(batch + "/files", self.list_batch_files, methods=["GET"]),
        ]

    def _poll_headers(self) -> dict[str, str]:
        if self.fake.dialect == "llama_stack":
            return {}
        return {"openai-poll-after-ms": str(self.fake.poll_after_ms)}

    def _file_out(self, file: Json) -> Json:
        """A file object as the dialect shows it."""
        if self.fake.dialect == "llama_stack":
            file = {k: v for k, v in file.items() if k not in ("status", "status_details")}
        return file

    def _vs_files_out(self, files: list[Json]) -> list[Json]:
        """Vector-store files as the dialect shows them."""
        return [_vs_file_view(f, self.fake.dialect) for f in files]

    # -- files

    async def create_file(self, request: Request) -> Response:
        try:
            self.state.admit_upload(_key(request), self.fake._upload_rate())
        except _ApiError:
            # Read the body first, as OpenAI's front does, so the client sees the 429.
            await _discard_body(request.receive)
            raise
        ctype, params = _header_params(request.headers.get("content-type", ""))
        if ctype != "multipart/form-data" or not params.get("boundary"):
            raise _bad_request("Expected a multipart/form-data body with a boundary.")
        sink = _UploadSink(params["boundary"], self.fake.spool_dir / _new_id("upload-"))
        try:
            async for chunk in _iter_body(request.receive, self.fake.upload_read_delay):
                sink.write(chunk)
            sink.finish()
        except (FormParserError, _ClientGone) as exc:
            sink.discard()
            raise _bad_request(f"Could not parse the multipart body: {exc}") from exc
        except BaseException:
            sink.discard()
            raise
        purpose = sink.fields.get("purpose", "")
        problem = _upload_problem(sink.has_file, purpose)
        if problem is not None:
            sink.discard()
            raise problem
        file_id = _new_id("file-")
        filename = sink.filename
        if self.fake.dialect == "llama_stack":
            filename = _LLAMA_STACK_UNSAFE_NAME.sub("_", filename)
        stored = StoredFile(
            id=file_id,
            filename=filename,
            bytes=sink.size,
            sha256=sink.sha256.hexdigest(),
            purpose=purpose,
            content_type=sink.content_type,
            deleted=False,
            path=sink.path.rename(sink.path.with_name(file_id)),
            created_at=int(time.time()),
        )
        logger.debug("stored upload %s (%s, %d bytes)", file_id, stored.filename, stored.bytes)
        return JSONResponse(self._file_out(self.state.add_file(_key(request), stored)))

    async def list_files(self, request: Request) -> Response:
        query = dict(request.query_params)
        files = self.state.list_files(_key(request), query.get("purpose"))
        return JSONResponse(_page([self._file_out(f) for f in files], query, default_limit=10000))

    async def get_file(self, request: Request) -> Response:
        file = self.state.get_file(_key(request), request.path_params["file_id"])
        return JSONResponse(self._file_out(file))

    async def delete_file(self, request: Request) -> Response:
        return JSONResponse(self.state.delete_file(_key(request), request.path_params["file_id"]))

    async def file_content(self, request: Request) -> Response:
        path = self.state.file_path(_key(request), request.path_params["file_id"])
        return FileResponse(path, media_type="application/octet-stream")

    # -- vector stores

    async def create_store(self, request: Request) -> Response:
        body = await _json_body(request)
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _bad_request("Invalid 'metadata': expected an object.", "metadata")
        name = str(body.get("name") or "")
        return JSONResponse(self.state.create_store(_key(request), name, metadata))

    async def get_store(self, request: Request) -> Response:
        return JSONResponse(self.state.get_store(_key(request), request.path_params["vs_id"]))

    async def delete_store(self, request: Request) -> Response:
        return JSONResponse(self.state.delete_store(_key(request), request.path_params["vs_id"]))

    # -- vector store files

    async def attach_file(self, request: Request) -> Response:
        entry = _attach_entry(await _json_body(request), self.fake.dialect)
        vs_id = request.path_params["vs_id"]
        vs_file = self.state.attach_file(_key(request), vs_id, entry, self.fake._attach_rate())
        return JSONResponse(self._vs_files_out([vs_file])[0])

    async def get_vs_file(self, request: Request) -> Response:
        vs_file = self.state.get_vs_file(
            _key(request),
            request.path_params["vs_id"],
            request.path_params["file_id"],
            self.fake.batch_mode,
            self.fake.polls_to_complete,
        )
        return JSONResponse(self._vs_files_out([vs_file])[0], headers=self._poll_headers())

    async def detach_file(self, request: Request) -> Response:
        params = request.path_params
        return JSONResponse(
            self.state.detach_file(_key(request), params["vs_id"], params["file_id"])
        )

    async def list_vs_files(self, request: Request) -> Response:
        files = self.state.list_vs_files(
            _key(request), request.path_params["vs_id"], _status_filter(request)
        )
        return JSONResponse(
            _page(self._vs_files_out(files), dict(request.query_params), default_limit=20)
        )

    # -- batches

    async def create_batch(self, request: Request) -> Response:
        body = await _json_body(request)
        if self.fake.dialect == "llama_stack":
            entries = _llama_batch_entries(body)
        else:
            entries = _openai_batch_entries(body, self.fake.max_files_per_batch)
        vs_id = request.path_params["vs_id"]
        rate = self.fake._attach_rate()
        return JSONResponse(self.state.create_batch(_key(request), vs_id, entries, rate))

    async def get_batch(self, request: Request) -> Response:
        batch = self.state.get_batch(
            _key(request),
            request.path_params["vs_id"],
            request.path_params["batch_id"],
            self.fake.batch_mode,
            self.fake.polls_to_complete,
        )
        return JSONResponse(batch, headers=self._poll_headers())

    async def cancel_batch(self, request: Request) -> Response:
        params = request.path_params
        return JSONResponse(
            self.state.cancel_batch(_key(request), params["vs_id"], params["batch_id"])
        )

    async def list_batch_files(self, request: Request) -> Response:
        params = request.path_params
        files = self.state.list_batch_files(
            _key(request), params["vs_id"], params["batch_id"], _status_filter(request)
        )
        return JSONResponse(
            _page(self._vs_files_out(files), dict(request.query_params), default_limit=20)
        )


def _dialect(request: Request) -> Dialect:
    fake: FakeOpenAI = request.app.state.fake
    return fake.dialect


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _ApiError)
    return exc.response(dialect=_dialect(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = f"Invalid URL ({request.method} {request.url.path})"
    return _ApiError(
        exc.status_code, message if exc.status_code in (404, 405) else exc.detail
    ).response(dialect=_dialect(request))


def _delayed_answer(send: Send, delay: float) -> Send:
    """`send`, holding the response back for `delay` seconds once the work is done."""

    async def delayed(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(delay)
        await send(message)

    return delayed


class _FakeApp:
    """ASGI entry point: log the request, apply faults, authenticate, then route."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.router = Starlette(
            routes=_Api(fake).routes(),
            exception_handlers={_ApiError: _api_error, HTTPException: _http_error},
        )
        self.router.state.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        fake = self.fake
        method: str = scope["method"]
        path: str = scope["path"]
        path = path.removeprefix("/v1") if path.startswith("/v1/") else path
        key = _bearer(scope)
        fake._state.record(method, path, None if key is None else key_hint(key))

        fault = fake._state.take_fault(method, path)
        if fault is not None and fault.answer_delay > 0:
            send = _delayed_answer(send, fault.answer_delay)
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.status is not None or fault.drop:
                await self._drain(receive, upload=(method, path) == ("POST", "/files"))
                if fault.drop:
                    await self._drop(send)
                else:
                    await fault.response(fake.dialect)(scope, receive, send)
                return

        error = _auth_error(key, fake.rejected_keys)
        if error is not None:
            await error.response(dialect=fake.dialect)(scope, receive, send)
            return
        scope[_KEY_SCOPE] = key
        await self.router(scope, receive, send)

    async def _drain(self, receive: Receive, *, upload: bool) -> None:
        delay = self.fake.upload_read_delay if upload else 0.0
        try:
            async for _chunk in _iter_body(receive, delay):
                pass
        except _ClientGone:
            logger.debug("client went away while its faulted request was read")

    async def _drop(self, send: Send) -> None:
        """Promise a body, send a piece of it, and return: uvicorn then closes the socket."""
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
        self.fake._drop_filter.expect()


# --------------------------------------------------------------------------- public facade


class FakeOpenAI:
    """The fake OpenAI server: start it, point an SDK client at `base_url`, inspect it.

    The knobs below are plain attributes a test may set at any time; `reset()` restores
    their defaults along with clearing all objects, faults and the request log.
    """

    batch_mode: BatchMode
    dialect: Dialect
    polls_to_complete: int
    poll_after_ms: int
    upload_read_delay: float
    rejected_keys: set[str]
    attach_limit_per_store_per_minute: int | None
    max_files_per_batch: int
    uploads_per_key_per_minute: int | None
    rate_window_s: float

    def __init__(self, spool_dir: Path | None = None) -> None:
        self._own_spool = spool_dir is None
        self._spool_dir = spool_dir  # made by `_open_spool()` when the fake owns it
        self._state = _State()
        self._drop_filter = _DropLogFilter()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self.app = _FakeApp(self)
        self._set_defaults()

    def _set_defaults(self) -> None:
        self.batch_mode = "complete"
        self.dialect = "openai"
        self.polls_to_complete = 2
        self.poll_after_ms = 50
        self.upload_read_delay = 0.0
        self.rejected_keys = set()
        self.attach_limit_per_store_per_minute = None
        self.max_files_per_batch = 2000
        self.uploads_per_key_per_minute = None
        self.rate_window_s = 60.0

    def _attach_rate(self) -> _Rate:
        return _Rate(self.attach_limit_per_store_per_minute, self.rate_window_s)

    def _upload_rate(self) -> _Rate:
        return _Rate(self.uploads_per_key_per_minute, self.rate_window_s)

    # -- lifecycle

    @property
    def spool_dir(self) -> Path:
        """Where uploads are written; with no dir given, a temp dir made by `start()`."""
        if self._spool_dir is None:
            raise RuntimeError("the fake OpenAI server has not been started")
        return self._spool_dir

    def _open_spool(self) -> None:
        if self._own_spool:
            self._spool_dir = Path(tempfile.mkdtemp(prefix="fake-openai-"))
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        """Serve on 127.0.0.1 on an ephemeral port; returns once connections are accepted."""
        if self._server is not None:
            raise RuntimeError("the fake OpenAI server is already running")
        self._open_spool()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            log_config=None,  # leave the process's logging setup alone
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)  # installs no signal handlers off the main thread
        thread = threading.Thread(target=server.run, name="fake-openai", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                self.stop()
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.005)
        logging.getLogger("uvicorn.error").addFilter(self._drop_filter)
        self._server, self._thread = server, thread
        self._port = int(server.servers[0].sockets[0].getsockname()[1])
        logger.info("fake OpenAI listening on %s", self.base_url)

    def stop(self) -> None:
        """Stop serving; remove the spool dir (and so all content) if the fake created it."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None
        self._port = None
        logging.getLogger("uvicorn.error").removeFilter(self._drop_filter)
        if self._own_spool and self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)

    def serve(self, host: str, port: int) -> None:
        """Serve in the foreground (main thread) until Ctrl-C."""
        self._open_spool()
        config = uvicorn.Config(self.app, host=host, port=port, lifespan="off", ws="none")
        logging.getLogger("uvicorn.error").addFilter(self._drop_filter)
        try:
            uvicorn.Server(config).run()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fake OpenAI server is not running")
        return f"http://127.0.0.1:{self._port}/v1"

    def reset(self) -> None:
        """Forget every object, fault, failure rule and request; restore knob defaults."""
        self._set_defaults()
        self._state.clear()

    # -- configuration

    def inject(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int = 1,
        body: Json | None = None,
        answer_delay: float = 0.0,
    ) -> None:
        """Add a fault rule; see the module docstring for how rules match and act.

        `method` may be "*" for any method. `path_pattern` is matched with `re.fullmatch`
        against the path without `/v1`. `times=-1` keeps the rule forever. `body`
        replaces the default OpenAI-style error body of a `status` fault. `answer_delay`
        performs the request at once but holds its answer back that long (the upstream
        has done the work; the client does not know yet).
        """
        if times == 0 or times < -1:
            raise ValueError("times must be positive or -1 (forever)")
        self._state.add_fault(
            _Fault(
                method=method.upper(),
                pattern=re.compile(path_pattern),
                status=status,
                retry_after=retry_after,
                delay=delay,
                drop=drop,
                times=times,
                body=body,
                answer_delay=answer_delay,
            )
        )

    def clear_faults(self) -> None:
        """Remove every fault rule: the upstream recovers, keeping its objects."""
        with self._state.lock:
            self._state.faults.clear()

    def fail_files_named(
        self,
        name: str,
        code: FileErrorCode = "unsupported_file",
        message: str = "The file type is not supported.",
    ) -> None:
        """Make vector store files whose upstream filename is `name` end `failed`."""
        with self._state.lock:
            self._state.fail_rules[name] = {"code": code, "message": message}

    # -- inspection

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        """(method, path without /v1, key hint) of every request received, in order."""
        with self._state.lock:
            return list(self._state.requests)

    def files_for(
        self, key: str | None = None, *, include_deleted: bool = False
    ) -> list[StoredFile]:
        """Uploaded files of `key` (every key if None), oldest first."""
        return self._state.files_for(key, include_deleted)

    def file_content(self, file_id: str) -> bytes:
        return self._state.stored_file(file_id).path.read_bytes()

    @property
    def batches(self) -> list[BatchSnapshot]:
        return self._state.batch_snapshots()

    def vector_store_files(self, vs_id: str) -> list[str]:
        """Ids of the files attached to a vector store ([] if it does not exist)."""
        return self._state.store_file_ids(vs_id)

    def vector_store_file(self, vs_id: str, file_id: str) -> Json:
        """A vector-store file object as the current dialect shows it (its `attributes`,
        `chunking_strategy`, `status`), read without counting as a poll. KeyError if the
        file is not attached to that store."""
        return _vs_file_view(self._state.vs_file_json(vs_id, file_id), self.dialect)

    def attach_times(self, vs_id: str) -> list[float]:
        """`time.monotonic()` of each file attached to `vs_id` within the last
        `rate_window_s` (a batch of n files gives n equal times), oldest first."""
        return self._state.window_times(self._state.attach_times, vs_id, self.rate_window_s)

    def upload_times(self, key: str) -> list[float]:
        """`time.monotonic()` of each `POST /files` of `key` admitted within the last
        `rate_window_s`, oldest first."""
        return self._state.window_times(self._state.upload_times, key, self.rate_window_s)

    def create_vector_store(self, key: str, name: str = "test") -> str:
        """Create a vector store owned by `key` directly in state; returns its id."""
        store_id: str = self._state.create_store(key, name, {})["id"]
        return store_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI Files/Vector Stores API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--spool-dir", type=Path, default=None)
    parser.add_argument("--batch-mode", choices=["complete", "fail", "cancel", "stuck"])
    parser.add_argument("--polls-to-complete", type=int)
    parser.add_argument("--dialect", choices=["openai", "llama_stack"], default="openai")
    parser.add_argument("--attach-limit-per-store-per-minute", type=int)
    parser.add_argument("--uploads-per-key-per-minute", type=int)
    parser.add_argument("--batch-delay", type=float, help="seconds each batch call takes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fake = FakeOpenAI(args.spool_dir)
    if args.batch_mode is not None:
        fake.batch_mode = args.batch_mode
    if args.polls_to_complete is not None:
        fake.polls_to_complete = args.polls_to_complete
    fake.dialect = args.dialect
    fake.attach_limit_per_store_per_minute = args.attach_limit_per_store_per_minute
    fake.uploads_per_key_per_minute = args.uploads_per_key_per_minute
    if args.batch_delay:
        fake.inject("POST", r"/vector_stores/[^/]+/file_batches", delay=args.batch_delay, times=-1)
    logger.info("fake OpenAI serving on http://%s:%d/v1 (Ctrl-C to stop)", args.host, args.port)
    fake.serve(args.host, args.port)


if __name__ == "__main__":
    main()
