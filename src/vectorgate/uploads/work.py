"""The bounded executor that content checks and conversions run in.

Parsing a workbook or a JSON file is CPU work that can be made arbitrarily expensive by
a crafted file, so it never runs in the default thread pool that `asyncio.to_thread`
shares with everything else. `ContentWork` owns a fixed number of worker threads; each
organization may use only a few of them at once (the rest wait their turn, so another
organization's file still gets a worker at once); and each file has a deadline.

Threads cannot be killed, so the deadline is cooperative: the parsing loops call
`check_deadline()` between bounded steps (one chunk of XML, of text, of JSON), which
raises a 413 naming the file once its time is up or its request has gone away. The
worker is then free again, and the error ends the request, which gives back its slot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from vectorgate.errors import AppError, ErrorCode

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    filename: str
    deadline_s: float
    ends_at: float = 0.0  # monotonic; set when a worker starts the job
    abandoned: threading.Event = field(default_factory=threading.Event)


_current = threading.local()


def check_deadline() -> None:
    """Raise 413 if the file being worked on is past its deadline or no longer wanted.

    Cheap enough to call once per chunk. Outside a `ContentWork` job (tests, tools) there
    is no deadline and this does nothing.
    """
    job: _Job | None = getattr(_current, "job", None)
    if job is None:
        return
    if job.abandoned.is_set() or time.monotonic() > job.ends_at:
        raise deadline_exceeded(job.filename, job.deadline_s)


def deadline_exceeded(filename: str, deadline_s: float) -> AppError:
    return AppError(
        413,
        ErrorCode.FILE_TOO_LARGE,
        f"{filename}: checking and converting the file took longer than the "
        f"{deadline_s:g} s allowed per file",
        details={"filename": filename, "deadline_s": deadline_s},
    )


class ContentWork:
    """Worker threads for content checks and conversions, shared fairly by organizations."""

    def __init__(self, *, workers: int, per_organization: int, deadline_s: float) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="content")
        self._per_organization = per_organization
        self._deadline_s = deadline_s
        # organization id -> (its semaphore, how many jobs hold or wait for it)
        self._organizations: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def run(
        self,
        organization_id: str,
        filename: str,
        fn: Callable[P, T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn(*args, **kwargs)` in a worker for `organization_id`'s file `filename`.

        Waits while the organization already has its share of workers busy. If the caller
        is cancelled, the job is told to stop at its next deadline check; the
        organization's share is given back only when the worker has really finished.
        """
        job = _Job(filename, self._deadline_s)
        semaphore = self._enter(organization_id)
        try:
            await semaphore.acquire()
        except BaseException:
            self._leave(organization_id)
            raise
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, _run_job, job, lambda: fn(*args, **kwargs))

        def finished(_: object) -> None:
            semaphore.release()
            self._leave(organization_id)

        future.add_done_callback(finished)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            job.abandoned.set()
            raise

    def shutdown(self) -> None:
        """Stop taking jobs; running ones end at their next deadline check at the latest."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _enter(self, organization_id: str) -> asyncio.Semaphore:
        semaphore, users = self._organizations.get(
            organization_id, (asyncio.Semaphore(self._per_organization), 0)
        )
        self._organizations[organization_id] = (semaphore, users + 1)
        return semaphore

    def _leave(self, organization_id: str) -> None:
        semaphore, users = self._organizations[organization_id]
        if users == 1:
            del self._organizations[organization_id]
        else:
            self._organizations[organization_id] = (semaphore, users - 1)


def _run_job(job: _Job, call: Callable[[], T]) -> T:
    job.ends_at = time.monotonic() + job.deadline_s
    _current.job = job
    try:
        check_deadline()  # abandoned while it waited for a worker
        return call()
    finally:
        _current.job = None
