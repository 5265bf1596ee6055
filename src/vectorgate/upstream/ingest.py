"""From staged files to one upstream file batch: convert, upload, attach."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import openai
from openai.types import FileObject
from openai.types.vector_stores import VectorStoreFileBatch

from vectorgate.settings import Settings
from vectorgate.uploads.convert import to_upstream_form
from vectorgate.uploads.staging import StagedFile
from vectorgate.upstream.batch import create_batch
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.upstream.upload import upload_files


async def send_to_vector_store(
    client: openai.AsyncOpenAI,
    vector_store_id: str,
    staged: Sequence[StagedFile],
    workdir: Path,
    uploaded: UploadedFiles,
    settings: Settings,
) -> tuple[list[FileObject], VectorStoreFileBatch]:
    """Upload `staged` (converted where OpenAI cannot index them) and attach them as one batch.

    Every file that reaches OpenAI is recorded in `uploaded`; the caller discards them
    if anything fails, here or later.
    """
    forms = [
        await asyncio.to_thread(to_upstream_form, file.path, file.filename, file.kind, workdir)
        for file in staged
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
    return files, batch
