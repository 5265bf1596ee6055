"""Where a file's status is written, and the events its end raises (SPEC 10.2).

Every writer of a file record's status goes through here: the poller (OpenAI's answer,
a batch gone upstream, a timeout), a status request's refresh, and the Flowise route
finishing its request. A status is written only while the record is not final yet, as
a conditional UPDATE, so of two writers racing to end a file exactly one does, and only
that one raises its `file.completed` or `file.failed`, in the same transaction. A
batch's `batch.completed` is raised where its `file_batches` row becomes `done`, which
happens once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.vector_stores.duplicates import retire_older
from vectorgate.vector_stores.models import FileBatch, VectorStoreFile
from vectorgate.vector_stores.schemas import FileStatus
from vectorgate.webhooks.events import (
    BATCH_COMPLETED,
    FILE_COMPLETED,
    FILE_FAILED,
    raise_event,
)

FINAL_STATUSES = frozenset({"completed", "failed"})

Status = tuple[str, str | None]


def status_of(record: VectorStoreFile) -> Status:
    return record.processing_status, record.error_message


def snapshot(records: Iterable[VectorStoreFile]) -> dict[str, Status]:
    """Each record's status before a change: what `save_changes` compares with."""
    return {record.id: status_of(record) for record in records}


async def save_changes(
    session: AsyncSession,
    records: Sequence[VectorStoreFile],
    before: Mapping[str, Status] | None = None,
) -> list[VectorStoreFile]:
    """Write the records (those whose status differs from `before`, if given), each only
    if it is not final in the database (someone else may have ended it meanwhile); raise
    the events of the files this write ends. Returns the records written."""
    written = []
    for record in records:
        if before is not None and status_of(record) == before.get(record.id):
            continue
        result = await session.execute(
            update(VectorStoreFile)
            .where(
                VectorStoreFile.id == record.id,
                VectorStoreFile.processing_status.not_in(FINAL_STATUSES),
            )
            .values(
                processing_status=record.processing_status,
                error_message=record.error_message,
                updated_at=record.updated_at,
            )
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            written.append(record)
            await file_ended(session, record)
    return written


async def file_ended(session: AsyncSession, record: VectorStoreFile) -> None:
    """What a record that has just become final brings about: its `file.completed` or
    `file.failed`, and for a completed replacement, the older records' removal."""
    if record.processing_status not in FINAL_STATUSES:
        return
    kind = FILE_COMPLETED if record.processing_status == "completed" else FILE_FAILED
    await raise_event(session, record.organization_id, kind, file_event_data(record))
    if record.processing_status == "completed" and record.replaces_older:
        await retire_older(session, record)


async def finish_batch(session: AsyncSession, batch: FileBatch, *, owner: str | None) -> bool:
    """Mark `batch` done if every file of it is final in the database, raising its
    `batch.completed`; `owner`: only while this lease holder has it. Returns whether it
    is done now. Exactly one writer can turn a batch done (a conditional UPDATE)."""
    remaining = await session.scalar(
        select(func.count())
        .select_from(VectorStoreFile)
        .where(
            VectorStoreFile.batch_id == batch.id,
            VectorStoreFile.organization_id == batch.organization_id,
            VectorStoreFile.processing_status.not_in(FINAL_STATUSES),
        )
    )
    if remaining:
        return False
    query = update(FileBatch).where(FileBatch.id == batch.id, FileBatch.done.is_(False))
    if owner is not None:
        query = query.where(FileBatch.lease_owner == owner)
    result = await session.execute(query.values(done=True))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await raise_batch_event(session, batch)
    return True


async def raise_batch_event(session: AsyncSession, batch: FileBatch) -> None:
    records = (
        await session.scalars(
            select(VectorStoreFile)
            .where(
                VectorStoreFile.batch_id == batch.id,
                VectorStoreFile.organization_id == batch.organization_id,
            )
            .order_by(VectorStoreFile.created_at, VectorStoreFile.id)
        )
    ).all()
    completed = sum(1 for r in records if r.processing_status == "completed")
    data = {
        "vector_store_id": batch.vector_store_id,
        "batch_id": batch.id,
        "files": [status_data(r) for r in records],
        "counts": {"completed": completed, "failed": len(records) - completed},
    }
    await raise_event(session, batch.organization_id, BATCH_COMPLETED, data)


def status_data(record: VectorStoreFile) -> dict[str, Any]:
    """The status route's object (SPEC 3.3) as JSON."""
    return FileStatus.model_validate(record, from_attributes=True).model_dump(mode="json")


def file_event_data(record: VectorStoreFile) -> dict[str, Any]:
    """A file event's `data`: the status object, its store and its attributes."""
    return {**status_data(record), "vector_store_id": record.vector_store_id}
