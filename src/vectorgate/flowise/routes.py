"""The Flowise-compatible multipart upload (SPEC 3.1): a thin adapter over the upload core."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.requests import ClientDisconnect

from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.deps import CallerDep, ResourcesDep
from vectorgate.errors import bad_request
from vectorgate.uploads.multipart import FILES_FIELD, body_too_large, receive_multipart
from vectorgate.uploads.slots import check_capacity, upload_slots
from vectorgate.upstream.batch import raise_for_failures, wait_for_batch
from vectorgate.upstream.client import client_for
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.upstream.errors import upstream_errors
from vectorgate.upstream.ingest import send_to_vector_store

router = APIRouter(tags=["flowise"])

_VECTOR_STORE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

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
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                }
            }
        },
    }
}


@router.post("/api/v1/openai-assistants-vector-store/{id}", openapi_extra=_MULTIPART_BODY)
async def upload_to_vector_store(
    request: Request,
    caller: CallerDep,
    resources: ResourcesDep,
    id: str,
    credential: Annotated[str | None, Query()] = None,
) -> list[dict[str, object]]:
    """Upload files to an OpenAI vector store and wait until they are processed."""
    settings = resources.settings
    vector_store_id = id
    if not _VECTOR_STORE_ID.fullmatch(vector_store_id):
        raise bad_request("Invalid vector store id: 1-128 letters, digits, '_' or '-'")
    if not credential:
        raise bad_request("Missing credential: pass ?credential=<credential id>")
    declared_length = request.headers.get("content-length", "")
    if declared_length.isdigit() and int(declared_length) > settings.max_request_bytes:
        raise body_too_large(settings.max_request_bytes)

    async with resources.sessionmaker() as session:
        stored = await get_credential(session, caller.organization_id, credential)
    client = client_for(resources.openai, reveal_key(resources.keyring, stored))
    limit = settings.max_concurrent_uploads_per_org
    await check_capacity(resources.sessionmaker, caller.organization_id, limit=limit)
    with upstream_errors("find the vector store", not_found="Vector store not found"):
        await client.vector_stores.retrieve(vector_store_id)

    async with resources.staging.request_dir() as workdir:
        try:
            staged = [
                file
                async for file in receive_multipart(
                    request.stream(),
                    request.headers.get("content-type"),
                    workdir,
                    max_files=settings.max_files_per_request,
                    max_body_bytes=settings.max_request_bytes,
                )
            ]
        except ClientDisconnect:
            raise bad_request("The client disconnected before the body was complete") from None

        async with upload_slots(
            resources.sessionmaker,
            caller.organization_id,
            len(staged),
            limit=limit,
            lease_s=settings.upload_slot_lease_s,
        ):
            uploaded = UploadedFiles(client, vector_store_id)
            try:
                files, batch = await send_to_vector_store(
                    client, vector_store_id, staged, workdir, uploaded, settings
                )
                batch = await wait_for_batch(client, batch, timeout_s=settings.batch_timeout_s)
                names = {file.id: s.filename for file, s in zip(files, staged, strict=True)}
                await raise_for_failures(client, batch, names)
            except BaseException:
                await uploaded.discard()
                raise
    return [file.to_dict() for file in files]
