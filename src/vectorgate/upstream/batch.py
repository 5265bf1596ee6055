"""One file batch per request: create it, poll it to the end under a deadline, report failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import openai
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch

from vectorgate.errors import AppError, ErrorCode
from vectorgate.upstream.errors import upstream_errors

log = logging.getLogger(__name__)

_DEFAULT_POLL_S = 1.0
_MIN_POLL_S = 0.05
_MAX_POLL_S = 5.0


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a file was given (None values left out: none for that file)."""
    return {k: v for k, v in options.items() if v is not None}


def shared_options(options: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The options every file has, or None when they differ from file to file."""
    each = [given(o) for o in options]
    return each[0] if all(g == each[0] for g in each) else None


async def create_batch(
    client: openai.AsyncOpenAI,
    vector_store_id: str,
    file_ids: Sequence[str],
    options: Sequence[Mapping[str, Any]],
) -> VectorStoreFileBatch:
    """One batch of the files `file_ids`, each with its `options` (attributes, chunking
    strategy).

    When every file has the same options (always so on the multipart route), they go as
    `file_ids` with the options at the top level, which OpenAI applies to every file and
    which Llama Stack, whose batches take no `files`, understands too. Files with
    different options go as per-file entries (`files: [...]`), which OpenAI takes.
    """
    with upstream_errors("create the file batch", not_found="Vector store not found"):
        batches = client.vector_stores.file_batches
        shared = shared_options(options) if file_ids else {}
        if shared is not None:
            return await batches.create(vector_store_id, file_ids=list(file_ids), **shared)
        entries: list[Any] = [
            {"file_id": file_id, **given(o)} for file_id, o in zip(file_ids, options, strict=True)
        ]
        return await batches.create(vector_store_id, files=entries)


async def wait_for_batch(
    client: openai.AsyncOpenAI, batch: VectorStoreFileBatch, *, timeout_s: float
) -> VectorStoreFileBatch:
    """Poll until the batch leaves `in_progress`; past `timeout_s` cancel it and answer 504.

    Polls as often as OpenAI's `openai-poll-after-ms` header asks, within sane bounds.
    """
    try:
        async with asyncio.timeout(timeout_s):
            while batch.status == "in_progress":
                with upstream_errors("poll the file batch"):
                    raw = await client.vector_stores.file_batches.with_raw_response.retrieve(
                        batch.id, vector_store_id=batch.vector_store_id
                    )
                batch = raw.parse()
                if batch.status == "in_progress":
                    await asyncio.sleep(poll_interval(raw.headers))
    except TimeoutError:
        await _cancel(client, batch)
        raise AppError(
            504,
            ErrorCode.BATCH_TIMEOUT,
            f"File batch {batch.id} did not finish within {timeout_s:g}s and was cancelled",
        ) from None
    return batch


def poll_interval(headers: Mapping[str, str]) -> float:
    try:
        seconds = int(headers["openai-poll-after-ms"]) / 1000
    except (KeyError, ValueError):
        return _DEFAULT_POLL_S
    return min(max(seconds, _MIN_POLL_S), _MAX_POLL_S)


async def _cancel(client: openai.AsyncOpenAI, batch: VectorStoreFileBatch) -> None:
    try:
        await asyncio.shield(
            client.vector_stores.file_batches.cancel(
                batch.id, vector_store_id=batch.vector_store_id
            )
        )
    except openai.OpenAIError as exc:
        log.warning("could not cancel file batch %s: %s", batch.id, type(exc).__name__)


async def raise_for_failures(
    client: openai.AsyncOpenAI, batch: VectorStoreFileBatch, filenames: Mapping[str, str]
) -> None:
    """A batch that failed, was cancelled, or lost any file answers 500 naming each file."""
    counts = batch.file_counts
    if batch.status == "completed" and counts.failed == 0 and counts.cancelled == 0:
        return
    failed = await _unsuccessful_files(client, batch)
    parts = [_describe(file, filenames) for file in failed]
    detail = "; ".join(parts) if parts else "no file-level error was reported"
    raise AppError(
        500,
        ErrorCode.BATCH_FAILED,
        f"File batch {batch.id} ended {batch.status}: {detail}",
        details={"batch_id": batch.id, "status": batch.status},
    )


async def _unsuccessful_files(
    client: openai.AsyncOpenAI, batch: VectorStoreFileBatch
) -> list[VectorStoreFile]:
    files: list[VectorStoreFile] = []
    try:
        for status in ("failed", "cancelled"):
            async for file in client.vector_stores.file_batches.list_files(
                batch.id, vector_store_id=batch.vector_store_id, filter=status
            ):
                files.append(file)
    except openai.OpenAIError as exc:
        log.warning("could not list the files of batch %s: %s", batch.id, type(exc).__name__)
    return files


def _describe(file: VectorStoreFile, filenames: Mapping[str, str]) -> str:
    return f"{filenames.get(file.id, file.id)} ({file.id}): {failure_reason(file)}"


def failure_reason(file: VectorStoreFile) -> str:
    """Why an upstream file ended `failed` or `cancelled`, in the upstream's own words.

    Some OpenAI-compatible upstreams (Llama Stack) fail files without `last_error`
    (SPEC 12): that is said too, rather than nothing.
    """
    if file.last_error is None:
        return f"{file.status} upstream without a reason given"
    return f"{file.status}: {file.last_error.code}: {file.last_error.message}"
