"""One upload request from body to file batch, shared by both upload routes.

Receive the body into a staging directory (removed on every path), take the
organization's upload slots, convert and upload the files, attach them as one batch,
and hand that to the route. If anything fails after a file reached OpenAI, every file
of the request is detached and deleted before the error goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
from fastapi import Request
from openai.types import FileObject
from openai.types.vector_stores import VectorStoreFileBatch
from starlette.requests import ClientDisconnect

from vectorgate.deps import Resources
from vectorgate.errors import bad_request, body_too_large
from vectorgate.observability import phase
from vectorgate.settings import Settings
from vectorgate.uploads.convert import to_upstream_form
from vectorgate.uploads.slots import check_capacity, upload_slots
from vectorgate.uploads.staging import StagedFile
from vectorgate.upstream.batch import create_batch
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.upstream.upload import upload_files

Receive = Callable[[Path], Awaitable[list[StagedFile]]]


@dataclass(frozen=True, slots=True)
class Ingested:
    staged: list[StagedFile]
    files: list[FileObject]  # upstream, in the order of `staged`
    batch: VectorStoreFileBatch


def reject_oversized_body(request: Request, settings: Settings) -> None:
    """413 at once for a declared Content-Length no valid upload can have."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_request_bytes:
        raise body_too_large(settings.max_request_bytes)


@asynccontextmanager
async def ingest(
    request: Request,
    resources: Resources,
    client: openai.AsyncOpenAI,
    *,
    organization_id: str,
    vector_store_id: str,
    receive: Receive,
) -> AsyncIterator[Ingested]:
    """Receive, validate and upload a request's files as one batch; undo it all on failure."""
    settings = resources.settings
    limit = settings.max_concurrent_uploads_per_org
    # Refuse before reading a byte when the organization is already full.
    await check_capacity(resources.sessionmaker, organization_id, limit=limit)
    async with resources.staging.request_dir() as workdir:
        try:
            with phase(request, "intake"):
                staged = await receive(workdir)
        except ClientDisconnect:
            raise bad_request("The client disconnected before the body was complete") from None
        async with upload_slots(
            resources.sessionmaker,
            organization_id,
            len(staged),
            limit=limit,
            lease_s=settings.upload_slot_lease_s,
        ):
            uploaded = UploadedFiles(client, vector_store_id)
            try:
                with phase(request, "upload"):
                    forms = [
                        await asyncio.to_thread(
                            to_upstream_form, f.path, f.filename, f.kind, workdir
                        )
                        for f in staged
                    ]
                    files = await upload_files(
                        client,
                        forms,
                        uploaded,
                        concurrency=settings.upstream_concurrency,
                        max_retries=settings.upstream_max_retries,
                        backoff_s=settings.retry_backoff_s,
                    )
                    batch = await create_batch(client, vector_store_id, [f.id for f in files])
                yield Ingested(staged, files, batch)
            except BaseException:
                await uploaded.discard()
                raise
