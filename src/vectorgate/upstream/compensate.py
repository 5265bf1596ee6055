"""Compensation: files a failed request put upstream are detached and deleted again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import openai

from vectorgate.upstream.errors import is_not_found

log = logging.getLogger(__name__)

_CLEANUP_TIMEOUT_S = 60.0


class UploadedFiles:
    """The upstream files one request created, in the order they arrived."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        vector_store_id: str,
        *,
        on_add: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._vector_store_id = vector_store_id
        self._on_add = on_add
        self.file_ids: list[str] = []

    async def add(self, file_id: str) -> None:
        """Remember a file that reached OpenAI (first, so it is deleted even if `on_add` fails)."""
        self.file_ids.append(file_id)
        if self._on_add is not None:
            await self._on_add(file_id)

    async def discard(self) -> list[str]:
        """Detach every file from the vector store and delete it; never raises.

        Returns the ids of the files now known to be gone upstream (deleted, or not found
        there). The others could not be deleted: their journal rows must stay, so that the
        sweeper tries again. Shielded, so a request cancelled by its client disconnecting
        still cleans up.
        """
        if not self.file_ids:
            return []
        task = asyncio.ensure_future(self._discard_all())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task], timeout=_CLEANUP_TIMEOUT_S)
            raise

    async def _discard_all(self) -> list[str]:
        try:
            async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                gone = await asyncio.gather(*(self._discard(f) for f in self.file_ids))
        except TimeoutError:
            log.error(
                "gave up deleting upstream files %s after %ss; the sweeper retries",
                self.file_ids,
                _CLEANUP_TIMEOUT_S,
            )
            return []
        return [file_id for file_id, ok in zip(self.file_ids, gone, strict=True) if ok]

    async def _discard(self, file_id: str) -> bool:
        return await delete_upstream_file(self._client, self._vector_store_id, file_id)


async def delete_upstream_file(
    client: openai.AsyncOpenAI, vector_store_id: str, file_id: str
) -> bool:
    """Detach `file_id` from the store and delete it; True once it is known to be gone.

    Deleting the file is what counts (OpenAI drops a deleted file from its stores); the
    detach first only stops it from being searched meanwhile, so its failure is logged
    and the delete attempted anyway.
    """
    try:
        await client.vector_stores.files.delete(file_id, vector_store_id=vector_store_id)
    except openai.OpenAIError as exc:
        if not is_not_found(exc):
            log.warning("could not detach upstream file %s: %s", file_id, type(exc).__name__)
    try:
        await client.files.delete(file_id)
    except openai.OpenAIError as exc:
        if not is_not_found(exc):
            log.warning("could not delete upstream file %s: %s", file_id, type(exc).__name__)
            return False
    return True
