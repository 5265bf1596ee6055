"""The bounded executor that content checks and conversions run in.

Parsing a workbook or a JSON file is CPU work that a crafted file can make expensive, so
it never runs in the default thread pool that `asyncio.to_thread` shares with everything
else, nor in the service's own process: a thread parsing XML holds the GIL, and every
other request (another organization's 5-byte upload, `/healthz`) then waits for it at
each step, up to ten times slower in measurements. `ContentWork` owns a fixed number of
worker processes; each organization may use only a few of them at once (the rest of its
files wait their turn, so another organization's file still gets a worker at once); and
each file has a deadline.

The deadline is enforced inside the worker: the parsing loops call `check_deadline()`
between bounded steps (one chunk of XML, of text, of JSON), which raises a 413 naming
the file once its time is up. The worker is then free again, and the error ends the
request, which gives back its upload slot.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from vectorgate.errors import AppError, ErrorCode

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    filename: str
    ends_at: float  # time.monotonic() in the worker
    deadline_s: float


_current = threading.local()


def check_deadline() -> None:
    """Raise 413 if the file being worked on is past its deadline.

    Cheap enough to call once per chunk. Outside a `ContentWork` job (tests, tools) there
    is no deadline and this does nothing.
    """
    job: _Job | None = getattr(_current, "job", None)
    if job is not None and time.monotonic() > job.ends_at:
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
    """Worker processes for content checks and conversions, shared fairly by organizations."""

    def __init__(self, *, workers: int, per_organization: int, deadline_s: float) -> None:
        self._workers = workers
        self._per_organization = per_organization
        self._deadline_s = deadline_s
        self._pool = self._new_pool()
        # organization id -> (its semaphore, how many jobs hold or wait for it)
        self._organizations: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def start(self) -> None:
        """Start every worker now, so that no request waits for one to start."""
        loop = asyncio.get_running_loop()
        # Each job waits long enough that the next one finds no idle worker.
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, time.sleep, 0.2) for _ in range(self._workers))
        )

    async def run(
        self,
        organization_id: str,
        filename: str,
        fn: Callable[P, T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn(*args, **kwargs)` in a worker for `organization_id`'s file `filename`.

        `fn` and its arguments must pickle (module-level functions, paths, kinds). Waits
        while the organization already has its share of workers busy. If the caller is
        cancelled, the organization's share is given back only when the worker has
        finished (at the deadline at the latest).
        """
        semaphore = self._enter(organization_id)
        try:
            await semaphore.acquire()
        except BaseException:
            self._leave(organization_id)
            raise
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            future = loop.run_in_executor(
                pool, _run_job, filename, self._deadline_s, fn, args, kwargs
            )
        except BaseException as exc:
            semaphore.release()
            self._leave(organization_id)
            if isinstance(exc, BrokenProcessPool):
                raise self._worker_died(pool, filename) from None
            raise

        def finished(_: object) -> None:
            semaphore.release()
            self._leave(organization_id)

        future.add_done_callback(finished)
        try:
            outcome = await asyncio.shield(future)
        except BrokenProcessPool:
            raise self._worker_died(pool, filename) from None
        if isinstance(outcome, _Refusal):
            raise outcome.error()
        result: T = outcome
        return result

    def shutdown(self) -> None:
        """Stop taking jobs; running ones end at their deadline at the latest."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _worker_died(self, pool: ProcessPoolExecutor, filename: str) -> AppError:
        """A worker died (killed for memory, say): a new pool for what follows, a 500 now."""
        if pool is self._pool:  # not replaced yet by another request that saw it
            log.error("a content worker died while working on a file; restarting the pool")
            self._pool = self._new_pool()
            pool.shutdown(wait=False, cancel_futures=True)
        return AppError(
            500,
            ErrorCode.INTERNAL_ERROR,
            f"{filename}: the file's check stopped unexpectedly",
            details={"filename": filename},
        )

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: forking a process that runs an event loop and threads is not safe.
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_prepare_worker,
        )

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


@dataclass(frozen=True, slots=True)
class _Refusal:
    """An AppError carried back from a worker (its keyword arguments do not pickle)."""

    status: int
    code: ErrorCode
    message: str
    details: dict[str, Any]

    def error(self) -> AppError:
        return AppError(self.status, self.code, self.message, details=self.details)


def _prepare_worker() -> None:
    """Import what jobs use when the worker starts, not during its first file."""
    importlib.import_module("vectorgate.uploads.convert")


def _run_job(
    filename: str,
    deadline_s: float,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T | _Refusal:
    """In a worker: `fn(*args, **kwargs)` under the file's deadline."""
    _current.job = _Job(filename, time.monotonic() + deadline_s, deadline_s)
    try:
        return fn(*args, **kwargs)
    except AppError as exc:
        return _Refusal(exc.status, exc.code, exc.message, exc.details)
    finally:
        _current.job = None
