from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
        org = await create_organization(session, "acme")
        issued = await create_api_key(session, org.id, "ci")
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
        org = await create_organization(session, "acme")
        issued = await create_api_key(session, org.id, "ci")
        kept = await create_api_key(session, org.id, "other")
    async with sessionmaker() as session, session.begin():
        revoked = await revoke_api_key(session, issued.record.prefix)
    assert [r.id for r in revoked] == [issued.record.id]
    async with sessionmaker() as session:
        assert await authenticate(session, issued.key) is None
        assert await authenticate(session, kept.key) is not None
