"""Writing and reading audit events.

Every service function that changes an organization takes the `Actor` making the change
and calls `record_event` in the same session, so the change and its event are committed
or rolled back together: an event never describes a change that did not happen, and no
change is left without its event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.audit.models import AuditEvent
from vectorgate.db import new_id, newest_first_page, utcnow
from vectorgate.errors import not_found

ActorType = Literal["api_key", "admin", "cli"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: an API key (its id), an admin token, or the command line.

    The command line has no id: it authenticates nobody (whoever can reach the database
    runs it), so any name written here would be a claim nothing checked.
    """

    type: ActorType
    id: str | None = None


CLI = Actor("cli")


class EventType(StrEnum):
    ORGANIZATION_CREATED = "organization.created"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    CREDENTIAL_CREATED = "credential.created"
    CREDENTIAL_DELETED = "credential.deleted"
    CREDENTIAL_ROTATED = "credential.rotated"
    VECTOR_STORE_REGISTERED = "vector_store.registered"
    VECTOR_STORE_UNREGISTERED = "vector_store.unregistered"
    UPLOAD_TOKEN_CREATED = "upload_token.created"
    UPLOAD_TOKEN_REVOKED = "upload_token.revoked"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"


def record_event(
    session: AsyncSession,
    organization_id: str,
    actor: Actor,
    type: EventType,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add the event to `session`; it is written with the caller's change, or not at all."""
    event = AuditEvent(
        id=new_id("aud_"),
        organization_id=organization_id,
        type=type.value,
        actor_type=actor.type,
        actor_id=actor.id,
        target_id=target_id,
        details=details or {},
        # Taken now rather than at flush, so events of one transaction keep their order.
        created_at=utcnow(),
    )
    session.add(event)
    return event


async def list_events(
    session: AsyncSession, organization_id: str, *, limit: int, after: str | None
) -> tuple[Sequence[AuditEvent], bool]:
    """Newest first; `after` is the id of the last event of the previous page."""
    query = select(AuditEvent).where(AuditEvent.organization_id == organization_id)
    cursor = None
    if after is not None:
        cursor = await session.get(AuditEvent, after)
        if cursor is None or cursor.organization_id != organization_id:
            raise not_found("The 'after' event was not found", after=after)
    return await newest_first_page(session, query, AuditEvent, cursor, limit)
