"""Upload tokens (SPEC 9.2): minting, authenticating, revoking, and their file count."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import Actor, EventType, record_event
from vectorgate.db import new_id, utcnow, write_transaction
from vectorgate.errors import AppError, ErrorCode, bad_request, not_found
from vectorgate.organizations.models import ApiKey
from vectorgate.schemas import iso_millis
from vectorgate.security.api_keys import (
    generate_upload_token,
    hash_api_key,
    looks_like_upload_token,
    verify_api_key,
)
from vectorgate.upload_tokens.models import UploadToken
from vectorgate.vector_stores.models import VectorStore

log = logging.getLogger(__name__)

# SPEC 9.2's bounds: a token is for one browser session, not a standing credential.
MAX_TOKEN_LIFETIME_S = 3600
MAX_TOKEN_FILES = 1000


@dataclass(frozen=True, slots=True)
class IssuedToken:
    record: UploadToken
    token: str  # shown once, never stored

    def __repr__(self) -> str:
        return f"IssuedToken(id={self.record.id!r})"


async def mint_upload_token(
    session: AsyncSession,
    store: VectorStore,
    *,
    api_key_id: str,
    key_expires_at: datetime | None,
    expires_in_s: int,
    max_files: int,
    actor: Actor,
) -> IssuedToken:
    """A new token for `store`, minted by the key `api_key_id`; 400 for a lifetime that
    would outlive the key (the key's end ends the token anyway: say so rather than hand
    out an `expires_at` that is not true)."""
    expires_at = utcnow() + timedelta(seconds=expires_in_s)
    if key_expires_at is not None and expires_at > key_expires_at:
        raise bad_request(
            "expires_in_s would make the token outlive the API key minting it "
            f"(the key expires at {iso_millis(key_expires_at)})",
            expires_in_s=expires_in_s,
        )
    token = generate_upload_token()
    record = UploadToken(
        id=new_id("upt_"),
        organization_id=store.organization_id,
        api_key_id=api_key_id,
        vector_store_id=store.id,
        credential_id=store.credential_id,
        token_hash=hash_api_key(token),
        max_files=max_files,
        files_accepted=0,
        expires_at=expires_at,
        created_at=utcnow(),
    )
    session.add(record)
    details = {
        "vector_store_id": store.id,
        "max_files": max_files,
        "expires_at": iso_millis(expires_at),
    }
    record_event(
        session, store.organization_id, actor, EventType.UPLOAD_TOKEN_CREATED, record.id, details
    )
    await session.flush()
    return IssuedToken(record=record, token=token)


async def authenticate_upload_token(
    session: AsyncSession, token: str
) -> tuple[UploadToken, ApiKey] | None:
    """The live token `token` is and the key that minted it, or None.

    One indexed query joining the minting key, so that revoking or expiring the key ends
    its tokens on the next request; the token's own expiry and revocation likewise.
    """
    if not looks_like_upload_token(token):
        return None
    row = (
        await session.execute(
            select(UploadToken, ApiKey)
            .join(ApiKey, ApiKey.id == UploadToken.api_key_id)
            .where(UploadToken.token_hash == hash_api_key(token))
        )
    ).first()
    if row is None:
        return None
    record, key = row.tuple()
    now = utcnow()
    if record.revoked_at is not None or record.expires_at <= now:
        return None
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    # The lookup is by digest; compare again in constant time as for keys.
    return (record, key) if verify_api_key(token, record.token_hash) else None


async def revoke_upload_token(
    session: AsyncSession,
    org_id: str,
    token_id: str,
    store_ids: frozenset[str] | None,
    actor: Actor,
) -> UploadToken:
    """Revoke a live token of the organization; 404 for an unknown, revoked or foreign one,
    or one for a store outside `store_ids` (the revoking key's stores; None: all)."""
    record = await session.get(UploadToken, token_id)
    if (
        record is None
        or record.organization_id != org_id
        or record.revoked_at is not None
        or (store_ids is not None and record.vector_store_id not in store_ids)
    ):
        raise not_found("Upload token not found", token_id=token_id)
    record.revoked_at = utcnow()
    details = {"vector_store_id": record.vector_store_id}
    record_event(session, org_id, actor, EventType.UPLOAD_TOKEN_REVOKED, record.id, details)
    await session.flush()
    return record


def token_exhausted(max_files: int) -> AppError:
    return AppError(
        403,
        ErrorCode.TOKEN_EXHAUSTED,
        f"This upload token may upload at most {max_files} files and has no room for "
        "this request's files",
        details={"max_files": max_files},
    )


class TokenQuota:
    """The files one request holds of its upload token's `max_files`.

    Taken in the database before a file goes upstream: one conditional UPDATE, which
    PostgreSQL runs under the row's lock and SQLite under its write lock, so the count
    holds across workers and replicas. A request that fails gives its files back
    (`give_back`): only the files of requests that succeeded stay counted.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], token_id: str) -> None:
        self._sessionmaker = sessionmaker
        self._token_id = token_id
        self.held = 0

    async def cover(self, files: int) -> None:
        """Make sure `files` files are held, taking the difference; 403 TOKEN_EXHAUSTED
        when the token has no room for them."""
        missing = files - self.held
        if missing <= 0:
            return
        async with write_transaction(self._sessionmaker) as session:
            taken = await session.execute(
                update(UploadToken)
                .where(
                    UploadToken.id == self._token_id,
                    UploadToken.files_accepted + missing <= UploadToken.max_files,
                )
                .values(files_accepted=UploadToken.files_accepted + missing)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                max_files = await session.scalar(
                    select(UploadToken.max_files).where(UploadToken.id == self._token_id)
                )
                raise token_exhausted(int(max_files or 0))
        self.held = files

    async def give_back(self) -> None:
        """Return the held files (the request failed); logged, never raised, if it cannot."""
        if not self.held:
            return
        held, self.held = self.held, 0
        try:
            async with write_transaction(self._sessionmaker) as session:
                await session.execute(
                    update(UploadToken)
                    .where(UploadToken.id == self._token_id)
                    .values(files_accepted=UploadToken.files_accepted - held)
                    .execution_options(synchronize_session=False)
                )
        except Exception:
            log.warning("could not give %d files back to upload token %s", held, self._token_id)

    async def give_back_shielded(self) -> None:
        await asyncio.shield(self.give_back())
