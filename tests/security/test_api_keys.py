from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import CLI
from vectorgate.db import utcnow
from vectorgate.errors import AppError
from vectorgate.organizations.models import ApiKey
from vectorgate.organizations.service import (
    authenticate,
    create_api_key,
    create_organization,
    revoke_api_key,
)
from vectorgate.security.api_keys import generate_api_key, hash_api_key, public_prefix


def test_generated_keys_have_the_documented_shape() -> None:
    key = generate_api_key()
    assert key.startswith("vg_")
    assert len(key) - 3 >= 32
    assert public_prefix(key) == key[:11]
    assert generate_api_key() != key


@pytest.mark.asyncio
async def test_keys_are_stored_only_as_hashes_and_authenticate(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        org = await create_organization(session, "acme", CLI)
        issued = await create_api_key(session, org.id, "ci", CLI)
    assert issued.key not in repr(issued)
    async with sessionmaker() as session:
        stored = await session.get(ApiKey, issued.record.id)
        assert stored is not None
        assert stored.key_hash == hash_api_key(issued.key)
        assert issued.key not in (stored.key_hash, stored.prefix, stored.name)
        found = await authenticate(session, issued.key)
        assert found is not None
        assert found.organization_id == org.id
        assert await authenticate(session, issued.key + "x") is None
        assert await authenticate(session, "vg_short") is None


@pytest.mark.asyncio
async def test_revoked_keys_no_longer_authenticate(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        org = await create_organization(session, "acme", CLI)
        issued = await create_api_key(session, org.id, "ci", CLI)
        kept = await create_api_key(session, org.id, "other", CLI)
    async with sessionmaker() as session, session.begin():
        revoked = await revoke_api_key(session, issued.record.prefix, CLI)
    assert [r.id for r in revoked] == [issued.record.id]
    async with sessionmaker() as session:
        assert await authenticate(session, issued.key) is None
        assert await authenticate(session, kept.key) is not None


@pytest.mark.asyncio
async def test_a_key_made_without_scopes_has_all_three_and_every_store(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        org = await create_organization(session, "acme", CLI)
        issued = await create_api_key(session, org.id, "ci", CLI)
    async with sessionmaker() as session:
        found = await authenticate(session, issued.key)
    assert found is not None
    assert (found.scopes, found.vector_store_ids, found.expires_at) == (
        ["upload", "read", "manage"],
        None,
        None,
    )


@pytest.mark.asyncio
async def test_scopes_are_stored_once_each_in_one_order_and_unknown_ones_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        org = await create_organization(session, "acme", CLI)
        issued = await create_api_key(
            session, org.id, "ci", CLI, scopes=["manage", "upload", "manage"]
        )
        assert issued.record.scopes == ["upload", "manage"]
        for scopes, problem in (([], "at least one scope"), (["admin"], "Unknown scope")):
            with pytest.raises(AppError) as refused:
                await create_api_key(session, org.id, "ci", CLI, scopes=scopes)
            assert refused.value.status == 400
            assert problem in refused.value.message


@pytest.mark.asyncio
async def test_a_key_for_a_store_the_organization_has_not_registered_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        org = await create_organization(session, "acme", CLI)
        with pytest.raises(AppError) as refused:
            await create_api_key(session, org.id, "ci", CLI, vector_store_ids=["vs_unknown"])
    assert refused.value.status == 400
    assert "vs_unknown" in refused.value.message


@pytest.mark.asyncio
async def test_an_expired_key_no_longer_authenticates(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        org = await create_organization(session, "acme", CLI)
        issued = await create_api_key(
            session, org.id, "ci", CLI, expires_at=utcnow() + timedelta(hours=1)
        )
    async with sessionmaker() as session:
        assert await authenticate(session, issued.key) is not None
    async with sessionmaker() as session, session.begin():
        past = utcnow() - timedelta(seconds=1)
        await session.execute(
            update(ApiKey).where(ApiKey.id == issued.record.id).values(expires_at=past)
        )
    async with sessionmaker() as session:
        assert await authenticate(session, issued.key) is None
