"""A batch shared by concurrent requests (upstream/coalesce.py) is followed until every
request's records are final, even when one request saves its records after the poller
ended the batch on another's (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import CLI
from vectorgate.credentials.service import create_credential
from vectorgate.db import new_id, utcnow, write_transaction
from vectorgate.organizations.service import create_organization
from vectorgate.security.encryption import Keyring, Secret, generate_key
from vectorgate.vector_stores.models import FileBatch
from vectorgate.vector_stores.service import follow_batch

pytestmark = pytest.mark.asyncio


async def test_a_later_request_of_a_shared_batch_makes_it_followed_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        org = (await create_organization(session, "shared", CLI)).id
        credential = await create_credential(
            session, Keyring([generate_key()]), org, "main", Secret("sk-test-shared"), CLI
        )
    batch_id = new_id("vsfb_")
    row = {
        "id": batch_id,
        "organization_id": org,
        "vector_store_id": "vs_shared",
        "credential_id": credential.id,
        "deadline_at": utcnow() + timedelta(seconds=60),
        "next_poll_at": utcnow(),
        "done": False,
    }
    async with write_transaction(sessionmaker) as session:
        await follow_batch(row, session)  # the first request's
    async with write_transaction(sessionmaker) as session:
        saved = await session.get(FileBatch, batch_id)
        assert saved is not None
        saved.done = True  # the poller ended it on the first request's records
    async with write_transaction(sessionmaker) as session:
        await partial(follow_batch, row)(session)  # the second request's, a moment later
    async with sessionmaker() as session:
        followed = await session.get(FileBatch, batch_id)
        assert followed is not None
        assert followed.done is False
