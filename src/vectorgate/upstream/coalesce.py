"""Concurrent requests' file batches to one vector store, combined into shared calls.

OpenAI limits writes to a vector store (300 a minute) and files per batch (2,000). A
burst of single-file uploads to one store would make one batch call per request and run
into the first limit, though a batch may hold many files. So, within a worker, the batch
calls of requests with the same (organization, credential, store, options) go through a
queue, as a database groups commits: the first call goes out at once; the requests that
arrive while it is on the wire wait for it to end, then go out together in one call, and
so on. A lone request pays nothing; under a burst, the store sees about one write per
round trip, whatever the number of requests. The SDK retries a 429 on a call honouring
its `Retry-After` (the files of that call wait; later requests gather for the next).

Only the base64 route's batches are combined: the Flowise route waits for its batch and
cancels it on a timeout, which must not touch another request's files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field

from openai.types.vector_stores import VectorStoreFileBatch

# OpenAI's most files per batch.
MAX_FILES_PER_BATCH = 2000

CreateBatch = Callable[[Sequence[str]], Awaitable[VectorStoreFileBatch]]


@dataclass
class _Waiting:
    file_ids: Sequence[str]
    create: CreateBatch
    result: asyncio.Future[VectorStoreFileBatch]


@dataclass
class _Queue:
    waiting: list[_Waiting] = field(default_factory=list)
    sending: bool = False


class BatchCoalescer:
    """One per worker process (see `Resources`)."""

    def __init__(self, max_files: int = MAX_FILES_PER_BATCH) -> None:
        self.max_files = max_files
        self._queues: dict[Hashable, _Queue] = {}

    async def create(
        self, key: Hashable, file_ids: Sequence[str], create: CreateBatch
    ) -> VectorStoreFileBatch:
        """The batch holding `file_ids`, made by `create` (with other requests' files too,
        when they share `key` and arrive while a call for it is on the wire)."""
        if len(file_ids) > self.max_files:  # a request's own files never need splitting
            return await create(file_ids)
        queue = self._queues.setdefault(key, _Queue())
        waiting = _Waiting(file_ids, create, asyncio.get_running_loop().create_future())
        queue.waiting.append(waiting)
        if not queue.sending:
            queue.sending = True
            asyncio.get_running_loop().create_task(self._send(key, queue))
        try:
            return await asyncio.shield(waiting.result)
        except asyncio.CancelledError:
            if waiting in queue.waiting:
                queue.waiting.remove(waiting)  # not sent: nothing of it upstream
            elif not waiting.result.done():
                # On the wire: the caller deletes its files only once the call has ended,
                # so that it cannot fail the other requests' files with it.
                await asyncio.wait([waiting.result])
            raise

    async def _send(self, key: Hashable, queue: _Queue) -> None:
        try:
            while queue.waiting:
                taken = self._take(queue)
                ids = [file_id for w in taken for file_id in w.file_ids]
                try:
                    batch = await taken[0].create(ids)
                except BaseException as exc:
                    for w in taken:
                        if not w.result.done():
                            w.result.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for w in taken:
                        if not w.result.done():
                            w.result.set_result(batch)
        finally:
            queue.sending = False
            if not queue.waiting and self._queues.get(key) is queue:
                del self._queues[key]

    def _take(self, queue: _Queue) -> list[_Waiting]:
        taken: list[_Waiting] = []
        files = 0
        while queue.waiting and files + len(queue.waiting[0].file_ids) <= self.max_files:
            waiting = queue.waiting.pop(0)
            taken.append(waiting)
            files += len(waiting.file_ids)
        return taken
