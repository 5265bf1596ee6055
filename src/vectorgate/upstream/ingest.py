"""From staged files to one upstream file batch: convert, upload, attach, or undo it all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
from openai.types import FileObject
from openai.types.vector_stores import VectorStoreFileBatch
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.settings import Settings
from vectorgate.uploads.convert import to_upstream_form
from vectorgate.uploads.slots import upload_slots
from vectorgate.uploads.staging import StagedFile
from vectorgate.upstream.batch import create_batch
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.upstream.upload import upload_files


@dataclass(frozen=True, slots=True)
class Ingested:
    files: list[FileObject]  # in the order of the staged files
    batch: VectorStoreFileBatch


@asynccontextmanager
async def ingest(
    client: openai.AsyncOpenAI,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    organization_id: str,
    vector_store_id: str,
    staged: Sequence[StagedFile],
    workdir: Path,
) -> AsyncIterator[Ingested]:
    """Send `staged` to the vector store as one batch and hand it to the block.

    Holds the organization's upload slots throughout (429 when they are taken). If the
    upload or the block fails, every file that reached OpenAI is detached and deleted
    before the error goes on.
    """
    async with upload_slots(
        sessionmaker,
        organization_id,
        len(staged),
        limit=settings.max_concurrent_uploads_per_org,
        lease_s=settings.upload_slot_lease_s,
    ):
        uploaded = UploadedFiles(client, vector_store_id)
        try:
            forms = [
                await asyncio.to_thread(to_upstream_form, f.path, f.filename, f.kind, workdir)
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
            batch = await create_batch(client, vector_store_id, [file.id for file in files])
            yield Ingested(files, batch)
        except BaseException:
            await uploaded.discard()
            raise
