from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from vectorgate.errors import AppError
from vectorgate.uploads.work import ContentWork, check_deadline

# One pool for the module: starting worker processes is the slow part.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def spin_until_stopped() -> None:
    """Runaway work that only a deadline check ends."""
    while True:
        check_deadline()
        time.sleep(0.001)


def worker_pid() -> int:
    return os.getpid()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def work() -> AsyncIterator[ContentWork]:
    work = ContentWork(workers=3, per_organization=2, deadline_s=0.5)
    await work.start()
    yield work
    work.shutdown()


async def test_work_runs_in_worker_processes_not_in_the_service(work: ContentWork) -> None:
    assert await work.run("org", "f", worker_pid) != os.getpid()


async def test_organization_over_its_share_waits_while_another_gets_a_worker_at_once(
    work: ContentWork,
) -> None:
    started = time.perf_counter()
    greedy = [asyncio.create_task(work.run("greedy", f"g{n}", time.sleep, 0.3)) for n in range(6)]
    await asyncio.sleep(0.05)
    await work.run("victim", "v", time.sleep, 0)
    assert time.perf_counter() - started < 0.25  # a worker was free for the victim
    await asyncio.gather(*greedy)
    # Six jobs of 0.3 s, never more than two at once, although three workers exist.
    assert time.perf_counter() - started >= 0.9


async def test_runaway_work_ends_at_its_deadline_with_a_413_and_frees_the_worker(
    work: ContentWork,
) -> None:
    started = time.perf_counter()
    with pytest.raises(AppError) as info:
        await work.run("runaway", "loop.xlsx", spin_until_stopped)
    assert 0.5 <= time.perf_counter() - started < 2
    assert info.value.status == 413
    assert info.value.message == (
        "loop.xlsx: checking and converting the file took longer than the 0.5 s allowed per file"
    )
    assert info.value.details == {"filename": "loop.xlsx", "deadline_s": 0.5}
    assert await work.run("runaway", "next", time.sleep, 0) is None


async def test_cancelled_request_gives_back_its_share_when_the_worker_stops(
    work: ContentWork,
) -> None:
    tasks = [asyncio.create_task(work.run("org", "f", spin_until_stopped)) for _ in range(2)]
    await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    # Both of the organization's places come back at the deadline, not later.
    async with asyncio.timeout(2):
        assert await work.run("org", "next", time.sleep, 0) is None


async def test_outside_a_job_there_is_no_deadline() -> None:
    check_deadline()


def die() -> None:
    os._exit(1)


async def test_worker_that_dies_is_a_500_and_the_pool_is_replaced(work: ContentWork) -> None:
    with pytest.raises(AppError) as info:
        await work.run("org", "crash.xlsx", die)
    assert info.value.status == 500
    assert info.value.message == "crash.xlsx: the file's check stopped unexpectedly"
    assert await work.run("org", "next", time.sleep, 0) is None
