"""Uploading files to OpenAI: bounded concurrency, request order kept, whole-file retries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterable
from typing import BinaryIO

import openai
from openai.types import FileObject

from vectorgate.uploads.convert import UpstreamForm
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.upstream.errors import upstream_errors

log = logging.getLogger(__name__)

_TRANSIENT = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
_MAX_BACKOFF_S = 8.0
_MAX_RETRY_AFTER_S = 30.0
# How long an abandoned request still waits for the answer of an upload on the wire.
_SETTLE_S = 30.0


async def upload_files(
    client: openai.AsyncOpenAI,
    forms: AsyncIterable[UpstreamForm],
    uploaded: UploadedFiles,
    *,
    concurrency: int,
    max_retries: int,
    backoff_s: float,
) -> list[FileObject]:
    """Upload every form, at most `concurrency` at once; results in the order of `forms`.

    Each upload starts as soon as its form arrives, while later ones are still being
    received. Each file that reaches OpenAI is recorded in `uploaded` at once, so a
    failure of any other file, or of the producer of `forms`, can delete it again.
    """
    # The SDK's own retries would re-send an already consumed file object: retry here
    # instead, reopening the file so every attempt sends it whole.
    once = client.with_options(max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(form: UpstreamForm) -> FileObject:
        async with gate:
            with upstream_errors(f"upload {form.filename}"):
                file = await _upload_with_retries(once, form, uploaded, max_retries, backoff_s)
            await uploaded.add(file.id)
            return file

    tasks: list[asyncio.Task[FileObject]] = []
    try:
        async with asyncio.TaskGroup() as group:
            async for form in forms:
                tasks.append(group.create_task(one(form)))
    except ExceptionGroup as failures:
        # The first failure is the one to report; the group cancelled the others.
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


async def _upload_with_retries(
    client: openai.AsyncOpenAI,
    form: UpstreamForm,
    uploaded: UploadedFiles,
    max_retries: int,
    backoff_s: float,
) -> FileObject:
    attempt = 0
    while True:
        try:
            with form.path.open("rb") as body:
                return await _create(client, form, body, uploaded)
        except _TRANSIENT as exc:
            if attempt >= max_retries:
                raise
            delay = _retry_delay(exc, attempt, backoff_s)
            log.info(
                "upload of %s failed (%s), retry %d/%d in %.2fs",
                form.filename,
                type(exc).__name__,
                attempt + 1,
                max_retries,
                delay,
            )
        attempt += 1
        await asyncio.sleep(delay)


async def _create(
    client: openai.AsyncOpenAI, form: UpstreamForm, body: BinaryIO, uploaded: UploadedFiles
) -> FileObject:
    """One upload. If the request is abandoned while it is on the wire (another file
    failed, the client went away), the upstream may already hold the file: its answer is
    awaited a while longer so that the file is recorded, and deleted with the rest,
    rather than left behind unknown."""
    call = asyncio.ensure_future(
        client.files.create(file=(form.filename, body, form.mime_type), purpose="assistants")
    )
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        done, _ = await asyncio.wait({call}, timeout=_SETTLE_S)
        if call in done and not call.cancelled() and call.exception() is None:
            await uploaded.add(call.result().id)
        elif call not in done:
            call.cancel()
            log.warning(
                "abandoned the upload of %s after %ss without an answer; if the upstream "
                "kept it, it is not known here",
                form.filename,
                _SETTLE_S,
            )
        raise


def _retry_delay(exc: Exception, attempt: int, backoff_s: float) -> float:
    """Honour Retry-After when OpenAI sends one, else exponential backoff with jitter."""
    if isinstance(exc, openai.APIStatusError):
        retry_after = exc.response.headers.get("retry-after")
        try:
            if retry_after is not None:
                return min(max(float(retry_after), 0.0), _MAX_RETRY_AFTER_S)
        except ValueError:
            pass
    base = min(backoff_s * 2.0**attempt, _MAX_BACKOFF_S)
    return base * random.uniform(0.75, 1.0)  # jitter spreads retries; no crypto needed
