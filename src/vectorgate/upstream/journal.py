"""The journal of upstream files whose request has not settled yet.

A request writes a row the moment one of its files reaches OpenAI and removes its rows
when it ends, whether it kept the files (they now have records, or the client got their
ids) or deleted them. Rows left behind belong to a request whose worker died: once that
request's upload slots have expired, `sweep` deletes those files upstream, unless a file
record shows the request had in fact succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import openai
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.db import utcnow, write_transaction
from vectorgate.security.encryption import Keyring
from vectorgate.uploads.models import UploadSlot, UpstreamUpload
from vectorgate.upstream.client import client_for
from vectorgate.upstream.compensate import UploadedFiles
from vectorgate.vector_stores.models import VectorStoreFile

log = logging.getLogger(__name__)


async def record(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    file_id: str,
    organization_id: str,
    credential_id: str,
    vector_store_id: str,
    slot_id: str,
) -> None:
    async with write_transaction(sessionmaker) as session:
        session.add(
            UpstreamUpload(
                file_id=file_id,
                organization_id=organization_id,
                credential_id=credential_id,
                vector_store_id=vector_store_id,
                slot_id=slot_id,
            )
        )


async def settle(session: AsyncSession, file_ids: Sequence[str]) -> None:
    """Remove the rows of `file_ids`, in the caller's transaction."""
    if file_ids:
        await session.execute(delete(UpstreamUpload).where(UpstreamUpload.file_id.in_(file_ids)))


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
) -> int:
    """Delete upstream the files of requests that died; returns how many rows it settled."""
    live_slot = exists().where(
        UploadSlot.id == UpstreamUpload.slot_id, UploadSlot.expires_at > utcnow()
    )
    async with sessionmaker() as session:
        orphans = (await session.scalars(select(UpstreamUpload).where(~live_slot))).all()
        settled = []
        for orphan in orphans:
            recorded = await session.scalar(
                select(exists().where(VectorStoreFile.file_id == orphan.file_id))
            )
            if not recorded:
                try:
                    credential = await get_credential(
                        session, orphan.organization_id, orphan.credential_id
                    )
                    client = client_for(
                        base_client, reveal_key(keyring, credential), credential.base_url
                    )
                except Exception as exc:
                    log.warning("cannot clean up %s: %s", orphan.file_id, type(exc).__name__)
                    continue
                leftover = UploadedFiles(client, orphan.vector_store_id)
                leftover.file_ids.append(orphan.file_id)
                await leftover.discard()
                log.info("deleted upstream file %s of a request that died", orphan.file_id)
            settled.append(orphan.file_id)
    if settled:
        async with write_transaction(sessionmaker) as session:
            await settle(session, settled)
    if orphans:
        # Expired slots no journal row needs any more are only clutter.
        async with write_transaction(sessionmaker) as session:
            await session.execute(
                delete(UploadSlot).where(
                    UploadSlot.expires_at <= utcnow(),
                    ~exists().where(UpstreamUpload.slot_id == UploadSlot.id),
                )
            )
    return len(settled)
