from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import create_engine, create_sessionmaker, utcnow
from vectorgate.errors import AppError
from vectorgate.organizations.service import create_organization
from vectorgate.uploads.models import UploadSlot
from vectorgate.uploads.slots import check_capacity, files_in_flight, upload_slots

pytestmark = pytest.mark.asyncio


async def new_org(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker() as session, session.begin():
        return (await create_organization(session, "slots")).id


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
