"""Where received files wait before they go upstream: one directory per request.

Each worker process owns `<temp dir>/w-<random>/` and holds an exclusive `flock` on a
file inside it for as long as it lives. The kernel drops that lock when the process
dies, however it dies (SIGKILL included), so at start-up any `w-*` directory whose lock
can be taken belongs to a dead worker and is swept. Workers sharing one temp dir never
touch each other's live files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vectorgate.uploads.filetypes import FileKind

log = logging.getLogger(__name__)

_LOCK_NAME = ".owner.lock"

# Called with the number of body bytes received so far, before they are written: returns
# once that much temp space is reserved for the request, or raises (429) when it cannot be.
Reserve = Callable[[int], Awaitable[None]]


class ContentHash:
    """The SHA-256 of a file's content as it streams in (SPEC 11.2), mostly off the loop.

    The intake parsers run on the event loop, which is what limits a large upload's
    intake; hashing it there too costs ~0.6 ms per MiB of it. hashlib releases the GIL
    on large updates, so pieces are gathered until they reach HASH_STEP and hashed in a
    thread while the loop goes on parsing and writing. A file's steps run one after
    another (the next is handed over once the last is done), which keeps their order;
    more than MAX_PENDING waiting means the thread is behind, and the loop waits for it
    (memory stays bounded). A file under HASH_STEP never leaves the loop.
    """

    HASH_STEP = 512 * 1024
    MAX_PENDING = 2 * HASH_STEP

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        self._running: concurrent.futures.Future[None] | None = None

    def update(self, data: bytes | memoryview) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes < self.HASH_STEP:
            return
        if self._running is not None and not self._running.done():
            if self._pending_bytes < self.MAX_PENDING:
                return
            self._running.result()
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        self._running = _hashing().submit(_hash_pieces, self._sha, pieces)

    def hexdigest(self) -> str:
        if self._running is not None:
            self._running.result()  # at most one step (~0.3 ms)
            self._running = None
        _hash_pieces(self._sha, self._pending)
        self._pending, self._pending_bytes = [], 0
        return self._sha.hexdigest()


def _hash_pieces(sha: Any, pieces: list[bytes | memoryview]) -> None:
    for piece in pieces:
        sha.update(piece)


_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _hashing() -> concurrent.futures.ThreadPoolExecutor:
    """The process's hashing threads, made on first use (nothing at import time)."""
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="hash")
    return _executor


# What the intake parsers hash each file's content with; one name, so that bench/run.py
# can measure the intake without it.
content_hash = ContentHash

# A file's `attributes` and `chunking_strategy` (SPEC 11.1), validated; a key is present
# only when the client gave it (None: given as null, i.e. none).
FileOptions = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A received, validated file on local disk, ready to go upstream."""

    path: Path
    filename: str
    kind: FileKind
    size: int
    sha256: str = ""  # of the content as received, hex (computed while it streamed in)
    options: FileOptions = field(default_factory=dict)  # the file's own (base64 route)
    # The codec of text to transcode to UTF-8 before upload; None: it goes up as it is.
    encoding: str | None = None


class StagingArea:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._dir: Path | None = None
        self._lock_fd: int | None = None

    def open(self) -> int:
        """Claim this worker's directory and sweep dead workers'; returns how many were swept."""
        self.root.mkdir(parents=True, exist_ok=True)
        swept = sweep_dead_workers(self.root)
        # Lock first, then make the directory visible under its `w-` name, so a sweep
        # running in another worker can never see it unlocked.
        token = uuid.uuid4().hex
        pending = self.root / f"pending-{token}"
        pending.mkdir()
        self._lock_fd = os.open(pending / _LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._dir = pending.rename(self.root / f"w-{token}")
        return swept

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @contextlib.asynccontextmanager
    async def request_dir(self) -> AsyncIterator[Path]:
        """A fresh directory for one request, removed when the request ends, however it ends."""
        if self._dir is None:
            raise RuntimeError("staging area is not open")
        path = self._dir / f"r-{uuid.uuid4().hex}"
        path.mkdir()
        try:
            yield path
        finally:
            # Shielded so a cancelled request (client gone) still removes its files.
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, path, True))


def sweep_dead_workers(root: Path) -> int:
    swept = 0
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith("w-") and not _is_locked(entry):
            shutil.rmtree(entry, ignore_errors=True)
            swept += 1
    if swept:
        log.info("swept %d stale temp entries from %s", swept, root)
    return swept


def _is_locked(directory: Path) -> bool:
    try:
        fd = os.open(directory / _LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
