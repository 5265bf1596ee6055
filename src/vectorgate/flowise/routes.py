"""The Flowise-compatible multipart upload (SPEC 3.1): a thin adapter over the upload core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from openai.types import FileObject
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.db import utcnow, write_transaction
from vectorgate.deps import FlowiseUploadCaller, PathId, ResourcesDep
from vectorgate.errors import AppError, FlowiseErrorBody, documented_errors, not_found
from vectorgate.flowise.schemas import OpenAIFile
from vectorgate.ingest import Ingested, content_checker, ingest, reject_oversized_body
from vectorgate.observability import phase
from vectorgate.schemas import ID_PATTERN
from vectorgate.upload_tokens.service import TokenQuota
from vectorgate.uploads.idempotency import HashingStream, idempotent
from vectorgate.uploads.multipart import FILES_FIELD, receive_multipart
from vectorgate.uploads.options import OPTION_PARTS_SCHEMA
from vectorgate.uploads.staging import FileOptions, Reserve, StagedFile
from vectorgate.upstream.batch import raise_for_failures, wait_for_batch
from vectorgate.upstream.client import client_for, interactive
from vectorgate.upstream.errors import upstream_errors
from vectorgate.vector_stores.models import VectorStore, VectorStoreFile
from vectorgate.vector_stores.schemas import UploadResponse
from vectorgate.vector_stores.service import (
    OnDuplicateQuery,
    add_file_records,
    ensure_registered,
    in_request_order,
    save_finished_request,
    upload_response,
)


def flowise_file(file: FileObject, filename: str) -> dict[str, object]:
    """The upstream's file object as the Flowise answer shows it.

    `filename` is the name the file was sent with (the client's, or a converted file's),
    whatever the upstream did to it: Llama Stack rewrites non-ASCII names, and a `"` goes
    over the wire percent-encoded. Fields an OpenAI-compatible upstream leaves out
    (Llama Stack has no `status` on files) get OpenAI's values for an uploaded file.
    """
    body = file.to_dict()
    body["filename"] = filename
    body.setdefault("object", "file")
    body.setdefault("purpose", "assistants")
    body.setdefault("status", "processed")
    body.setdefault("status_details", None)
    return body


def recorded_file(record: VectorStoreFile) -> dict[str, object]:
    """A skipped duplicate's answer (SPEC 11.2): the file object of the upload it
    duplicates, as its record knows it (no call upstream)."""
    return {
        "id": record.file_id,
        "object": "file",
        "bytes": record.size,
        "created_at": int(record.created_at.timestamp()),
        "filename": record.filename,
        "purpose": "assistants",
        "status": "processed",
        "status_details": None,
    }


def wants_async(prefer: str | None) -> bool:
    """RFC 7240: `Prefer: respond-async`, among other preferences or not."""
    if prefer is None:
        return False
    return any(part.split(";")[0].strip().lower() == "respond-async" for part in prefer.split(","))


router = APIRouter(
    tags=["flowise"],
    responses=documented_errors(
        FlowiseErrorBody, 400, 401, 403, 404, 409, 413, 415, 429, 500, 502, 504
    ),
)


_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILES_FIELD],
                    "properties": {
                        FILES_FIELD: {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                        },
                        **OPTION_PARTS_SCHEMA,
                    },
                }
            }
        },
    }
}


@router.post(
    "/api/v1/openai-assistants-vector-store/{id}",
    openapi_extra=_MULTIPART_BODY,
    responses={
        200: {"model": list[OpenAIFile], "description": "The uploaded files, in order"},
        202: {
            "model": UploadResponse,
            "description": "With `Prefer: respond-async`: the batch exists, processing goes on",
        },
    },
)
async def upload_to_vector_store(
    request: Request,
    caller: FlowiseUploadCaller,
    resources: ResourcesDep,
    id: PathId,
    credential: Annotated[str, Query(pattern=ID_PATTERN)],
    on_duplicate: OnDuplicateQuery = "allow",
    idempotency_key: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Any:
    """Upload files to an OpenAI vector store and wait until they are processed."""
    settings = resources.settings
    vector_store_id = id
    reject_oversized_body(request, settings)

    token = caller.upload_token
    if token is not None and credential != token.credential_id:
        # A token uploads through its store's registered credential only; any other is
        # answered as a credential that does not exist.
        raise not_found("Credential not found", credential_id=credential)
    quota = TokenQuota(resources.sessionmaker, token.id) if token is not None else None
    async with resources.sessionmaker() as session:
        stored = await get_credential(session, caller.organization_id, credential)
    client = client_for(resources.openai, reveal_key(resources.keyring, stored), stored.base_url)
    with upstream_errors("find the vector store", not_found="Vector store not found"):
        lookup = interactive(client, settings.interactive_upstream_timeout_s)
        found = await lookup.vector_stores.retrieve(vector_store_id)
    # The files get records like the base64 route's (SPEC 11.3), in a registered store.
    await ensure_registered(
        resources.sessionmaker,
        caller.organization_id,
        vector_store_id,
        stored.id,
        getattr(found, "name", None),
        caller.actor,
    )
    token_id = token.id if token is not None else None
    body = HashingStream(request.stream(), enabled=idempotency_key is not None)
    options: FileOptions = {}
    respond_async = wants_async(prefer)

    def receive(workdir: Path, reserve: Reserve) -> AsyncIterator[StagedFile]:
        return receive_multipart(
            aiter(body),
            request.headers.get("content-type"),
            workdir,
            max_files=settings.max_files_per_request,
            max_body_bytes=settings.max_request_bytes,
            reserve=reserve,
            check=content_checker(resources, caller.organization_id),
            options=options,
        )

    # The request's files through the upload core, whichever way it answers.
    ingesting = partial(
        ingest,
        request,
        resources,
        client,
        organization_id=caller.organization_id,
        credential_id=stored.id,
        vector_store_id=vector_store_id,
        receive=receive,
        quota=quota,
        options=options,
        on_duplicate=on_duplicate,
    )

    async def handle_async() -> dict[str, Any]:
        """Answer as soon as the batch exists (202); the poller finishes (SPEC 11.3)."""
        async with ingesting() as ingested:
            store = VectorStore(
                organization_id=caller.organization_id,
                id=vector_store_id,
                credential_id=stored.id,
            )
            deadline = utcnow() + timedelta(seconds=settings.batch_timeout_s)
            records = add_file_records(store, ingested, deadline=deadline, upload_token_id=token_id)
        return upload_response(ingested, records).model_dump(mode="json")

    async def handle() -> list[dict[str, object]]:
        started: Ingested | None = None
        try:
            async with ingesting() as ingested:
                started = ingested
                if ingested.batch is not None:
                    with phase(request, "batch"):
                        batch = await wait_for_batch(
                            client, ingested.batch, timeout_s=settings.batch_timeout_s
                        )
                    names = {
                        f.id: s.filename
                        for f, s in zip(ingested.files, ingested.staged, strict=True)
                    }
                    await raise_for_failures(client, batch, names)
                ingested.then.append(partial(save_records, ingested, error_message=None))
        except AppError as error:
            if started is not None and started.batch is not None:
                # A batch existed: its files are failed, and said so.
                await asyncio.shield(failed_records(started, error.message))
            raise
        assert started is not None
        return flowise_answer(started)

    def flowise_answer(ingested: Ingested) -> list[dict[str, object]]:
        """The file objects in request order, skipped duplicates as their records know them."""
        uploaded = [
            flowise_file(f, name)
            for f, name in zip(ingested.files, ingested.sent_names, strict=True)
        ]
        return [file for file, _ in in_request_order(ingested, uploaded, recorded_file)]

    async def save_records(
        ingested: Ingested, session: AsyncSession, *, error_message: str | None
    ) -> None:
        await save_finished_request(
            session,
            caller.organization_id,
            vector_store_id,
            stored.id,
            ingested,
            error_message=error_message,
            upload_token_id=token_id,
        )

    async def failed_records(ingested: Ingested, message: str) -> None:
        async with write_transaction(resources.sessionmaker) as session:
            await save_records(ingested, session, error_message=message)

    route = f"POST {request.url.path}?credential={credential}&on_duplicate={on_duplicate}"
    if not respond_async:
        return await idempotent(
            resources.sessionmaker,
            caller.organization_id,
            idempotency_key,
            route,
            body,
            handle,
            lease_s=settings.idempotency_lease_s,
        )
    result = await idempotent(
        resources.sessionmaker,
        caller.organization_id,
        idempotency_key,
        f"{route} (respond-async)",
        body,
        handle_async,
        lease_s=settings.idempotency_lease_s,
        status=202,
    )
    # A replay is a ready response with the first answer's status.
    return result if isinstance(result, JSONResponse) else JSONResponse(result, status_code=202)
