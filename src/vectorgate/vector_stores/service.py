"""Registered vector stores and the records of files uploaded into them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, TypeVar

import openai
from fastapi import Query
from openai.types.vector_stores import VectorStoreFile as UpstreamFile
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import Actor, EventType, record_event
from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.db import new_id, newest_first_page, utcnow, write_transaction
from vectorgate.errors import AppError, ErrorCode, not_found
from vectorgate.ingest import Ingested
from vectorgate.security.encryption import Keyring
from vectorgate.upstream.batch import failure_reason
from vectorgate.upstream.client import client_for
from vectorgate.upstream.errors import is_not_found, upstream_errors
from vectorgate.vector_stores.duplicates import OnDuplicate
from vectorgate.vector_stores.models import FileBatch, VectorStore, VectorStoreFile
from vectorgate.vector_stores.outcomes import (
    FINAL_STATUSES,
    file_ended,
    raise_batch_event,
    save_changes,
)
from vectorgate.vector_stores.schemas import UploadedFile, UploadResponse

log = logging.getLogger(__name__)

T = TypeVar("T")

_FROM_UPSTREAM = {
    "in_progress": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
}
# A status request for a non-final file older than this asks OpenAI first.
STATUS_REFRESH_AFTER = timedelta(seconds=2)
_NAME_LENGTH = 200  # vector_stores.name is String(200)


@dataclass(frozen=True, slots=True)
class Registration:
    """What registering a store needs once the database has been read: the credential's
    client, and which store to find (`vector_store_id`) or create (`create_name`)."""

    organization_id: str
    credential_id: str
    client: openai.AsyncOpenAI
    vector_store_id: str | None
    create_name: str | None


async def prepare_registration(
    session: AsyncSession,
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
    org_id: str,
    credential_id: str,
    *,
    create_name: str | None = None,
    vector_store_id: str | None = None,
) -> Registration:
    """The database reads of a registration: the credential (404), an existing store (409)."""
    if (create_name is None) == (vector_store_id is None):
        raise AppError(
            400, ErrorCode.INVALID_REQUEST, "Give either a name to create or a vector_store_id"
        )
    credential = await get_credential(session, org_id, credential_id)
    client = client_for(base_client, reveal_key(keyring, credential), credential.base_url)
    if vector_store_id is not None:
        if await session.get(VectorStore, (org_id, vector_store_id)) is not None:
            raise _already_registered(vector_store_id)
    return Registration(org_id, credential.id, client, vector_store_id, create_name)


async def find_or_create_upstream(registration: Registration) -> VectorStore:
    """Check or create the store at OpenAI; returns the record to save, in no session yet."""
    client = registration.client
    if registration.vector_store_id is not None:
        with upstream_errors("find the vector store", not_found="Vector store not found"):
            upstream = await client.vector_stores.retrieve(registration.vector_store_id)
    else:
        assert registration.create_name is not None
        with upstream_errors("create the vector store"):
            upstream = await client.vector_stores.create(name=registration.create_name)
    return VectorStore(
        organization_id=registration.organization_id,
        id=upstream.id,
        credential_id=registration.credential_id,
        name=record_name(upstream.name),
    )


def record_name(upstream_name: str | None) -> str | None:
    """The name the record keeps: OpenAI's, cut to the column's length (names given here
    are validated to fit; a store registered by id may carry a longer one from upstream)."""
    if upstream_name is None:
        return None
    return upstream_name[:_NAME_LENGTH]


def _record_registration(
    session: AsyncSession, registration: Registration, store: VectorStore, actor: Actor
) -> None:
    details = {
        "name": store.name,
        "credential_id": store.credential_id,
        "created_upstream": registration.create_name is not None,
    }
    record_event(
        session, store.organization_id, actor, EventType.VECTOR_STORE_REGISTERED, store.id, details
    )


async def save_registration(
    sessionmaker: async_sessionmaker[AsyncSession],
    registration: Registration,
    store: VectorStore,
    actor: Actor,
) -> VectorStore:
    """Write the record (and its audit event) in a short transaction of its own. A
    concurrent request may have registered the same store, or deleted the credential,
    since the reads: 409 or 404, and neither the record nor the event is written."""
    try:
        async with write_transaction(sessionmaker) as session:
            session.add(store)
            _record_registration(session, registration, store, actor)
    except IntegrityError:
        if registration.create_name is not None:
            await _discard_created(registration, store.id)
        async with sessionmaker() as session:
            registered = await session.get(VectorStore, (store.organization_id, store.id))
            if registered is None:  # not a duplicate: the credential went away (404)?
                await get_credential(session, store.organization_id, store.credential_id)
                raise
        raise _already_registered(store.id) from None
    return store


async def _discard_created(registration: Registration, vector_store_id: str) -> None:
    """Delete a store this request created upstream but could not register (best effort)."""
    try:
        await registration.client.vector_stores.delete(vector_store_id)
    except openai.OpenAIError as exc:
        log.warning(
            "could not delete unregistered store %s: %s", vector_store_id, type(exc).__name__
        )


async def register_vector_store(
    session: AsyncSession,
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
    org_id: str,
    credential_id: str,
    actor: Actor,
    *,
    create_name: str | None = None,
    vector_store_id: str | None = None,
) -> VectorStore:
    """Create a vector store upstream, or check an existing one there, and register it in
    `session` (for the command line; the API route reads, calls and writes separately)."""
    registration = await prepare_registration(
        session,
        keyring,
        base_client,
        org_id,
        credential_id,
        create_name=create_name,
        vector_store_id=vector_store_id,
    )
    store = await find_or_create_upstream(registration)
    session.add(store)
    _record_registration(session, registration, store, actor)
    await session.flush()
    return store


def _already_registered(vector_store_id: str) -> AppError:
    return AppError(
        409, ErrorCode.CONFLICT, f"Vector store {vector_store_id} is already registered"
    )


async def get_vector_store(session: AsyncSession, org_id: str, vector_store_id: str) -> VectorStore:
    store = await session.get(VectorStore, (org_id, vector_store_id))
    if store is None:
        raise not_found("Vector store not found", vector_store_id=vector_store_id)
    return store


async def list_vector_stores(session: AsyncSession, org_id: str) -> Sequence[VectorStore]:
    return (
        await session.scalars(
            select(VectorStore)
            .where(VectorStore.organization_id == org_id)
            .order_by(VectorStore.created_at.desc(), VectorStore.id)
        )
    ).all()


async def store_client(
    session: AsyncSession,
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
    store: VectorStore,
) -> openai.AsyncOpenAI:
    credential = await get_credential(session, store.organization_id, store.credential_id)
    return client_for(base_client, reveal_key(keyring, credential), credential.base_url)


async def unregister_vector_store(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
    org_id: str,
    vector_store_id: str,
    actor: Actor,
    *,
    delete_upstream: bool,
) -> None:
    """Unregister a store (404 if it is not registered), deleting it at OpenAI first when
    asked. No connection is held while OpenAI answers: read, call, then one short write."""
    async with sessionmaker() as session:
        store = await get_vector_store(session, org_id, vector_store_id)
        client = (
            await store_client(session, keyring, base_client, store) if delete_upstream else None
        )
    if client is not None:
        with upstream_errors("delete the vector store"):
            try:
                await client.vector_stores.delete(store.id)
            except openai.OpenAIError as exc:
                if not is_not_found(exc):
                    raise
                # Already gone upstream: unregistering is all that is left.
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(
            delete(VectorStore).where(
                VectorStore.organization_id == org_id, VectorStore.id == vector_store_id
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            # A concurrent request unregistered it first.
            raise not_found("Vector store not found", vector_store_id=vector_store_id)
        record_event(
            session,
            org_id,
            actor,
            EventType.VECTOR_STORE_UNREGISTERED,
            vector_store_id,
            {"deleted_upstream": delete_upstream},
        )


def _file_records(
    organization_id: str,
    vector_store_id: str,
    ingested: Ingested,
    *,
    status: str,
    error_message: str | None = None,
    upload_token_id: str | None,
) -> list[VectorStoreFile]:
    now = utcnow()
    assert ingested.batch is not None or not ingested.files
    return [
        VectorStoreFile(
            id=new_id("vsf_"),
            organization_id=organization_id,
            vector_store_id=vector_store_id,
            file_id=upstream.id,
            batch_id=ingested.batch.id if ingested.batch is not None else None,
            filename=file.filename,
            size=file.size,
            mime_type=file.kind.mime_type,
            processing_status=status,
            error_message=error_message,
            upload_token_id=upload_token_id,
            sha256=file.sha256,
            attributes=options.get("attributes"),
            chunking_strategy=options.get("chunking_strategy"),
            replaces_older=ingested.replace,
            created_at=now,
            updated_at=now,
        )
        for file, upstream, options in zip(
            ingested.staged, ingested.files, ingested.options, strict=True
        )
    ]


# SPEC 11.2; any other value is a 400 in the route family's body.
OnDuplicateQuery = Annotated[
    OnDuplicate,
    Query(description="What to do with a file the store already holds (same name and content)"),
]


def upload_response(ingested: Ingested, records: Sequence[VectorStoreFile]) -> UploadResponse:
    """The base64 route's success body (SPEC 3.2), skipped duplicates included."""

    def shown(record: VectorStoreFile) -> UploadedFile:
        return UploadedFile.model_validate(record, from_attributes=True)

    files = [
        file.model_copy(update={"duplicate": duplicate})
        for file, duplicate in in_request_order(ingested, [shown(r) for r in records], shown)
    ]
    uploaded = len(records)
    message = f"{uploaded} file(s) uploaded successfully"
    if uploaded < len(files):
        message += f", {len(files) - uploaded} skipped as duplicates"
    return UploadResponse(message=message, files=files)


