"""Webhook endpoints (SPEC 10.1): creating, listing, deleting, rotating their secrets.

Delivery itself is the dispatcher's (dispatcher.py); here are a webhook's records, its
pings and its deliveries' history.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.audit.service import Actor, EventType, record_event
from vectorgate.db import new_id, newest_first_page, utcnow
from vectorgate.errors import AppError, ErrorCode, bad_request, not_found
from vectorgate.schemas import iso_millis
from vectorgate.security.encryption import DecryptionError, Keyring, Secret
from vectorgate.webhooks.destinations import Destination
from vectorgate.webhooks.events import WEBHOOK_PING, raise_event
from vectorgate.webhooks.models import Event, WebhookDelivery, WebhookEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # SPEC 10.1; Standard Webhooks allows 24 to 64
# Webhooks per organization: every event goes to each of them, and the list is not paged.
# A handful of receivers (an app, a queue, a log) is the use; Stripe allows 16 per mode.
MAX_WEBHOOKS_PER_ORG = 20


def generate_secret() -> Secret:
    """`whsec_` + base64 of 32 random bytes: the form Standard Webhooks libraries take."""
    return Secret(SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode())


@dataclass(frozen=True, slots=True)
class IssuedWebhookSecret:
    record: WebhookEndpoint
    secret: Secret  # shown once, stored only encrypted

    def __repr__(self) -> str:
        return f"IssuedWebhookSecret(id={self.record.id!r})"


async def create_webhook(
    session: AsyncSession,
    keyring: Keyring,
    org_id: str,
    destination: Destination,
    *,
    event_types: Sequence[str] | None,
    description: str | None,
    actor: Actor,
) -> IssuedWebhookSecret:
    """A new endpoint for a checked destination (see destinations.check_destination)."""
    if event_types is not None and not event_types:
        raise bad_request("events must name at least one event type, or be null for all")
    existing = await session.scalar(
        select(func.count()).where(WebhookEndpoint.organization_id == org_id)
    )
    if (existing or 0) >= MAX_WEBHOOKS_PER_ORG:
        raise bad_request(
            f"An organization may have at most {MAX_WEBHOOKS_PER_ORG} webhooks; delete one first",
            max_webhooks=MAX_WEBHOOKS_PER_ORG,
        )
    webhook_id = new_id("whk_")
    secret = generate_secret()
    record = WebhookEndpoint(
        id=webhook_id,
        organization_id=org_id,
        url=destination.url,
        description=description,
        event_types=list(event_types) if event_types is not None else None,
        secret_ciphertext=keyring.encrypt(secret, associated_data=webhook_id),
        previous_secret_ciphertext=None,
        previous_secret_expires_at=None,
        created_at=utcnow(),
    )
    session.add(record)
    # The host only: a receiver's path or query may itself be a capability (a token
    # in the URL), and audit events outlive the webhook.
    details = {"host": destination.host, "events": record.event_types}
    record_event(session, org_id, actor, EventType.WEBHOOK_CREATED, webhook_id, details)
    await session.flush()
    return IssuedWebhookSecret(record, secret)


async def list_webhooks(session: AsyncSession, org_id: str) -> Sequence[WebhookEndpoint]:
    return (
        await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.organization_id == org_id)
            .order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id)
        )
    ).all()


async def get_webhook(session: AsyncSession, org_id: str, webhook_id: str) -> WebhookEndpoint:
    """The organization's webhook; 404 for unknown ids and other organizations' alike."""
    record = await session.get(WebhookEndpoint, webhook_id)
    if record is None or record.organization_id != org_id:
        raise not_found("Webhook not found", webhook_id=webhook_id)
    return record


async def delete_webhook(session: AsyncSession, org_id: str, webhook_id: str, actor: Actor) -> None:
    record = await get_webhook(session, org_id, webhook_id)
    host = _host_of(record.url)
    await session.delete(record)
    record_event(session, org_id, actor, EventType.WEBHOOK_DELETED, webhook_id, {"host": host})
    await session.flush()


async def rotate_webhook_secret(
    session: AsyncSession,
    keyring: Keyring,
    org_id: str,
    webhook_id: str,
    *,
    overlap_s: float,
    actor: Actor,
) -> IssuedWebhookSecret:
    """A new secret; the current one stays valid for `overlap_s` (0: not at all).

    At most two secrets sign: rotating again within the overlap drops the older previous.
    """
    record = await get_webhook(session, org_id, webhook_id)
    now = utcnow()
    secret = generate_secret()
    if overlap_s > 0:
        record.previous_secret_ciphertext = record.secret_ciphertext
        record.previous_secret_expires_at = now + timedelta(seconds=overlap_s)
    else:
        record.previous_secret_ciphertext = None
        record.previous_secret_expires_at = None
    record.secret_ciphertext = keyring.encrypt(secret, associated_data=record.id)
    expires = record.previous_secret_expires_at
    details = {"previous_secret_expires_at": iso_millis(expires) if expires else None}
    record_event(session, org_id, actor, EventType.WEBHOOK_SECRET_ROTATED, record.id, details)
    await session.flush()
    return IssuedWebhookSecret(record, secret)


def signing_secrets(
    keyring: Keyring, record: WebhookEndpoint, *, now: datetime | None = None
) -> list[Secret]:
    """The secrets a delivery made now is signed with: the current one, and the previous
    one while its overlap lasts (SPEC 10.1, 10.3)."""
    found = [keyring.decrypt(record.secret_ciphertext, associated_data=record.id)]
    expires = record.previous_secret_expires_at
    if record.previous_secret_ciphertext is not None and expires is not None:
        if (now or utcnow()) < expires:
            found.append(
                keyring.decrypt(record.previous_secret_ciphertext, associated_data=record.id)
            )
    return found


def _host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


async def reencrypt_secrets(session: AsyncSession, keyring: Keyring) -> tuple[int, list[str]]:
    """Re-encrypt every webhook secret (current and previous) not yet under the primary
    key, as `vectorgate credentials rotate` does for credentials, so that an old
    encryption key can be dropped. Returns how many webhooks were re-encrypted and the ids
    of those no configured key can decrypt (left as they are)."""
    rotated, undecryptable = 0, []
    for record in await session.scalars(select(WebhookEndpoint)):
        stale = [
            name
            for name in ("secret_ciphertext", "previous_secret_ciphertext")
            if (token := getattr(record, name)) is not None and keyring.needs_rotation(token)
        ]
        if not stale:
            continue
        try:
            secrets_ = {
                name: keyring.decrypt(getattr(record, name), associated_data=record.id)
                for name in stale
            }
        except DecryptionError:
            undecryptable.append(record.id)
            continue
        for name, secret in secrets_.items():
            setattr(record, name, keyring.encrypt(secret, associated_data=record.id))
        rotated += 1
    await session.flush()
    return rotated, undecryptable


async def ping(session: AsyncSession, org_id: str, webhook_id: str) -> str:
    """A `webhook.ping` event for this webhook alone, whatever its filter; its id."""
    record = await get_webhook(session, org_id, webhook_id)
    event_id = await raise_event(
        session, org_id, WEBHOOK_PING, {"webhook_id": record.id}, webhook_id=record.id
    )
    if event_id is None:  # deleted between the two reads
        raise not_found("Webhook not found", webhook_id=webhook_id)
    return event_id


async def list_deliveries(
    session: AsyncSession, org_id: str, webhook_id: str, *, limit: int, after: str | None
) -> tuple[Sequence[tuple[WebhookDelivery, str]], bool]:
    """A page of the webhook's deliveries, newest first, each with its event's type."""
    await get_webhook(session, org_id, webhook_id)
    cursor = None
    if after is not None:
        cursor = await session.get(WebhookDelivery, after)
        if cursor is None or cursor.webhook_id != webhook_id:
            raise not_found("The 'after' delivery was not found", after=after)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    rows, has_more = await newest_first_page(session, query, WebhookDelivery, cursor, limit)
    types = dict(
        (
            await session.execute(
                select(Event.id, Event.type).where(Event.id.in_({r.event_id for r in rows}))
            )
        ).all()
    )
    return [(row, types.get(row.event_id, "")) for row in rows], has_more


async def retry_delivery(
    session: AsyncSession, org_id: str, webhook_id: str, delivery_id: str
) -> WebhookDelivery:
    """A failed or delivered delivery back to `pending` for one attempt now (SPEC 10.1);
    409 while it is still pending (its schedule is retrying it)."""
    await get_webhook(session, org_id, webhook_id)
    record = await session.get(WebhookDelivery, delivery_id)
    if record is None or record.webhook_id != webhook_id:
        raise not_found("Delivery not found", delivery_id=delivery_id)
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status != "pending")
        .values(status="pending", last_chance=True, next_attempt_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise AppError(
            409,
            ErrorCode.CONFLICT,
            "The delivery is pending already: its attempts are not over",
            details={"delivery_id": delivery_id},
        )
    await session.refresh(record)
    return record
