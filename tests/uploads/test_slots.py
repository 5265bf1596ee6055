from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import CLI
from vectorgate.db import create_engine, create_sessionmaker, utcnow
from vectorgate.errors import AppError
from vectorgate.organizations.service import create_organization
from vectorgate.uploads.models import UploadSlot
from vectorgate.uploads.slots import (
    SMALL_BODIES_PER_ORG,
    SMALL_BODY_BYTES,
    STAGING_STEP,
    UploadSlots,
    check_capacity,
    files_in_flight,
    staged_bytes,
    upload_slots,
)

pytestmark = pytest.mark.asyncio

MB = SMALL_BODY_BYTES  # a body over this much is reserved in the database


async def new_org(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker() as session, session.begin():
        return (await create_organization(session, "slots", CLI)).id


async def test_limit_holds_under_concurrent_acquirers(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    org = await new_org(sessionmaker)
    limit, holding, peak = 5, 0, 0
    refusals: list[AppError] = []
    # Separate engines stand in for separate worker processes.
    engines = [create_engine(database_url) for _ in range(4)]
    makers = [create_sessionmaker(engine) for engine in engines]
    release = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal holding, peak
        try:
            async with upload_slots(makers[i % 4], org, 2, limit=limit, lease_s=30):
                holding += 2
                peak = max(peak, holding)
                await release.wait()
                holding -= 2
        except AppError as exc:
            refusals.append(exc)

    tasks = [asyncio.create_task(one(i)) for i in range(8)]
    await asyncio.sleep(1.0)
    release.set()
    await asyncio.gather(*tasks)
    for engine in engines:
        await engine.dispose()
    assert peak == 4  # two holders of 2 fit under 5; a third would not
    assert len(refusals) == 6
    assert all(exc.status == 429 and exc.headers["Retry-After"] for exc in refusals)
    async with sessionmaker() as session:
        assert await files_in_flight(session, org) == 0


async def test_slots_are_released_when_the_block_raises(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    with pytest.raises(RuntimeError):
        async with upload_slots(sessionmaker, org, 3, limit=3, lease_s=30):
            raise RuntimeError("upload failed")
    async with upload_slots(sessionmaker, org, 3, limit=3, lease_s=30):
        with pytest.raises(AppError):
            await check_capacity(sessionmaker, org, limit=3)


async def test_expired_slots_of_a_dead_worker_free_themselves(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    async with sessionmaker() as session, session.begin():
        session.add(
            UploadSlot(
                id="slot_dead",
                organization_id=org,
                files=3,
                expires_at=utcnow() + timedelta(seconds=60),
            )
        )
    with pytest.raises(AppError):
        await check_capacity(sessionmaker, org, limit=3)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(UploadSlot)
            .where(UploadSlot.id == "slot_dead")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await check_capacity(sessionmaker, org, limit=3)
    async with upload_slots(sessionmaker, org, 3, limit=3, lease_s=30):
        pass


async def test_held_slots_are_renewed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    org = await new_org(sessionmaker)
    async with upload_slots(sessionmaker, org, 1, limit=3, lease_s=0.3):
        await asyncio.sleep(0.8)  # well past the first lease
        async with sessionmaker() as session:
            assert await files_in_flight(session, org) == 1


def request_of(
    sessionmaker: async_sessionmaker[AsyncSession], org: str, *, cap: int, lease_s: float = 30
) -> UploadSlots:
    return UploadSlots(
        sessionmaker, org, limit=10, lease_s=lease_s, staged_cap=cap, max_body_bytes=cap
    )


async def held(sessionmaker: async_sessionmaker[AsyncSession], org: str) -> int:
    async with sessionmaker() as session:
        return await staged_bytes(session, org)


async def test_staging_reservations_hold_the_cap_and_are_given_back(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    async with request_of(sessionmaker, org, cap=1000 * MB) as first:
        await first.open(600 * MB)
        async with request_of(sessionmaker, org, cap=1000 * MB) as second:
            with pytest.raises(AppError) as caught:
                await second.open(401 * MB)
            assert (caught.value.status, caught.value.code) == (429, "RATE_LIMITED")
            assert caught.value.headers["Retry-After"]
            assert caught.value.details == {"max_staged_bytes": 1000 * MB}
            await second.open(400 * MB)  # exactly what is left
            assert await held(sessionmaker, org) == 1000 * MB
        assert await held(sessionmaker, org) == 600 * MB
    assert await held(sessionmaker, org) == 0
    async with request_of(sessionmaker, org, cap=1000 * MB) as whole:
        await whole.open(1000 * MB)


async def test_a_body_larger_than_the_cap_is_413_before_anything_is_reserved(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    async with request_of(sessionmaker, org, cap=1000 * MB) as slots:
        with pytest.raises(AppError) as caught:
            await slots.open(1001 * MB)
        assert caught.value.status == 413
        assert f"{1000 * MB} bytes" in caught.value.message
    assert await held(sessionmaker, org) == 0


async def test_a_chunked_body_reserves_in_steps_and_stops_at_the_cap(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    cap = 5 * STAGING_STEP
    async with request_of(sessionmaker, org, cap=cap) as slots:
        await slots.open(None)
        assert await held(sessionmaker, org) == STAGING_STEP
        await slots.cover(STAGING_STEP)  # covered already: no write
        await slots.cover(STAGING_STEP + 1)
        assert await held(sessionmaker, org) == 2 * STAGING_STEP
        await slots.cover(cap)
        assert await held(sessionmaker, org) == cap
        async with request_of(sessionmaker, org, cap=cap) as other:
            with pytest.raises(AppError) as caught:
                await other.open(None)
            assert caught.value.status == 429
    assert await held(sessionmaker, org) == 0


async def test_concurrent_reservations_on_several_workers_never_pass_the_cap(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    org = await new_org(sessionmaker)
    engines = [create_engine(database_url) for _ in range(4)]
    makers = [create_sessionmaker(engine) for engine in engines]
    release = asyncio.Event()
    admitted: list[int] = []
    refused: list[int] = []

    async def one(i: int) -> None:
        async with request_of(makers[i % 4], org, cap=1000 * MB) as slots:
            try:
                await slots.open(300 * MB)
            except AppError:
                refused.append(i)
                return
            admitted.append(i)
            await release.wait()

    tasks = [asyncio.create_task(one(i)) for i in range(8)]
    while len(admitted) + len(refused) < 8:
        await asyncio.sleep(0.01)
    assert await held(sessionmaker, org) == 900 * MB
    release.set()
    await asyncio.gather(*tasks)
    for engine in engines:
        await engine.dispose()
    assert (len(admitted), len(refused)) == (3, 5)
    assert await held(sessionmaker, org) == 0


async def test_a_dead_workers_reservation_expires_and_a_live_one_is_renewed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    async with sessionmaker() as session, session.begin():
        session.add(
            UploadSlot(
                id="slot_deadstage",
                organization_id=org,
                files=0,
                staged_bytes=1000 * MB,
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
    async with request_of(sessionmaker, org, cap=1000 * MB, lease_s=0.3) as slots:
        await slots.open(1000 * MB)  # the expired row no longer counts
        await asyncio.sleep(0.8)  # well past the first lease
        assert await held(sessionmaker, org) == 1000 * MB


async def test_small_bodies_count_against_the_cap_without_a_database_row(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    cap = 3 * SMALL_BODY_BYTES
    async with request_of(sessionmaker, org, cap=cap) as large:
        await large.open(2 * SMALL_BODY_BYTES)
        async with request_of(sessionmaker, org, cap=cap) as small:
            await small.open(SMALL_BODY_BYTES)  # exactly what is left
            assert await held(sessionmaker, org) == 2 * SMALL_BODY_BYTES  # no row
            async with request_of(sessionmaker, org, cap=cap) as extra:
                with pytest.raises(AppError) as caught:
                    await extra.open(1)
                assert caught.value.status == 429
    async with request_of(sessionmaker, org, cap=cap) as small:  # all given back
        await small.open(SMALL_BODY_BYTES)
    held_small = []
    try:
        for _ in range(SMALL_BODIES_PER_ORG // SMALL_BODY_BYTES):
            slots = request_of(sessionmaker, org, cap=2 * SMALL_BODIES_PER_ORG)
            await slots.open(SMALL_BODY_BYTES)
            held_small.append(slots)
        with pytest.raises(AppError) as caught:
            await request_of(sessionmaker, org, cap=2 * SMALL_BODIES_PER_ORG).open(1)
        assert caught.value.details == {"max_staged_bytes": SMALL_BODIES_PER_ORG}
    finally:
        for slots in held_small:
            await slots.__aexit__(None, None, None)
    async with request_of(sessionmaker, org, cap=cap) as small:  # the ledger was emptied
        await small.open(SMALL_BODY_BYTES)
