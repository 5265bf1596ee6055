"""One upload request from body to file batch, shared by both upload routes.

Receive the body into a staging directory (removed on every path), take the
organization's upload slots, convert and upload the files, attach them as one batch,
and hand that to the route. If anything fails after a file reached OpenAI, every file
of the request is detached and deleted before the error goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import openai
from fastapi import Request
from openai.types import FileObject
from openai.types.vector_stores import VectorStoreFileBatch
from starlette.requests import ClientDisconnect

from vectorgate.db import write_transaction
from vectorgate.deps import Resources
from vectorgate.errors import bad_request, body_too_large
from vectorgate.limits import ensure_free_space
from vectorgate.observability import phase
from vectorgate.settings import Settings
from vectorgate.uploads.convert import UpstreamForm, to_upstream_form
from vectorgate.uploads.slots import UploadSlots, check_capacity
from vectorgate.uploads.staging import StagedFile
from vectorgate.upstream import journal as upstream_journal
from vectorgate.upstream.batch import create_batch
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.upstream.upload import upload_files

# Yields each file of the body as soon as it has fully arrived and passed its checks.
Receive = Callable[[Path], AsyncIterator[StagedFile]]


@dataclass(frozen=True, slots=True)
class Ingested:
    staged: list[StagedFile]
    files: list[FileObject]  # upstream, in the order of `staged`
    batch: VectorStoreFileBatch
    # Rows the route keeps; saved in the request's last transaction, with the slots given
    # back and the journal settled (one SQLite write instead of three).
    to_save: list[object] = field(default_factory=list)


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
    credential_id: str,
    vector_store_id: str,
    receive: Receive,
) -> AsyncIterator[Ingested]:
    """Receive, validate and upload a request's files as one batch; undo it all on failure.

    Each file starts uploading as soon as it has arrived, while the rest of the body is
    still coming in. It takes its upload slot first, so an organization over its limit
    gets a 429 and anything this request had already uploaded is deleted again.
    """
    settings = resources.settings
    limit = settings.max_concurrent_uploads_per_org
    ensure_free_space(settings.resolved_temp_dir, settings.min_free_disk_bytes)  # else 507
    # Refuse before reading a byte when the organization is already full.
    await check_capacity(resources.sessionmaker, organization_id, limit=limit)
    staged: list[StagedFile] = []
    async with (
        resources.staging.request_dir() as workdir,
        UploadSlots(
            resources.sessionmaker,
            organization_id,
            limit=limit,
            lease_s=settings.upload_slot_lease_s,
        ) as slots,
    ):

        async def journal(file_id: str) -> None:
            await upstream_journal.record(
                resources.sessionmaker,
                file_id=file_id,
                organization_id=organization_id,
                credential_id=credential_id,
                vector_store_id=vector_store_id,
                slot_id=slots.latest_id,
            )

        uploaded = UploadedFiles(client, vector_store_id, on_add=journal)

        async def forms() -> AsyncIterator[UpstreamForm]:
            try:
                with phase(request, "intake"):
                    async for file in receive(workdir):
                        staged.append(file)
                        await slots.take(1)
                        yield await asyncio.to_thread(
                            to_upstream_form, file.path, file.filename, file.kind, workdir
                        )
            except ClientDisconnect:
                raise bad_request("The client disconnected before the body was complete") from None

        async def finish(to_save: list[object]) -> None:
            """The request's last write: what it keeps, its journal settled, slots back."""
            async with write_transaction(resources.sessionmaker) as session:
                session.add_all(to_save)
                await upstream_journal.settle(session, uploaded.file_ids)
                await slots.give_back(session)

        try:
            with phase(request, "upload"):
                files = await upload_files(
                    client,
                    forms(),
                    uploaded,
                    concurrency=settings.upstream_concurrency,
                    max_retries=settings.upstream_max_retries,
                    backoff_s=settings.retry_backoff_s,
                )
                batch = await create_batch(client, vector_store_id, [f.id for f in files])
            ingested = Ingested(staged, files, batch)
            yield ingested
            await finish(ingested.to_save)
        except BaseException:
            await uploaded.discard()
            if uploaded.file_ids:  # else nothing to settle; UploadSlots gives back any slots
                await asyncio.shield(finish([]))
            raise
