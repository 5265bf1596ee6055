"""The live status stream of a few files (SPEC 10.4): Server-Sent Events from the database.

The route checks everything before the stream starts (ids, files, the caller's right to
them) and takes one of the organization's stream slots in this process; from then on
`status_events` re-reads the listed records every `event_stream_interval_s` in a short
session of its own (no session is held between reads, and OpenAI is never asked: the
poller moves the records), so any worker or replica can serve a stream. It sends one
`file.status` per file, then one per change of a file's `processing_status` or
`error_message`, then `done` once every file is final, and ends. Every stream is bounded:

- in time: at most `VECTORGATE_BATCH_TIMEOUT_S` plus `event_stream_grace_s` (no file stays
  non-final longer than its batch's deadline, and the poller needs a few rounds after it),
  and never past the caller's own expiry; then `timeout` (with the ids still not final)
  instead of `done`, and the stream ends;
- in number: `VECTORGATE_MAX_EVENT_STREAMS_PER_ORG` open at once per organization in this
  process; past it 429. The slot is given back however the response ends (`SlotResponse`),
  a client's disconnect too: Starlette cancels the generator as soon as it is told.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from vectorgate.db import utcnow
from vectorgate.errors import bad_request, not_found
from vectorgate.schemas import ID_PATTERN
from vectorgate.vector_stores.models import VectorStoreFile
from vectorgate.vector_stores.outcomes import FINAL_STATUSES
from vectorgate.vector_stores.schemas import FileStatus
from vectorgate.vector_stores.stream_slots import Slot

# SPEC 10.4: 1 to 100 distinct ids per stream.
MAX_IDS = 100
_ID = re.compile(ID_PATTERN)
# For the schema: what `ids` looks like (the count of distinct ids is checked, not drawn).
IDS_SCHEMA_PATTERN = r"^[A-Za-z0-9_-]{1,128}(,[A-Za-z0-9_-]{1,128})*$"
EVENT_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _event_schema(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
    }


# One event of the stream, as OpenAPI documents a `text/event-stream` (each event an
# object of its fields, `data` a JSON text).
EVENTS_SCHEMA: dict[str, Any] = {
    "oneOf": [
        _event_schema("file.status", {"$ref": "#/components/schemas/FileStatus"}),
        _event_schema("done", {"type": "object", "maxProperties": 0}),
        _event_schema(
            "timeout",
            {
                "type": "object",
                "required": ["pending"],
                "properties": {"pending": {"type": "array", "items": {"type": "string"}}},
            },
        ),
    ]
}


def parse_ids(raw: str) -> list[str]:
    """The distinct ids of `ids=vsf_a,file-b`, in the order given; 400 when malformed,
    empty or more than MAX_IDS."""
    given = raw.split(",") if raw else []
    for file_id in given:
        if not _ID.fullmatch(file_id):
            raise bad_request(
                "ids must be comma-separated file ids (vsf_... or file-...), without spaces",
                parameter="ids",
            )
    ids = list(dict.fromkeys(given))
    if not 1 <= len(ids) <= MAX_IDS:
        raise bad_request(
            f"ids must name 1 to {MAX_IDS} distinct files, not {len(ids)}",
            parameter="ids",
            max_ids=MAX_IDS,
        )
    return ids


async def find_records(
    session: AsyncSession,
    organization_id: str,
    vector_store_id: str,
    ids: Sequence[str],
    upload_token_id: str | None,
) -> list[VectorStoreFile]:
    """The records the ids name (`vsf_` ids or upstream `file-` ids, as the status route
    takes them), each once, in the order first named; 404 for the first that names none.
    For an upload token, a file it did not upload is as unknown as one that does not exist."""
    ours = [i for i in ids if i.startswith("vsf_")]
    upstream = [i for i in ids if not i.startswith("vsf_")]
    rows = await session.scalars(
        select(VectorStoreFile).where(
            VectorStoreFile.organization_id == organization_id,
            VectorStoreFile.vector_store_id == vector_store_id,
            or_(VectorStoreFile.id.in_(ours), VectorStoreFile.file_id.in_(upstream)),
        )
    )
    by_id: dict[str, VectorStoreFile] = {}
    for row in rows:
        by_id[row.id] = row
        if row.file_id is not None:
            by_id.setdefault(row.file_id, row)
    found: dict[str, VectorStoreFile] = {}
    for file_id in ids:
        record = by_id.get(file_id)
        if record is None or (
            upload_token_id is not None and record.upload_token_id != upload_token_id
        ):
            raise not_found("File not found", file_id=file_id)
        found.setdefault(record.id, record)
    return list(found.values())


class SlotResponse(StreamingResponse):
    """An event stream that gives its slot back however it ends: finished, failed, or
    cancelled by a client's disconnect (even one before the first byte was sent)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], slot: Slot) -> None:
        super().__init__(content, headers=EVENT_STREAM_HEADERS)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


