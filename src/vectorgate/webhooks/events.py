"""The outbox: events (SPEC 10.2) and their deliveries, written with the change that
raises them.

A service that changes a file's status calls `raise_event` with the session of that
change, so the event and one delivery per subscribed webhook are committed with it or
not at all: a crash can lose neither the change's event nor an event of a change that
never happened. Delivery (`webhooks/dispatcher.py`) reads only what is committed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import new_id, utcnow, write_transaction
from vectorgate.schemas import iso_millis
from vectorgate.webhooks.models import Event, WebhookDelivery, WebhookEndpoint

FILE_COMPLETED = "file.completed"
FILE_FAILED = "file.failed"
BATCH_COMPLETED = "batch.completed"
WEBHOOK_PING = "webhook.ping"

# Deliveries stay listed (and may be retried) this long after their event.
RETENTION = timedelta(days=30)
PURGE_BATCH = 1000


async def raise_event(
    session: AsyncSession,
    organization_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    webhook_id: str | None = None,
) -> str | None:
    """Store an event for the organization's webhooks that take `event_type` (or for
    `webhook_id` alone, whatever its filter: a ping) and one pending delivery for each,
    in `session`'s transaction. Returns the event's id; None when no webhook takes it,
    in which case nothing is stored."""
    query = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
        WebhookEndpoint.organization_id == organization_id
    )
    if webhook_id is not None:
        query = query.where(WebhookEndpoint.id == webhook_id)
    webhooks = [
        found
        for found, types in (await session.execute(query)).all()
        if webhook_id is not None or types is None or event_type in types
    ]
    if not webhooks:
        return None
    now = utcnow()
    event = Event(
        id=new_id("evt_"),
        organization_id=organization_id,
        type=event_type,
        data=data,
        created_at=now,
    )
    session.add(event)
    await session.flush()  # the event's row before its deliveries' (their foreign key)
    session.add_all(
        WebhookDelivery(
            id=new_id("whd_"),
            webhook_id=found,
            event_id=event.id,
            organization_id=organization_id,
            status="pending",
            attempts=0,
            last_chance=False,
            next_attempt_at=now,
            created_at=now,
        )
        for found in webhooks
    )
    return event.id


def envelope(event: Event) -> dict[str, Any]:
    """The JSON a receiver gets (SPEC 10.2)."""
    return {
        "id": event.id,
        "type": event.type,
        "created_at": iso_millis(event.created_at),
        "organization_id": event.organization_id,
        "data": event.data,
    }


async def purge_old(
    sessionmaker: async_sessionmaker[AsyncSession], *, batch: int = PURGE_BATCH
) -> int:
    """Delete up to `batch` finished deliveries older than RETENTION, then up to `batch`
    events as old that no delivery refers to any more; returns how many rows went. A
    pending delivery is kept whatever its age (its schedule is not over)."""
    cutoff = utcnow() - RETENTION
    old_deliveries = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status != "pending", WebhookDelivery.created_at < cutoff)
        .limit(batch)
    )
    unreferenced = exists().where(WebhookDelivery.event_id == Event.id)
    old_events = select(Event.id).where(Event.created_at < cutoff, ~unreferenced).limit(batch)
    async with write_transaction(sessionmaker) as session:
        deliveries = await session.execute(
            delete(WebhookDelivery)
            .where(WebhookDelivery.id.in_(old_deliveries))
            .execution_options(synchronize_session=False)
        )
        events = await session.execute(
            delete(Event)
            .where(Event.id.in_(old_events))
            .execution_options(synchronize_session=False)
        )
    return int(deliveries.rowcount) + int(events.rowcount)  # type: ignore[attr-defined]
