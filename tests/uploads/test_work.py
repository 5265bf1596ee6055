from __future__ import annotations

import asyncio
import threading
import time

import pytest

from vectorgate.errors import AppError
from vectorgate.uploads.work import ContentWork, check_deadline

pytestmark = pytest.mark.asyncio


def spin_until_stopped(started: threading.Event) -> None:
    """Runaway work that only a deadline check ends."""
    started.set()
    while True:
        check_deadline()
        time.sleep(0.001)


async def test_organization_over_its_share_waits_while_another_gets_a_worker_at_once() -> None:
    work = ContentWork(workers=3, per_organization=2, deadline_s=5)
    release = threading.Event()
    running: list[str] = []

    def hold(name: str) -> str:
        running.append(name)
        release.wait(5)
        return name

    try:
        greedy = [asyncio.create_task(work.run("greedy", f"g{n}", hold, f"g{n}")) for n in range(6)]
        while len(running) < 2:
            await asyncio.sleep(0.005)
        started = time.perf_counter()
        assert await work.run("victim", "v", lambda: "done") == "done"
        assert time.perf_counter() - started < 0.5
        assert len(running) == 2  # the greedy organization never held more than its share
        release.set()
        assert sorted(await asyncio.gather(*greedy)) == [f"g{n}" for n in range(6)]
    finally:
        release.set()
        work.shutdown()


async def test_runaway_work_ends_at_its_deadline_with_a_413_and_frees_the_worker() -> None:
    work = ContentWork(workers=1, per_organization=1, deadline_s=0.1)
    try:
        started = time.perf_counter()
        with pytest.raises(AppError) as info:
            await work.run("org", "loop.xlsx", spin_until_stopped, threading.Event())
        assert 0.1 <= time.perf_counter() - started < 1
        assert info.value.status == 413
        assert info.value.details == {"filename": "loop.xlsx", "deadline_s": 0.1}
        # The only worker is free again.
        assert await work.run("org", "next", lambda: 1) == 1
    finally:
        work.shutdown()


async def test_cancelled_request_stops_its_work_and_gives_back_its_share() -> None:
    work = ContentWork(workers=1, per_organization=1, deadline_s=60)
    started = threading.Event()
    try:
        task = asyncio.create_task(work.run("org", "f", spin_until_stopped, started))
        while not started.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Long before the 60 s deadline, the worker and the organization's share are free.
        async with asyncio.timeout(2):
            assert await work.run("org", "next", lambda: 2) == 2
    finally:
        work.shutdown()


async def test_outside_a_job_there_is_no_deadline() -> None:
    check_deadline()
