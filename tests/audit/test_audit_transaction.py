"""An audit event is written in the transaction of its change (SPEC 9.4): a change that
fails after its event was added leaves neither behind."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.models import AuditEvent
from vectorgate.audit.service import CLI, Actor
from vectorgate.credentials.models import Credential
from vectorgate.credentials.service import create_credential
from vectorgate.errors import AppError
from vectorgate.organizations.service import create_organization
from vectorgate.security.encryption import Keyring, Secret, generate_key
from vectorgate.vector_stores.models import VectorStore
from vectorgate.vector_stores.service import Registration, save_registration

pytestmark = pytest.mark.asyncio

SOMEONE = Actor("api_key", "key_" + "1" * 24)


class Interrupted(Exception):
    """Whatever may fail after a service function returned, before the commit."""


async def new_org(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker() as session, session.begin():
        return (await create_organization(session, "audited", CLI)).id


async def events_in(session: AsyncSession, org: str) -> list[str]:
    """The events `session` sees, its own not yet committed ones included."""
    await session.flush()
    rows = await session.scalars(
        select(AuditEvent.type)
        .where(AuditEvent.organization_id == org)
        .order_by(AuditEvent.created_at)
    )
    return list(rows)


async def test_a_credential_whose_transaction_fails_leaves_no_event(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    org = await new_org(sessionmaker)
    made: list[str] = []

    async def create_then_fail() -> None:
        async with sessionmaker() as session, session.begin():
            keyring, key = Keyring([generate_key()]), Secret("sk-doomed-1234")
            credential = await create_credential(session, keyring, org, "doomed", key, SOMEONE)
            made.append(credential.id)
            assert await events_in(session, org) == ["organization.created", "credential.created"]
            raise Interrupted

    with pytest.raises(Interrupted):
        await create_then_fail()

    async with sessionmaker() as session:
        assert await events_in(session, org) == ["organization.created"]
        assert await session.get(Credential, made[0]) is None


async def test_a_registration_that_loses_a_race_leaves_no_event(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Two requests register the same store; the second one's insert fails at commit,
    after its event was added: it answers 409 and its event is gone with it."""
    org = await new_org(sessionmaker)
    async with sessionmaker() as session, session.begin():
        credential = await create_credential(
            session, Keyring([generate_key()]), org, "main", Secret("sk-main-12345"), CLI
        )
    unused = openai.AsyncOpenAI(api_key="sk-unused", base_url="http://127.0.0.1:9/v1")
    registration = Registration(org, credential.id, unused, "vs_raced", None)

    def record() -> VectorStore:
        return VectorStore(organization_id=org, id="vs_raced", credential_id=credential.id)

    try:
        await save_registration(sessionmaker, registration, record(), SOMEONE)
        with pytest.raises(AppError) as lost:
            await save_registration(sessionmaker, registration, record(), SOMEONE)
    finally:
        await unused.close()

    assert lost.value.status == 409
    async with sessionmaker() as session:
        assert await events_in(session, org) == [
            "organization.created",
            "credential.created",
            "vector_store.registered",
        ]