def in_request_order(
    ingested: Ingested, uploaded: Sequence[T], existing: Callable[[VectorStoreFile], T]
) -> list[tuple[T, bool]]:
    """Each received file's answer in request order, and whether it is a skipped duplicate:
    `uploaded` holds the uploaded files' answers (in `ingested.staged`'s order),
    `existing` makes one from the record a skipped file duplicates."""
    next_uploaded = iter(uploaded)
    answer: list[tuple[T, bool]] = []
    for position in range(len(ingested.received)):
        duplicate = ingested.duplicates.get(position)
        if duplicate is None:
            answer.append((next(next_uploaded), False))
        elif isinstance(duplicate, int):  # repeats an earlier file of the request
            answer.append((answer[duplicate][0], True))
        else:
            answer.append((existing(duplicate), True))
    return answer


def add_file_records(
    store: VectorStore,
    ingested: Ingested,
    *,
    deadline: datetime,
    upload_token_id: str | None = None,
) -> list[VectorStoreFile]:
    """A record of each uploaded file, and the batch for the poller to follow, to be saved
    with the request's last transaction."""
    records = _file_records(
        store.organization_id,
        store.id,
        ingested,
        status="pending",
        upload_token_id=upload_token_id,
    )
    ingested.to_save.extend(records)
    if ingested.batch is not None:
        batch = {
            "id": ingested.batch.id,
            "organization_id": store.organization_id,
            "vector_store_id": store.id,
            "credential_id": store.credential_id,
            "deadline_at": deadline,
            "next_poll_at": utcnow(),
            "done": False,
        }
        ingested.then.append(partial(follow_batch, batch))
    return records


