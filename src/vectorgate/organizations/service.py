"""Organizations and their API keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.audit.service import Actor, EventType, record_event
from vectorgate.db import new_id, newest_first_page, utcnow
from vectorgate.errors import bad_request, not_found
from vectorgate.organizations.models import ALL_SCOPES, ApiKey, Organization, Scope
from vectorgate.schemas import iso_millis
from vectorgate.security.api_keys import (
    generate_api_key,
    hash_api_key,
    looks_like_api_key,
    public_prefix,
    verify_api_key,
)
from vectorgate.vector_stores.models import VectorStore

# At most this many stores on one key: a list is checked on every request that names a
# store, and a key for more stores than this is better made for all of them.
MAX_KEY_VECTOR_STORES = 100
# The longest lifetime a key may be given, about 100 years: past it a timestamp would
# soon leave what the database and Python can hold; "never" is `None`.
MAX_KEY_LIFETIME_S = 100 * 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class IssuedKey:
    record: ApiKey
    key: str  # shown once, never stored

    def __repr__(self) -> str:
        return f"IssuedKey(id={self.record.id!r}, prefix={self.record.prefix!r})"


async def create_organization(session: AsyncSession, name: str, actor: Actor) -> Organization:
    org = Organization(id=new_id("org_"), name=name, upload_slots_version=0)
    session.add(org)
    await session.flush()  # the event refers to the organization's row
    record_event(session, org.id, actor, EventType.ORGANIZATION_CREATED, org.id, {"name": name})
    await session.flush()
    return org


async def get_organization(session: AsyncSession, org_id: str) -> Organization | None:
    return await session.get(Organization, org_id)


async def list_organizations(
    session: AsyncSession, *, limit: int, after: str | None
) -> tuple[Sequence[Organization], bool]:
    """Newest first; `after` is the id of the last organization of the previous page."""
    query = select(Organization)
    cursor = None
    if after is not None:
        cursor = await session.get(Organization, after)
        if cursor is None:
            raise not_found("The 'after' organization was not found", after=after)
    return await newest_first_page(session, query, Organization, cursor, limit)


def canonical_scopes(scopes: Iterable[str]) -> list[Scope]:
    """`scopes` without repeats in ALL_SCOPES order; 400 for an unknown one or none."""
    given = set(scopes)
    unknown = sorted(given - set(ALL_SCOPES))
    if unknown:
        raise bad_request(
            f"Unknown scope {unknown[0]!r}; scopes are {', '.join(ALL_SCOPES)}",
            scopes=unknown,
        )
    if not given:
        raise bad_request("A key needs at least one scope", scopes=[])
    return [scope for scope in ALL_SCOPES if scope in given]


def lifetime_end(expires_in_s: int | None) -> datetime | None:
    """When a key made now with that lifetime expires; 400 for a lifetime out of range."""
    if expires_in_s is None:
        return None
    if not 0 < expires_in_s <= MAX_KEY_LIFETIME_S:
        raise bad_request(
            f"expires_in_s must be between 1 and {MAX_KEY_LIFETIME_S} seconds",
            expires_in_s=expires_in_s,
        )
    return utcnow() + timedelta(seconds=expires_in_s)


async def registered_store_ids(
    session: AsyncSession, org_id: str, vector_store_ids: Sequence[str]
) -> list[str]:
    """`vector_store_ids` without repeats, in the order given; 400 unless every one of them
    is registered to the organization (another organization's store is unknown here)."""
    wanted = list(dict.fromkeys(vector_store_ids))
    if not wanted:
        raise bad_request("vector_store_ids must name at least one store, or be null for all")
    if len(wanted) > MAX_KEY_VECTOR_STORES:
        raise bad_request(f"A key may name at most {MAX_KEY_VECTOR_STORES} vector stores")
    found = set(
        await session.scalars(
            select(VectorStore.id).where(
                VectorStore.organization_id == org_id, VectorStore.id.in_(wanted)
            )
        )
    )
    missing = [store for store in wanted if store not in found]
    if missing:
        raise bad_request(
            f"Vector store {missing[0]} is not registered to this organization",
            vector_store_ids=missing,
        )
    return wanted


async def create_api_key(
    session: AsyncSession,
    org_id: str,
    name: str,
    actor: Actor,
    *,
    scopes: Iterable[str] = ALL_SCOPES,
    vector_store_ids: Sequence[str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key of the organization. Its grant is checked here for what any key must be
    (known scopes, registered stores); whether the actor may hand it out is the caller's
    check (see organizations/routes.py)."""
    granted = canonical_scopes(scopes)
    stores = (
        None
        if vector_store_ids is None
        else await registered_store_ids(session, org_id, vector_store_ids)
    )
    key = generate_api_key()
    record = ApiKey(
        id=new_id("key_"),
        organization_id=org_id,
        name=name,
        prefix=public_prefix(key),
        key_hash=hash_api_key(key),
        scopes=[scope.value for scope in granted],
        vector_store_ids=stores,
        expires_at=expires_at,
    )
    session.add(record)
    details = {
        "name": name,
        "prefix": record.prefix,
        "scopes": record.scopes,
        "vector_store_ids": stores,
        "expires_at": iso_millis(expires_at) if expires_at is not None else None,
    }
    record_event(session, org_id, actor, EventType.API_KEY_CREATED, record.id, details)
    await session.flush()
    return IssuedKey(record=record, key=key)


async def authenticate(session: AsyncSession, key: str) -> ApiKey | None:
    """The live API key record `key` belongs to, or None (unknown, revoked or expired).

    One indexed query: everything a request's access is decided on is on this row.
    """
    if not looks_like_api_key(key):
        return None
    record = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))
    if record is None or record.revoked_at is not None:
        return None
    if record.expires_at is not None and record.expires_at <= utcnow():
        return None
    # The lookup is by digest; compare again in constant time as a matter of hygiene.
    return record if verify_api_key(key, record.key_hash) else None


async def list_api_keys(session: AsyncSession, org_id: str) -> Sequence[ApiKey]:
    """The organization's keys not revoked (expired ones too: their `expires_at` says so)."""
    return (
        await session.scalars(
            select(ApiKey)
            .where(ApiKey.organization_id == org_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
        )
    ).all()


def _revoke(session: AsyncSession, record: ApiKey, actor: Actor) -> None:
    record.revoked_at = utcnow()
    details = {"name": record.name, "prefix": record.prefix}
    record_event(
        session, record.organization_id, actor, EventType.API_KEY_REVOKED, record.id, details
    )


async def revoke_api_key(session: AsyncSession, prefix_or_id: str, actor: Actor) -> list[ApiKey]:
    """Revoke the live keys matching an id or a public prefix, in any organization (the
    command line's view); returns what was revoked."""
    records = (
        await session.scalars(
            select(ApiKey).where(
                or_(ApiKey.id == prefix_or_id, ApiKey.prefix == prefix_or_id),
                ApiKey.revoked_at.is_(None),
            )
        )
    ).all()
    for record in records:
        _revoke(session, record, actor)
    await session.flush()
    return list(records)


async def revoke_key_by_id(session: AsyncSession, key_id: str, actor: Actor) -> ApiKey:
    """Revoke one live key of any organization (the admin API's view); 404 for an unknown
    or revoked one."""
    record = await session.get(ApiKey, key_id)
    if record is None or record.revoked_at is not None:
        raise not_found("API key not found", key_id=key_id)
    _revoke(session, record, actor)
    await session.flush()
    return record


async def revoke_organization_key(
    session: AsyncSession, org_id: str, key_id: str, actor: Actor
) -> ApiKey:
    """Revoke one live key of the organization; 404 for an unknown, revoked or foreign one."""
    record = await session.get(ApiKey, key_id)
    if record is None or record.organization_id != org_id or record.revoked_at is not None:
        raise not_found("API key not found", key_id=key_id)
    _revoke(session, record, actor)
    await session.flush()
    return record
