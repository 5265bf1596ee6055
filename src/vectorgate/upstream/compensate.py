"""Compensation: files a failed request put upstream are detached and deleted again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import openai

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

    async def discard(self) -> None:
        """Detach every file from the vector store and delete it; never raises.

        Shielded, so a request cancelled by its client disconnecting still cleans up.
        """
        if not self.file_ids:
            return
        task = asyncio.ensure_future(self._discard_all())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task], timeout=_CLEANUP_TIMEOUT_S)
            raise

    async def _discard_all(self) -> None:
        try:
            async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
                await asyncio.gather(*(self._discard(file_id) for file_id in self.file_ids))
        except TimeoutError:
            log.error(
                "gave up deleting upstream files %s after %ss", self.file_ids, _CLEANUP_TIMEOUT_S
            )

    async def _discard(self, file_id: str) -> None:
        try:
            await self._client.vector_stores.files.delete(
                file_id, vector_store_id=self._vector_store_id
            )
        except openai.NotFoundError:
            pass  # never attached, or already detached
        except openai.OpenAIError as exc:
            log.warning("could not detach upstream file %s: %s", file_id, type(exc).__name__)
        try:
            await self._client.files.delete(file_id)
        except openai.NotFoundError:
            pass
        except openai.OpenAIError as exc:
            log.error("could not delete upstream file %s: %s", file_id, type(exc).__name__)
        else:
            log.info("deleted upstream file %s left by a failed request", file_id)
