"""One upload request from body to file batch, shared by both upload routes.

Receive the body into a staging directory (removed on every path), take the
organization's upload slots, convert and upload the files, attach them as one batch,
and hand that to the route. If anything fails after a file reached OpenAI, every file
of the request is detached and deleted before the error goes on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

import openai
from fastapi import Request
from openai.types import FileObject
from openai.types.vector_stores import VectorStoreFileBatch
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect

from vectorgate.db import write_transaction
from vectorgate.deps import Resources
from vectorgate.errors import bad_request, body_too_large
from vectorgate.limits import ensure_free_space
from vectorgate.observability import phase
from vectorgate.settings import Settings
from vectorgate.upload_tokens.service import TokenQuota
from vectorgate.uploads.convert import UpstreamForm, needs_conversion, to_upstream_form
from vectorgate.uploads.filetypes import FileKind, NotCheap, cheap_to_check, check_content
from vectorgate.uploads.slots import UploadSlots
from vectorgate.uploads.staging import FileOptions, Reserve, StagedFile
from vectorgate.upstream import journal as upstream_journal
from vectorgate.upstream.batch import create_batch, shared_options
from vectorgate.upstream.coalesce import BatchCoalescer
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.upstream.upload import upload_files
from vectorgate.vector_stores.duplicates import OnDuplicate, Skipper
from vectorgate.vector_stores.models import VectorStoreFile

# Yields each file of the body as soon as it has fully arrived and passed its checks,
# reserving temp space before writing any of it.
Receive = Callable[[Path, Reserve], AsyncIterator[StagedFile]]


@dataclass(frozen=True, slots=True)
class Ingested:
    staged: list[StagedFile]  # the files uploaded, in request order
    files: list[FileObject]  # upstream, in the order of `staged`
    # The names the files were sent upstream with: the client's, or a converted file's
    # (`table.csv.txt`), whatever the upstream then made of them.
    sent_names: list[str]
    # What went with each file of `staged` into the batch (SPEC 11.1).
    options: list[FileOptions]
    batch: VectorStoreFileBatch | None  # None when every file was a skipped duplicate
    # Every file received, in request order: `staged` and the skipped duplicates.
    received: list[StagedFile]
    # Position in `received` -> the record a skipped file duplicates, or the position of
    # the earlier file of this request it repeats (SPEC 11.2's `skip`).
    duplicates: dict[int, VectorStoreFile | int]
    replace: bool  # on_duplicate=replace: the records replace older ones once completed
    # Rows the route keeps; saved in the request's last transaction, with the slots given
    # back and the journal settled (one SQLite write instead of three).
    to_save: list[object] = field(default_factory=list)
    # Writes that need the session (rows with the events they raise), in the same
    # transaction, after `to_save`.
    then: list[Callable[[AsyncSession], Awaitable[object]]] = field(default_factory=list)


def declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


def content_checker(
    resources: Resources, organization_id: str
) -> Callable[[StagedFile], Awaitable[StagedFile]]:
    """Check a received file's content in the bounded executor, as `organization_id`.

    Returns the file to go on with: the same, or with the encoding to transcode it from.
    A small file is checked on the spot: that costs less than the trip to a worker.
    """

    async def check(file: StagedFile) -> StagedFile:
        if cheap_to_check(file.kind, file.size):
            with suppress(NotCheap):  # else text to detect the encoding of: a worker's job
                return _with_encoding(file, check_content(*_check_args(file), quick=True))
        encoding = await resources.content_work.run(
            organization_id, file.filename, check_content, *_check_args(file)
        )
        return _with_encoding(file, encoding)

    return check


def _check_args(file: StagedFile) -> tuple[Path, FileKind, str]:
    return file.path, file.kind, file.filename


def _with_encoding(file: StagedFile, encoding: str | None) -> StagedFile:
    return file if encoding is None else replace(file, encoding=encoding)


async def new_batch(
    coalescer: BatchCoalescer | None,
    key: tuple[str, ...],
    client: openai.AsyncOpenAI,
    vector_store_id: str,
    file_ids: list[str],
    options: list[FileOptions],
) -> VectorStoreFileBatch:
    """The request's batch: its own, or one shared with concurrent requests of the same
    store whose files carry the same options (`coalescer`)."""
    shared = shared_options(options)
    if coalescer is None or shared is None:
        return await create_batch(client, vector_store_id, file_ids, options)
    return await coalescer.create(
        (*key, json.dumps(shared, sort_keys=True)),
        file_ids,
        lambda ids: create_batch(client, vector_store_id, ids, [shared] * len(ids)),
    )


def reject_oversized_body(request: Request, settings: Settings) -> None:
    """413 at once for a declared Content-Length no valid upload can have."""
    declared = declared_length(request)
    if declared is not None and declared > settings.max_request_bytes:
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
    quota: TokenQuota | None = None,
    options: FileOptions | None = None,
    on_duplicate: OnDuplicate = "allow",
    coalesce: bool = False,
) -> AsyncIterator[Ingested]:
    """Receive, validate and upload a request's files as one batch; undo it all on failure.

    Each file starts uploading as soon as it has arrived, while the rest of the body is
    still coming in. It takes its upload slot first, so an organization over its limit
    gets a 429 and anything this request had already uploaded is deleted again. The
    body's bytes are reserved against the organization's temp space before they are
    written, with the same outcome when there is none left. A request with an upload
    token holds each file against the token's `max_files` (`quota`) before it takes its
    slot, so a request over it is a 403 TOKEN_EXHAUSTED and leaves nothing upstream; a
    failed request gives its files back to the token.

    `options` holds the request's `attributes` / `chunking_strategy` (SPEC 11.1), which
    `receive` may still fill in after the first files: they are read when the batch is
    created, each file's own replacing them key by key. With `on_duplicate="skip"` a
    file that duplicates a record (or an earlier file of the request) is not uploaded
    (see vector_stores/duplicates.py). With `coalesce`, the batch call may be shared
    with concurrent requests to the same store (see upstream/coalesce.py).
    """
    settings = resources.settings
    ensure_free_space(settings.resolved_temp_dir, settings.min_free_disk_bytes)  # else 507
    convert_to_text = frozenset(settings.convert_to_text)
    staged: list[StagedFile] = []
    received: list[StagedFile] = []
    duplicates: dict[int, VectorStoreFile | int] = {}
    sent_names: list[str] = []
    request_options: FileOptions = options if options is not None else {}
    async with (
        resources.staging.request_dir() as workdir,
        UploadSlots(
            resources.sessionmaker,
            organization_id,
            limit=settings.max_concurrent_uploads_per_org,
            lease_s=settings.upload_slot_lease_s,
            staged_cap=settings.resolved_max_staged_bytes_per_org,
            max_body_bytes=settings.max_request_bytes,
        ) as slots,
    ):
        # Refuse before reading a byte when the organization is already full (files in
        # flight, or temp space); else reserve the space the body declares.
        await slots.open(declared_length(request))

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
        skipper = (
            Skipper(
                resources.sessionmaker,
                organization_id,
                vector_store_id,
                wait_s=settings.duplicate_wait_s,
            )
            if on_duplicate == "skip"
            else None
        )

        async def forms() -> AsyncIterator[UpstreamForm]:
            try:
                with phase(request, "intake"):
                    async for file in receive(workdir, slots.cover):
                        received.append(file)
                        if quota is not None:  # an upload token holds each file
                            await quota.cover(len(received))
                        await slots.take(1)
                        if skipper is not None:
                            position = len(received) - 1
                            duplicate = await skipper.check(file, position, slots.latest_id)
                            if duplicate is not None:
                                duplicates[position] = duplicate
                                continue
                        staged.append(file)
                        args = (file.path, file.filename, file.kind, workdir, convert_to_text)
                        if not needs_conversion(file.kind, convert_to_text, file.encoding):
                            form = to_upstream_form(*args)  # the file itself: no work
                        else:
                            form = await resources.content_work.run(
                                organization_id,
                                file.filename,
                                to_upstream_form,
                                *args,
                                encoding=file.encoding,
                            )
                        sent_names.append(form.filename)
                        yield form
            except ClientDisconnect:
                raise bad_request("The client disconnected before the body was complete") from None

        async def finish(
            to_save: list[object],
            settled: list[str],
            then: list[Callable[[AsyncSession], Awaitable[object]]],
        ) -> None:
            """The request's last write: what it keeps, its journal settled, slots back."""
            async with write_transaction(resources.sessionmaker) as session:
                session.add_all(to_save)
                for write in then:
                    await write(session)
                await upstream_journal.settle(session, settled)
                if skipper is not None:
                    await skipper.release(session)
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
                sent_options = [{**request_options, **file.options} for file in staged]
                batch = None
                if files:
                    batch = await new_batch(
                        resources.batches if coalesce else None,
                        (organization_id, credential_id, vector_store_id),
                        client,
                        vector_store_id,
                        [f.id for f in files],
                        sent_options,
                    )
            ingested = Ingested(
                staged,
                files,
                sent_names,
                sent_options,
                batch,
                received,
                duplicates,
                replace=on_duplicate == "replace",
            )
            yield ingested
            await finish(ingested.to_save, uploaded.file_ids, ingested.then)
        except BaseException:
            # Only files known to be gone are settled; a failed delete keeps its journal
            # row, and the sweeper retries it once this request's slots are given back.
            deleted = await uploaded.discard()
            if uploaded.file_ids or (skipper is not None and skipper.claimed):
                # Else nothing to settle; UploadSlots gives back any slots.
                await asyncio.shield(finish([], deleted, []))
            if quota is not None:
                await quota.give_back_shielded()
            raise
