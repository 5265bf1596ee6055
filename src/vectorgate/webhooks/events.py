"""The outbox: events (SPEC 10.2) and their deliveries, written with the change that
raises them.

A service that changes a file's status calls `raise_event` with the session of that
change, so the event and one delivery per subscribed webhook are committed with it or
not at all: a crash can lose neither the change's event nor an event of a change that
never happened. Delivery (`webhooks/dispatcher.py`) reads only what is committed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.db import new_id, utcnow
from vectorgate.schemas import iso_millis
from vectorgate.webhooks.models import Event, WebhookDelivery, WebhookEndpoint

FILE_COMPLETED = "file.completed"
FILE_FAILED = "file.failed"
BATCH_COMPLETED = "batch.completed"
WEBHOOK_PING = "webhook.ping"


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
