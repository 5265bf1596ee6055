"""The batch coalescer: concurrent requests' batches to one store share calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from openai.types.vector_stores import VectorStoreFileBatch

from vectorgate.upstream.coalesce import BatchCoalescer

pytestmark = pytest.mark.asyncio


class Upstream:
    """Records each batch call; each takes `delay_s`, the n-th in `fail_on` fails."""

    def __init__(self, delay_s: float = 0.05, fail_on: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on

    async def create(self, ids: Sequence[str]) -> VectorStoreFileBatch:
        self.calls.append(list(ids))
        number = len(self.calls)
        await asyncio.sleep(self.delay_s)
        if number == self.fail_on:
            raise RuntimeError(f"call {number} failed")
        return VectorStoreFileBatch.model_construct(id=f"vsfb_{number}", file_counts=None)


async def test_a_lone_request_makes_its_own_call_at_once() -> None:
    upstream, coalescer = Upstream(), BatchCoalescer()
    batch = await coalescer.create("store", ["file-1"], upstream.create)
    assert batch.id == "vsfb_1"
    assert upstream.calls == [["file-1"]]


async def test_requests_arriving_during_a_call_share_the_next_one() -> None:
    upstream, coalescer = Upstream(), BatchCoalescer()
    first = asyncio.create_task(coalescer.create("store", ["file-0"], upstream.create))
    await asyncio.sleep(0.01)  # the first call is on the wire
    rest = [
        asyncio.create_task(coalescer.create("store", [f"file-{i}"], upstream.create))
        for i in range(1, 30)
    ]
    batches = await asyncio.gather(first, *rest)
    assert upstream.calls == [["file-0"], [f"file-{i}" for i in range(1, 30)]]
    assert {b.id for b in batches[1:]} == {"vsfb_2"}


async def test_other_keys_never_share_a_call() -> None:
    upstream, coalescer = Upstream(), BatchCoalescer()
    await asyncio.gather(
        coalescer.create("store-a", ["a"], upstream.create),
        coalescer.create("store-b", ["b"], upstream.create),
    )
    assert sorted(upstream.calls) == [["a"], ["b"]]


async def test_a_call_holds_at_most_max_files() -> None:
    upstream, coalescer = Upstream(), BatchCoalescer(max_files=5)
    first = asyncio.create_task(coalescer.create("s", ["x"], upstream.create))
    await asyncio.sleep(0.01)
    rest = [
        asyncio.create_task(coalescer.create("s", [f"f{i}", f"g{i}"], upstream.create))
        for i in range(4)
    ]
    await asyncio.gather(first, *rest)
    assert [len(c) for c in upstream.calls] == [1, 4, 4]


async def test_a_failed_call_fails_its_requests_only() -> None:
    upstream, coalescer = Upstream(fail_on=2), BatchCoalescer()
    first = asyncio.create_task(coalescer.create("s", ["a"], upstream.create))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(coalescer.create("s", ["b"], upstream.create))
    assert (await first).id == "vsfb_1"
    with pytest.raises(RuntimeError, match="call 2 failed"):
        await second
    assert (await coalescer.create("s", ["c"], upstream.create)).id == "vsfb_3"


async def test_a_request_cancelled_while_waiting_is_left_out_of_the_call() -> None:
    upstream, coalescer = Upstream(), BatchCoalescer()
    first = asyncio.create_task(coalescer.create("s", ["a"], upstream.create))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(coalescer.create("s", ["gone"], upstream.create))
    kept = asyncio.create_task(coalescer.create("s", ["kept"], upstream.create))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(first, kept)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert upstream.calls == [["a"], ["kept"]]


async def test_a_request_cancelled_while_its_call_is_on_the_wire_waits_for_the_call() -> None:
    upstream, coalescer = Upstream(delay_s=0.2), BatchCoalescer()
    task = asyncio.create_task(coalescer.create("s", ["a"], upstream.create))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # It returned only once the call had ended: the caller may now delete its files.
    assert len(upstream.calls) == 1
    assert coalescer._queues == {}
