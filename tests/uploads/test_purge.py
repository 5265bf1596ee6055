"""Expired idempotency keys and upload slots are purged in bounded batches, never a row
that is still needed, and safely by several workers at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import CLI
from vectorgate.credentials.service import create_credential
from vectorgate.db import create_engine, create_sessionmaker, new_id, utcnow
from vectorgate.organizations.service import create_organization
from vectorgate.security.encryption import Keyring, Secret, generate_key
from vectorgate.uploads import idempotency, slots
from vectorgate.uploads.models import IdempotencyKey, UploadSlot, UpstreamUpload

pytestmark = pytest.mark.asyncio

GRACE_S = 30


async def new_org(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker() as session, session.begin():
        return (await create_organization(session, "purge", CLI)).id


def slot(org: str, expires_in_s: float) -> UploadSlot:
    return UploadSlot(
        id=new_id("slot_"),
        organization_id=org,
        files=1,
        expires_at=utcnow() + timedelta(seconds=expires_in_s),
    )


def key(org: str, expires_in_s: float, *, done: bool = True) -> IdempotencyKey:
    return IdempotencyKey(
        organization_id=org,
        key=new_id("k_"),
        route="POST /x",
        request_hash="0" * 64 if done else None,
        response_status=200 if done else None,
        response_body="{}" if done else None,
        expires_at=utcnow() + timedelta(seconds=expires_in_s),
    )


async def remaining(
    sessionmaker: async_sessionmaker[AsyncSession],
    org: str,
    model: type[UploadSlot] | type[IdempotencyKey],
) -> set[str]:
    """Ids (keys) of the organization's rows: the database is shared with other tests."""
    column = UploadSlot.id if model is UploadSlot else IdempotencyKey.key
    async with sessionmaker() as session:
        return set(
            (await session.scalars(select(column).where(model.organization_id == org))).all()
        )


async def count(sessionmaker: async_sessionmaker[AsyncSession], org: str, model: type) -> int:
    async with sessionmaker() as session:
        total = await session.scalar(
            select(func.count()).select_from(model).where(model.organization_id == org)
        )
    return int(total or 0)


async def test_only_slots_long_expired_and_not_in_the_journal_are_purged(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    live, just_expired = slot(org, 60), slot(org, -1)
    long_expired, journalled = slot(org, -GRACE_S - 60), slot(org, -GRACE_S - 60)
    async with sessionmaker() as session, session.begin():
        credential = await create_credential(
            session, Keyring([generate_key()]), org, "main", Secret("sk-test-purge"), CLI
        )
        session.add_all([live, just_expired, long_expired, journalled])
        session.add(
            UpstreamUpload(
                file_id=new_id("file-"),
                organization_id=org,
                credential_id=credential.id,
                vector_store_id="vs_purge",
                slot_id=journalled.id,
            )
        )
    before = await remaining(sessionmaker, org, UploadSlot)

    assert await slots.purge_expired(sessionmaker, grace_s=GRACE_S) >= 1
    after = await remaining(sessionmaker, org, UploadSlot)
    assert before - after == {long_expired.id}
    await slots.purge_expired(sessionmaker, grace_s=GRACE_S)
    assert await remaining(sessionmaker, org, UploadSlot) == after


async def test_only_expired_idempotency_keys_are_purged(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    kept = [key(org, 3600), key(org, 3600, done=False)]
    expired = [key(org, -1), key(org, -3600, done=False)]
    async with sessionmaker() as session, session.begin():
        session.add_all([*kept, *expired])
    before = await remaining(sessionmaker, org, IdempotencyKey)

    assert await idempotency.purge_expired(sessionmaker) >= 2
    after = await remaining(sessionmaker, org, IdempotencyKey)
    assert before - after == {k.key for k in expired}
    assert after == {k.key for k in kept}


async def test_a_purge_deletes_at_most_one_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    async with sessionmaker() as session, session.begin():
        session.add_all([slot(org, -GRACE_S - 60) for _ in range(5)])
        session.add_all([key(org, -1) for _ in range(5)])
    slot_rounds = [await slots.purge_expired(sessionmaker, grace_s=GRACE_S, batch=2)]
    key_rounds = [await idempotency.purge_expired(sessionmaker, batch=2)]
    while slot_rounds[-1] or key_rounds[-1]:
        slot_rounds.append(await slots.purge_expired(sessionmaker, grace_s=GRACE_S, batch=2))
        key_rounds.append(await idempotency.purge_expired(sessionmaker, batch=2))
    # Other tests' expired rows in the shared database may come first; none are kept.
    assert max(slot_rounds) == max(key_rounds) == 2
    assert len(slot_rounds) >= 4
    assert len(key_rounds) >= 4
    assert await count(sessionmaker, org, UploadSlot) == 0
    assert await count(sessionmaker, org, IdempotencyKey) == 0


async def test_several_workers_purging_at_once_delete_each_row_once(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    org = await new_org(sessionmaker)
    async with sessionmaker() as session, session.begin():
        session.add_all([slot(org, -GRACE_S - 60) for _ in range(40)])
        session.add_all([key(org, -1) for _ in range(40)])
        live = [slot(org, 60) for _ in range(3)]
        session.add_all(live)
    # Separate engines stand in for separate worker processes. A purger that meets rows
    # another one is deleting skips them, so rounds go on until one finds nothing left.
    engines = [create_engine(database_url) for _ in range(4)]
    makers = [create_sessionmaker(engine) for engine in engines]
    deleted = [0, 0]
    try:
        for _ in range(20):
            results = await asyncio.gather(
                *(slots.purge_expired(m, grace_s=GRACE_S, batch=15) for m in makers),
                *(idempotency.purge_expired(m, batch=15) for m in makers),
            )
            deleted = [deleted[0] + sum(results[:4]), deleted[1] + sum(results[4:])]
            if not any(results):
                break
    finally:
        for engine in engines:
            await engine.dispose()
    assert await count(sessionmaker, org, UploadSlot) == 3
    assert await count(sessionmaker, org, IdempotencyKey) == 0
    assert await remaining(sessionmaker, org, UploadSlot) == {s.id for s in live}
    # Each row is deleted once: the counts add up (plus rows other tests left expired).
    assert deleted[0] >= 40
    assert deleted[1] >= 40
