"""The background poller: advances file records until every batch is final.

Every worker of every replica runs one. Work is found in the database (batches not
`done` whose `next_poll_at` has come) and claimed with a lease: a conditional UPDATE
that only succeeds when nobody holds a live lease, so each batch is polled by exactly
one worker at a time. A worker that dies mid-poll simply stops renewing; its lease
runs out and another worker takes the batch over. Nothing lives in memory that a
restart could lose.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import timedelta

import openai
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.db import utcnow, write_transaction
from vectorgate.observability import POLLER_LAG
from vectorgate.security.encryption import Keyring
from vectorgate.settings import Settings
from vectorgate.uploads import idempotency
from vectorgate.uploads import slots as upload_slots
from vectorgate.upstream import journal
from vectorgate.upstream.batch import poll_interval
from vectorgate.upstream.client import client_for
from vectorgate.upstream.errors import is_not_found
from vectorgate.vector_stores import duplicates
from vectorgate.vector_stores.models import FileBatch, VectorStoreFile
from vectorgate.vector_stores.outcomes import FINAL_STATUSES, finish_batch, save_changes, snapshot
from vectorgate.vector_stores.service import (
    apply_upstream_status,
    mark_failed,
    mark_processing,
    mark_timed_out,
)
from vectorgate.webhooks import events as webhook_events

log = logging.getLogger(__name__)

_CLAIM_AT_ONCE = 20
_CALL_TIMEOUT_S = 20.0
# A batch whose key is rate limited waits at most this long for its next poll.
_MAX_BACKOFF_S = 300.0


class Poller:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        keyring: Keyring,
        base_client: openai.AsyncOpenAI,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._keyring = keyring
        self._base_client = base_client
        self._settings = settings
        # Says who holds a lease: host and process for an operator, random for uniqueness.
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._next_purge = 0.0  # time.monotonic() of the next purge of expired rows

    async def run_forever(self) -> None:
        while True:
            try:
                polled = await self.run_once()
            except Exception:
                log.exception("poller round failed; retrying")
                polled = 0
            if not polled:
                # Look for due work at least every second; each batch's own next_poll_at
                # (OpenAI's hint, else poll_interval_s) paces the polls themselves.
                await asyncio.sleep(min(self._settings.poll_interval_s, 1.0))

    async def run_once(self) -> int:
        """Claim the batches that are due and poll each once; returns how many."""
        await journal.sweep(
            self._sessionmaker,
            self._keyring,
            self._base_client,
            backoff_s=self._settings.compensation_backoff_s,
        )
        await self._purge_expired()
        polled = 0
        for batch_id in await self._claim_due():
            await self._poll(batch_id)
            polled += 1
        return polled

    async def _purge_expired(self) -> None:
        """Every `expired_rows_purge_interval_s`, delete expired idempotency keys and upload
        slots, one bounded batch each, and dead duplicate claims; a full batch means more
        are due at the next round."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + self._settings.expired_rows_purge_interval_s
        try:
            keys = await idempotency.purge_expired(self._sessionmaker)
            slots = await upload_slots.purge_expired(
                self._sessionmaker, grace_s=self._settings.upload_slot_lease_s
            )
            old_events = await webhook_events.purge_old(self._sessionmaker)
            claims = await duplicates.purge_dead_claims(self._sessionmaker)
        except Exception as exc:  # the next purge tries again; polling goes on meanwhile
            log.warning("could not purge expired rows: %s", type(exc).__name__)
            return
        if keys or slots or claims:
            log.info(
                "purged %d expired idempotency keys, %d upload slots and %d duplicate claims",
                keys,
                slots,
                claims,
            )
        if old_events:
            log.info("purged %d webhook deliveries and events past their retention", old_events)
        if (
            keys >= idempotency.PURGE_BATCH
            or slots >= upload_slots.PURGE_BATCH
            or old_events >= webhook_events.PURGE_BATCH
        ):
            self._next_purge = now

    async def _claim_due(self) -> list[str]:
        now = utcnow()
        lease_free = or_(FileBatch.lease_expires_at.is_(None), FileBatch.lease_expires_at < now)
        async with self._sessionmaker() as session:
            oldest_due = await session.scalar(
                select(func.min(FileBatch.next_poll_at)).where(FileBatch.done.is_(False))
            )
            POLLER_LAG.set(max((now - oldest_due).total_seconds(), 0) if oldest_due else 0)
            candidates = (
                await session.scalars(
                    select(FileBatch.id)
                    .where(FileBatch.done.is_(False), FileBatch.next_poll_at <= now, lease_free)
                    .order_by(FileBatch.next_poll_at)
                    .limit(_CLAIM_AT_ONCE)
                )
            ).all()
        claimed = []
        for batch_id in candidates:
            async with write_transaction(self._sessionmaker) as session:
                result = await session.execute(
                    update(FileBatch)
                    .where(FileBatch.id == batch_id, FileBatch.done.is_(False), lease_free)
                    .values(
                        lease_owner=self.owner,
                        lease_expires_at=now + timedelta(seconds=self._settings.poller_lease_s),
                    )
                )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(batch_id)
        return claimed

    async def _poll(self, batch_id: str) -> None:
        # Read, close the session, ask OpenAI, then write in one short transaction: no
        # connection (nor SQLite's write lock) is ever held across an HTTP call.
        async with self._sessionmaker() as session:
            batch = await session.get(FileBatch, batch_id)
            if batch is None or batch.lease_owner != self.owner:
                return
            records = (
                await session.scalars(
                    select(VectorStoreFile).where(
                        VectorStoreFile.batch_id == batch_id,
                        VectorStoreFile.organization_id == batch.organization_id,
                    )
                )
            ).all()
            pending = [r for r in records if r.processing_status not in FINAL_STATUSES]
            client = await self._client(session, batch) if pending else None
        interval = self._settings.poll_interval_s
        before = snapshot(pending)
        if pending and utcnow() >= batch.deadline_at:
            await self._time_out(client, batch, pending)
        elif client is not None:
            # OpenAI's hint may ask for more patience, never for more polls than
            # poll_interval_s: nobody waits on these answers, clients ask the status.
            interval = max(await self._refresh(client, batch, pending) or 0, interval)
        async with write_transaction(self._sessionmaker) as session:
            # Each file's end and its event in one transaction, the batch's too; a file
            # someone else ended meanwhile is left as they wrote it.
            await save_changes(session, pending, before)
            await finish_batch(session, batch, owner=self.owner)
            await session.execute(
                update(FileBatch)
                .where(FileBatch.id == batch_id, FileBatch.lease_owner == self.owner)
                .values(
                    lease_owner=None,
                    lease_expires_at=None,
                    next_poll_at=utcnow() + timedelta(seconds=interval),
                )
            )

    async def _client(self, session: AsyncSession, batch: FileBatch) -> openai.AsyncOpenAI | None:
        try:
            credential = await get_credential(session, batch.organization_id, batch.credential_id)
            client = client_for(
                self._base_client, reveal_key(self._keyring, credential), credential.base_url
            )
        except Exception as exc:  # the deadline catches a batch that can never be polled
            log.warning("no OpenAI client for batch %s: %s", batch.id, type(exc).__name__)
            return None
        # A poll holds its batch's lease: keep each call short. No SDK retries either:
        # they would wait out a Retry-After of up to 60 s each, stalling every other
        # organization's batches behind one rate-limited key; the next poll is the retry.
        return client.with_options(timeout=_CALL_TIMEOUT_S, max_retries=0)

    async def _refresh(
        self, client: openai.AsyncOpenAI, batch: FileBatch, pending: list[VectorStoreFile]
    ) -> float | None:
        """Update `pending` from OpenAI; returns the poll interval OpenAI asks for, if any."""
        by_file_id = {r.file_id: r for r in pending}
        try:
            batches = client.vector_stores.file_batches
            raw = await batches.with_raw_response.retrieve(
                batch.id, vector_store_id=batch.vector_store_id
            )
            if raw.parse().status == "in_progress":
                # One call per poll while OpenAI works; per-file results once it is done
                # (a status request asks OpenAI about its one file in between).
                for waiting in pending:
                    mark_processing(waiting)
            else:
                async for upstream in batches.list_files(
                    batch.id, vector_store_id=batch.vector_store_id, limit=100
                ):
                    record = by_file_id.get(upstream.id)
                    if record is not None:
                        apply_upstream_status(record, upstream)
        except openai.RateLimitError as exc:  # OpenAI's wait, without waiting here
            log.warning("could not poll batch %s: rate limited", batch.id)
            return _retry_after_s(exc)
        except Exception as exc:
            if isinstance(exc, openai.OpenAIError) and is_not_found(exc):
                # Deleted upstream (or the store was): these files will never finish.
                for record in pending:
                    mark_failed(record, "the file batch no longer exists upstream")
                return None
            # The deadline catches a batch that keeps failing.
            log.warning("could not poll batch %s: %s", batch.id, type(exc).__name__)
            return None
        return poll_interval(raw.headers)

    async def _time_out(
        self, client: openai.AsyncOpenAI | None, batch: FileBatch, pending: list[VectorStoreFile]
    ) -> None:
        """The one place a file ends for a timeout: its batch is cancelled upstream first.

        A file is marked failed only once its batch can no longer complete it: the batch
        is final upstream (after the cancel, or it finished meanwhile: then each file gets
        its real status, completed ones too) or gone. While the cancel is not confirmed
        (it failed, or the batch is still `cancelling`) the files stay as they are and the
        next poll tries again, so no file is reported failed that OpenAI then indexes.
        """
        timeout_s = self._settings.batch_timeout_s
        if client is None:  # no key to reach the batch with: nobody can ever complete it
            for record in pending:
                mark_timed_out(record, timeout_s)
            return
        batches = client.vector_stores.file_batches
        try:
            upstream = await batches.retrieve(batch.id, vector_store_id=batch.vector_store_id)
            if upstream.status == "in_progress":
                upstream = await batches.cancel(batch.id, vector_store_id=batch.vector_store_id)
            if upstream.status in ("in_progress", "cancelling"):
                return  # not final yet: the next poll looks again
            by_file_id = {r.file_id: r for r in pending}
            async for file in batches.list_files(
                batch.id, vector_store_id=batch.vector_store_id, limit=100
            ):
                found = by_file_id.get(file.id)
                if found is not None and file.status in ("completed", "failed"):
                    apply_upstream_status(found, file)
        except Exception as exc:
            if isinstance(exc, openai.OpenAIError) and is_not_found(exc):
                for record in pending:  # gone upstream: it will never complete them
                    mark_timed_out(record, timeout_s)
                return
            log.info(
                "could not cancel overdue batch %s: %s; retrying", batch.id, type(exc).__name__
            )
            return
        for record in pending:
            if record.processing_status not in FINAL_STATUSES:
                mark_timed_out(record, timeout_s)


def _retry_after_s(exc: openai.APIStatusError) -> float | None:
    """OpenAI's Retry-After, as the wait before this batch's next poll (capped)."""
    try:
        seconds = float(exc.response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(seconds, _MAX_BACKOFF_S) if seconds > 0 else None
