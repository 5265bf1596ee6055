"""The organization API for vector stores (SPEC 3.2, 3.3 and 4)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from vectorgate.db import utcnow
from vectorgate.deps import (
    ORGANIZATION_PATH,
    ManageCaller,
    PathId,
    ReadCaller,
    ResourcesDep,
    SessionDep,
    StatusCaller,
    StatusStreamCaller,
    UploadOrTokenCaller,
)
from vectorgate.errors import OrgErrorBody, documented_errors, forbidden, not_found
from vectorgate.ingest import content_checker, ingest, reject_oversized_body
from vectorgate.limits import json_body, json_request_body
from vectorgate.schemas import ID_PATTERN
from vectorgate.upload_tokens.service import TokenQuota
from vectorgate.uploads.base64_json import stream_base64_json
from vectorgate.uploads.idempotency import HashingStream, idempotent
from vectorgate.uploads.options import OPTIONS_SCHEMA
from vectorgate.uploads.staging import FileOptions, Reserve, StagedFile
from vectorgate.upstream.client import interactive
from vectorgate.vector_stores.events_stream import (
    EVENTS_SCHEMA,
    IDS_SCHEMA_PATTERN,
    SlotResponse,
    StreamTimings,
    find_records,
    parse_ids,
    status_events,
    stream_end,
)
from vectorgate.vector_stores.schemas import (
    Deleted,
    FileList,
    FileRecord,
    FileStatus,
    ProcessingStatus,
    UploadResponse,
    VectorStoreCreate,
    VectorStoreList,
    VectorStoreOut,
)
from vectorgate.vector_stores.service import (
    OnDuplicateQuery,
    add_file_records,
    find_or_create_upstream,
    get_file_record,
    get_vector_store,
    list_file_records,
    list_vector_stores,
    may_refresh,
    prepare_registration,
    refresh_file_record,
    save_registration,
    store_client,
    unregister_vector_store,
    upload_response,
)

router = APIRouter(
    prefix="/v1/organizations/{org_id}/vector-stores",
    tags=["vector stores"],
    dependencies=[ORGANIZATION_PATH],
    responses=documented_errors(
        OrgErrorBody, 400, 401, 403, 404, 409, 413, 415, 429, 500, 502, 504
    ),
)

_BASE64_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["filename", "content", "mime_type"],
                                "properties": {
                                    "filename": {"type": "string"},
                                    "content": {"type": "string", "format": "byte"},
                                    "mime_type": {"type": "string"},
                                    **OPTIONS_SCHEMA,
                                },
                            },
                        },
                        **OPTIONS_SCHEMA,
                    },
                }
            }
        },
    }
}

# Read after authentication, bounded (see vectorgate.limits).
VectorStoreBody = Annotated[VectorStoreCreate, json_body(VectorStoreCreate)]


@router.post("", status_code=201, openapi_extra=json_request_body(VectorStoreCreate))
async def add_vector_store(
    caller: ManageCaller, body: VectorStoreBody, session: SessionDep, resources: ResourcesDep
) -> VectorStoreOut:
    """Create a vector store at OpenAI and register it, or register an existing one."""
    # The store is in the body, so its check is here rather than in Access. A store
    # outside the key's list is answered as one OpenAI does not know.
    if body.vector_store_id is None and caller.vector_store_ids is not None:
        raise forbidden("An API key restricted to some vector stores cannot create new ones")
    if body.vector_store_id is not None and not caller.may_use_store(body.vector_store_id):
        raise not_found("Vector store not found")
    registration = await prepare_registration(
        session,
        resources.keyring,
        interactive(resources.openai, resources.settings.interactive_upstream_timeout_s),
        caller.organization_id,
        body.credential_id,
        create_name=body.name,
        vector_store_id=body.vector_store_id,
    )
    await session.close()  # give the connection back before OpenAI is asked
    store = await find_or_create_upstream(registration)
    store = await save_registration(resources.sessionmaker, registration, store, caller.actor)
    return VectorStoreOut.model_validate(store, from_attributes=True)


@router.get("")
async def list_stores(caller: ReadCaller, session: SessionDep) -> VectorStoreList:
    """List the organization's registered vector stores (those the key may use)."""
    stores = await list_vector_stores(session, caller.organization_id)
    return VectorStoreList(
        data=[
            VectorStoreOut.model_validate(s, from_attributes=True)
            for s in stores
            if caller.may_use_store(s.id)
        ]
    )


@router.get("/{vector_store_id}")
async def get_store(
    vector_store_id: PathId, caller: ReadCaller, session: SessionDep
) -> VectorStoreOut:
    """Get a registered vector store."""
    store = await get_vector_store(session, caller.organization_id, vector_store_id)
    return VectorStoreOut.model_validate(store, from_attributes=True)


@router.delete("/{vector_store_id}")
async def remove_store(
    vector_store_id: PathId,
    caller: ManageCaller,
    resources: ResourcesDep,
    delete_upstream: bool = False,
) -> Deleted:
    """Unregister a vector store; with delete_upstream=true also delete it at OpenAI."""
    await unregister_vector_store(
        resources.sessionmaker,
        resources.keyring,
        interactive(resources.openai, resources.settings.interactive_upstream_timeout_s),
        caller.organization_id,
        vector_store_id,
        caller.actor,
        delete_upstream=delete_upstream,
    )
    return Deleted(id=vector_store_id)


