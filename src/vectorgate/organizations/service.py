"""Organizations and their API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.db import new_id, utcnow
from vectorgate.organizations.models import ApiKey, Organization
from vectorgate.security.api_keys import (
    generate_api_key,
    hash_api_key,
    looks_like_api_key,
    public_prefix,
    verify_api_key,
)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    record: ApiKey
    key: str  # shown once, never stored

    def __repr__(self) -> str:
        return f"IssuedKey(id={self.record.id!r}, prefix={self.record.prefix!r})"


async def create_organization(session: AsyncSession, name: str) -> Organization:
    org = Organization(id=new_id("org_"), name=name, upload_slots_version=0)
    session.add(org)
    await session.flush()
    return org


async def get_organization(session: AsyncSession, org_id: str) -> Organization | None:
    return await session.get(Organization, org_id)


async def create_api_key(session: AsyncSession, org_id: str, name: str) -> IssuedKey:
    key = generate_api_key()
    record = ApiKey(
        id=new_id("key_"),
        organization_id=org_id,
        name=name,
        prefix=public_prefix(key),
        key_hash=hash_api_key(key),
    )
    session.add(record)
    await session.flush()
    return IssuedKey(record=record, key=key)


async def authenticate(session: AsyncSession, key: str) -> ApiKey | None:
    """The live API key record `key` belongs to, or None."""
    if not looks_like_api_key(key):
        return None
    record = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))
    if record is None or record.revoked_at is not None:
        return None
    # The lookup is by digest; compare again in constant time as a matter of hygiene.
    return record if verify_api_key(key, record.key_hash) else None


async def revoke_api_key(session: AsyncSession, prefix_or_id: str) -> list[ApiKey]:
    """Revoke the keys matching an id or a public prefix; returns what was revoked."""
    records = (
        await session.scalars(
            select(ApiKey).where(
                or_(ApiKey.id == prefix_or_id, ApiKey.prefix == prefix_or_id),
                ApiKey.revoked_at.is_(None),
            )
        )
    ).all()
    for record in records:
        record.revoked_at = utcnow()
    await session.flush()
    return list(records)