KEEP_ALIVE = ": keep-alive\n\n"


@dataclass(frozen=True)
class StreamTimings:
    interval_s: float  # between two reads of the records
    keep_alive_s: float  # longest silence: a comment line after it
    ends_at: float  # time.monotonic() after which the stream ends without `done`


def stream_end(
    started: float, batch_timeout_s: float, grace_s: float, expires_at: datetime | None
) -> float:
    """When a stream that began at `started` (monotonic) ends at the latest: after the
    batch deadline plus a grace, or when the caller's key or token expires if sooner."""
    ends_at = started + batch_timeout_s + grace_s
    if expires_at is not None:
        ends_at = min(ends_at, started + (expires_at - utcnow()).total_seconds())
    return ends_at


async def read_statuses(
    sessionmaker: async_sessionmaker[AsyncSession],
    organization_id: str,
    vector_store_id: str,
    record_ids: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """The status objects of the records still there, by record id; a short session."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(VectorStoreFile).where(
                VectorStoreFile.organization_id == organization_id,
                VectorStoreFile.vector_store_id == vector_store_id,
                VectorStoreFile.id.in_(record_ids),
            )
        )
        return {row.id: status_object(row) for row in rows}


def status_object(record: VectorStoreFile) -> dict[str, Any]:
    """Exactly what the status route answers for the record."""
    return FileStatus.model_validate(record, from_attributes=True).model_dump(mode="json")


async def status_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    organization_id: str,
    vector_store_id: str,
    first: Sequence[VectorStoreFile],
    timings: StreamTimings,
) -> AsyncIterator[str]:
    """The event stream of the records `first` (as just read): see the module docstring.

    A record that disappears meanwhile (its store unregistered, replaced by a newer
    upload) has nothing more to say: it counts as final with the last status sent."""
    record_ids = [record.id for record in first]
    current = {record.id: status_object(record) for record in first}
    sent: dict[str, tuple[Any, Any]] = {}
    final: set[str] = set()
    last_write = time.monotonic()
    while True:
        for record_id in record_ids:
            status = current.get(record_id)
            if status is None:
                final.add(record_id)
                continue
            seen = (status["processing_status"], status["error_message"])
            if sent.get(record_id) != seen:
                sent[record_id] = seen
                last_write = time.monotonic()
                yield event("file.status", status)
            if status["processing_status"] in FINAL_STATUSES:
                final.add(record_id)
        if len(final) == len(record_ids):
            yield event("done", {})
            return
        # Wait for the next read, with keep-alive comments in the silences.
        next_read = time.monotonic() + timings.interval_s
        while (now := time.monotonic()) < next_read:
            if now >= timings.ends_at:
                pending = [i for i in record_ids if i not in final]
                yield event("timeout", {"pending": pending})
                return
            if now - last_write >= timings.keep_alive_s:
                last_write = now
                yield KEEP_ALIVE
            wake = min(next_read, timings.ends_at, last_write + timings.keep_alive_s)
            await asyncio.sleep(max(0.0, wake - now))
        current = await read_statuses(sessionmaker, organization_id, vector_store_id, record_ids)