@router.post(
    "/{vector_store_id}/files/upload-base64",
    response_model=UploadResponse,
    openapi_extra=_BASE64_BODY,
)
async def upload_base64(
    vector_store_id: PathId,
    request: Request,
    caller: UploadOrTokenCaller,
    resources: ResourcesDep,
    on_duplicate: OnDuplicateQuery = "allow",
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    """Upload base64-encoded files; answers once they are attached, processing goes on."""
    settings = resources.settings
    reject_oversized_body(request, settings)
    async with resources.sessionmaker() as session:
        store = await get_vector_store(session, caller.organization_id, vector_store_id)
        client = await store_client(session, resources.keyring, resources.openai, store)
    body = HashingStream(request.stream(), enabled=idempotency_key is not None)
    token = caller.upload_token
    quota = TokenQuota(resources.sessionmaker, token.id) if token is not None else None
    options: FileOptions = {}

    def receive(workdir: Path, reserve: Reserve) -> AsyncIterator[StagedFile]:
        # Each file goes upstream as soon as it has arrived and passed its checks; a
        # later refusal deletes them again (SPEC 3.2: nothing of the request stays).
        return stream_base64_json(
            aiter(body),
            workdir,
            max_files=settings.max_files_per_request,
            max_body_bytes=settings.max_request_bytes,
            reserve=reserve,
            check=content_checker(resources, caller.organization_id),
            options=options,
        )

    async def handle() -> dict[str, Any]:
        async with ingest(
            request,
            resources,
            client,
            organization_id=caller.organization_id,
            credential_id=store.credential_id,
            vector_store_id=store.id,
            receive=receive,
            quota=quota,
            options=options,
            on_duplicate=on_duplicate,
            coalesce=True,
        ) as ingested:
            deadline = utcnow() + timedelta(seconds=settings.batch_timeout_s)
            records = add_file_records(
                store,
                ingested,
                deadline=deadline,
                upload_token_id=token.id if token is not None else None,
            )
        return upload_response(ingested, records).model_dump(mode="json")

    route = f"POST {request.url.path}?on_duplicate={on_duplicate}"
    return await idempotent(
        resources.sessionmaker,
        caller.organization_id,
        idempotency_key,
        route,
        body,
        handle,
        lease_s=settings.idempotency_lease_s,
    )


@router.get("/{vector_store_id}/files")
async def list_files(
    vector_store_id: PathId,
    caller: ReadCaller,
    session: SessionDep,
    status: ProcessingStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> FileList:
    """List the vector store's file records, newest first (cursor: `after` = last id)."""
    store = await get_vector_store(session, caller.organization_id, vector_store_id)
    rows, has_more = await list_file_records(
        session, store, status=status, limit=limit, after=after
    )
    data = [FileRecord.model_validate(r, from_attributes=True) for r in rows]
    return FileList(data=data, has_more=has_more, last_id=data[-1].id if data else None)


@router.get("/{vector_store_id}/files/{file_id}/status")
async def file_status(
    vector_store_id: PathId,
    file_id: PathId,
    caller: StatusCaller,
    resources: ResourcesDep,
) -> FileStatus:
    """Processing status of one file, by `vsf_` id or OpenAI `file-` id."""
    settings = resources.settings
    async with resources.sessionmaker() as session:
        store = await get_vector_store(session, caller.organization_id, vector_store_id)
        record = await get_file_record(session, store, file_id)
        token = caller.upload_token
        if token is not None and record.upload_token_id != token.id:
            # Another key's or token's file: as unknown to a token as a file that is not.
            raise not_found("File not found", file_id=file_id)
        client = None
        if may_refresh(record):
            refresh_client = interactive(resources.openai, settings.status_refresh_timeout_s)
            client = await store_client(session, resources.keyring, refresh_client, store)
    # The session is closed: OpenAI's answer is awaited without holding a connection.
    record = await refresh_file_record(resources.sessionmaker, client, store, record)
    return FileStatus.model_validate(record, from_attributes=True)


@router.get(
    "/{vector_store_id}/files/events",
    responses={
        200: {
            "description": "Server-Sent Events: `file.status` per file and per change, "
            "then `done` (or `timeout`); comment lines keep it alive",
            "content": {"text/event-stream": {"schema": EVENTS_SCHEMA}},
        }
    },
)
async def file_events(
    vector_store_id: PathId,
    caller: StatusStreamCaller,
    resources: ResourcesDep,
    ids: Annotated[
        str,
        Query(
            description="Comma-separated file ids (`vsf_` or OpenAI `file-`), 1 to 100 distinct",
            json_schema_extra={"pattern": IDS_SCHEMA_PATTERN},
        ),
    ],
) -> SlotResponse:
    """Live status of files as Server-Sent Events, until every one is final."""
    settings = resources.settings
    wanted = parse_ids(ids)
    token = caller.upload_token
    async with resources.sessionmaker() as session:
        store = await get_vector_store(session, caller.organization_id, vector_store_id)
        records = await find_records(
            session,
            caller.organization_id,
            store.id,
            wanted,
            upload_token_id=token.id if token is not None else None,
        )
    # The session is closed: the stream reads in short sessions of its own.
    slot = resources.event_streams.take(caller.organization_id, settings.max_event_streams_per_org)
    timings = StreamTimings(
        interval_s=settings.event_stream_interval_s,
        keep_alive_s=settings.event_stream_keep_alive_s,
        ends_at=stream_end(
            time.monotonic(),
            settings.batch_timeout_s,
            settings.event_stream_grace_s,
            caller.expires_at,
        ),
    )
    events = status_events(
        resources.sessionmaker, caller.organization_id, store.id, records, timings
    )
    return SlotResponse(events, slot)
