"""Registered vector stores: (organization, credential, upstream id)."""

from __future__ import annotations

import openai
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.errors import AppError, ErrorCode
from vectorgate.security.encryption import Keyring
from vectorgate.upstream.client import client_for
from vectorgate.upstream.errors import upstream_errors
from vectorgate.vector_stores.models import VectorStore


async def register_vector_store(
    session: AsyncSession,
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
    org_id: str,
    credential_id: str,
    *,
    create_name: str | None = None,
    vector_store_id: str | None = None,
) -> VectorStore:
    """Create a vector store upstream, or check an existing one there, and register it."""
    credential = await get_credential(session, org_id, credential_id)
    client = client_for(base_client, reveal_key(keyring, credential))
    if create_name is not None:
        with upstream_errors("create the vector store"):
            upstream = await client.vector_stores.create(name=create_name)
    elif vector_store_id is not None:
        with upstream_errors("find the vector store", not_found="Vector store not found"):
            upstream = await client.vector_stores.retrieve(vector_store_id)
    else:
        raise ValueError("either create_name or vector_store_id")
    if await session.get(VectorStore, (org_id, upstream.id)) is not None:
        raise AppError(409, ErrorCode.CONFLICT, f"Vector store {upstream.id} is already registered")
    store = VectorStore(
        organization_id=org_id, id=upstream.id, credential_id=credential.id, name=upstream.name
    )
    session.add(store)
    await session.flush()
    return store