async def follow_batch(batch: dict[str, object], session: AsyncSession) -> None:
    """The `file_batches` row the poller follows. A batch may be shared by concurrent
    requests (upstream/coalesce.py): the first to finish writes the row; a later one,
    whose records arrive now, makes it not done again, so that the poller also brings
    these to their end (it may have ended the batch on the first request's records)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(FileBatch).values(**batch)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[FileBatch.id], set_={"done": False, "next_poll_at": utcnow()}
        )
    )


async def save_finished_request(
    session: AsyncSession,
    organization_id: str,
    vector_store_id: str,
    credential_id: str,
    ingested: Ingested,
    *,
    error_message: str | None,
    upload_token_id: str | None,
) -> list[VectorStoreFile]:
    """The records of a request that waited for its batch (the Flowise route): each
    `completed` after a success, `failed` with `error_message` after an error (its files
    were deleted upstream); the batch done, and their events raised, all in `session`."""
    records = _file_records(
        organization_id,
        vector_store_id,
        ingested,
        status="failed" if error_message is not None else "completed",
        error_message=error_message,
        upload_token_id=upload_token_id,
    )
    if ingested.batch is None:
        return records  # every file was a skipped duplicate: nothing new
    now = utcnow()
    batch = FileBatch(
        id=ingested.batch.id,
        organization_id=organization_id,
        vector_store_id=vector_store_id,
        credential_id=credential_id,
        done=True,
        deadline_at=now,
        next_poll_at=now,
    )
    session.add_all([*records, batch])
    await session.flush()
    for record in records:
        await file_ended(session, record)
    await raise_batch_event(session, batch)
    return records


async def ensure_registered(
    sessionmaker: async_sessionmaker[AsyncSession],
    organization_id: str,
    vector_store_id: str,
    credential_id: str,
    name: str | None,
    actor: Actor,
) -> None:
    """Register a store the Flowise route uploads to, if it is not yet, so its file
    records have a store to belong to (the route has just found it upstream with
    `credential_id`). A registration that exists, or that a concurrent request makes
    first, is kept as it is."""
    async with sessionmaker() as session:
        if await session.get(VectorStore, (organization_id, vector_store_id)) is not None:
            return
    store = VectorStore(
        organization_id=organization_id,
        id=vector_store_id,
        credential_id=credential_id,
        name=record_name(name),
    )
    details = {"name": store.name, "credential_id": credential_id, "implicit": True}
    try:
        async with write_transaction(sessionmaker) as session:
            session.add(store)
            record_event(
                session,
                organization_id,
                actor,
                EventType.VECTOR_STORE_REGISTERED,
                vector_store_id,
                details,
            )
    except IntegrityError:
        pass  # registered meanwhile by a concurrent request


async def list_file_records(
    session: AsyncSession,
    store: VectorStore,
    *,
    status: str | None,
    limit: int,
    after: str | None,
) -> tuple[Sequence[VectorStoreFile], bool]:
    """Newest first; `after` is the id of the last record of the previous page."""
    query = select(VectorStoreFile).where(
        VectorStoreFile.organization_id == store.organization_id,
        VectorStoreFile.vector_store_id == store.id,
    )
    if status is not None:
        query = query.where(VectorStoreFile.processing_status == status)
    cursor = None
    if after is not None:
        cursor = await session.get(VectorStoreFile, after)
        if cursor is None or (cursor.organization_id, cursor.vector_store_id) != (
            store.organization_id,
            store.id,
        ):
            raise not_found("The 'after' record was not found", after=after)
    return await newest_first_page(session, query, VectorStoreFile, cursor, limit)


async def get_file_record(
    session: AsyncSession, store: VectorStore, file_id: str
) -> VectorStoreFile:
    """By our `vsf_` id or by the upstream `file-` id."""
    column = VectorStoreFile.id if file_id.startswith("vsf_") else VectorStoreFile.file_id
    record = await session.scalar(
        select(VectorStoreFile).where(
            column == file_id,
            VectorStoreFile.organization_id == store.organization_id,
            VectorStoreFile.vector_store_id == store.id,
        )
    )
    if record is None:
        raise not_found("File not found", file_id=file_id)
    return record


def apply_upstream_status(record: VectorStoreFile, upstream: UpstreamFile) -> None:
    status = _FROM_UPSTREAM.get(upstream.status, record.processing_status)
    error = None
    if status == "failed":
        error = (
            f"{upstream.last_error.code}: {upstream.last_error.message}"
            if upstream.last_error is not None
            else failure_reason(upstream)
        )
    record.processing_status = status
    record.error_message = error
    record.updated_at = utcnow()


def mark_timed_out(record: VectorStoreFile, timeout_s: float) -> None:
    mark_failed(record, f"processing did not finish within {timeout_s:g}s")


def mark_processing(record: VectorStoreFile) -> None:
    if record.processing_status == "pending":
        record.processing_status = "processing"
        record.updated_at = utcnow()


def mark_failed(record: VectorStoreFile, message: str) -> None:
    record.processing_status = "failed"
    record.error_message = message
    record.updated_at = utcnow()


def may_refresh(record: VectorStoreFile) -> bool:
    """Whether a status request for `record` may need OpenAI (and so its client)."""
    return record.processing_status not in FINAL_STATUSES and record.file_id is not None


async def refresh_file_record(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: openai.AsyncOpenAI | None,
    store: VectorStore,
    record: VectorStoreFile,
) -> VectorStoreFile:
    """Bring a stale non-final record up to date with OpenAI (best effort, with `client`
    if given); returns it as the database now has it.

    Called with no session open: OpenAI is asked once (give an `interactive` client: a
    rate-limited or slow key then answers from the database at once), and the change is
    written in a short transaction that never overwrites a final status someone else
    (the poller, another request) wrote in between.
    """
    if record.processing_status in FINAL_STATUSES:
        return record
    # An overdue file is left to the poller, which cancels its batch upstream before it
    # marks the file failed (see Poller._time_out): marking it here could report a file
    # failed that OpenAI then indexes. Asking OpenAI about it is still fine.
    if client is None or record.file_id is None:
        return record
    if utcnow() - record.updated_at < STATUS_REFRESH_AFTER:
        return record
    try:
        upstream = await client.vector_stores.files.retrieve(
            record.file_id, vector_store_id=store.id
        )
    except openai.OpenAIError as exc:
        log.info("status refresh of %s failed: %s", record.id, type(exc).__name__)
        return record
    if upstream.status == "cancelled":
        # Its batch was cancelled, by the poller for a timeout most likely: the poller,
        # which knows why, ends the record.
        return record
    apply_upstream_status(record, upstream)  # its updated_at too: the next refresh waits
    async with write_transaction(sessionmaker) as session:
        if await save_changes(session, [record]):
            return record
        # Final already (someone else ended it), or gone: answer what the database has.
        saved = await session.get(VectorStoreFile, record.id)
    return saved if saved is not None else record
