"""Webhook endpoints over HTTP (SPEC 10.1): `manage`, listing and reading `read`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from vectorgate.deps import (
    ORGANIZATION_PATH,
    ManageCaller,
    PathId,
    ReadCaller,
    ResourcesDep,
    SessionDep,
)
from vectorgate.errors import OrgErrorBody, bad_request, documented_errors
from vectorgate.limits import json_body, json_request_body
from vectorgate.schemas import ID_PATTERN
from vectorgate.vector_stores.schemas import Deleted
from vectorgate.webhooks.destinations import DestinationRefused, check_destination
from vectorgate.webhooks.models import Event, WebhookDelivery, WebhookEndpoint
from vectorgate.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    IssuedWebhook,
    PingAccepted,
    RotatedSecret,
    WebhookCreate,
    WebhookList,
    WebhookOut,
)
from vectorgate.webhooks.service import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_deliveries,
    list_webhooks,
    ping,
    retry_delivery,
    rotate_webhook_secret,
)

router = APIRouter(
    prefix="/v1/organizations/{org_id}/webhooks",
    tags=["webhooks"],
    dependencies=[ORGANIZATION_PATH],
    responses=documented_errors(OrgErrorBody, 400, 401, 403, 404, 409, 413, 500),
)


def shown(record: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=record.id,
        url=record.url,
        events=record.event_types,
        description=record.description,
        created_at=record.created_at,
    )


@router.post("", status_code=201, openapi_extra=json_request_body(WebhookCreate))
async def add_webhook(
    caller: ManageCaller,
    body: Annotated[WebhookCreate, json_body(WebhookCreate)],
    session: SessionDep,
    resources: ResourcesDep,
) -> IssuedWebhook:
    """Create a webhook (its `secret` is shown in this answer and on rotation only)."""
    try:
        # Before the session is used: a slow resolver holds no database connection.
        destination = await check_destination(
            body.url, allow_private=resources.settings.webhook_allow_private
        )
    except DestinationRefused as refused:
        raise bad_request(refused.reason, url=body.url) from None
    issued = await create_webhook(
        session,
        resources.keyring,
        caller.organization_id,
        destination,
        event_types=body.events,
        description=body.description,
        actor=caller.actor,
    )
    return IssuedWebhook(**dict(shown(issued.record)), secret=issued.secret.reveal())


@router.get("")
async def list_all(caller: ReadCaller, session: SessionDep) -> WebhookList:
    """List the organization's webhooks, newest first (never a secret)."""
    return WebhookList(
        data=[shown(r) for r in await list_webhooks(session, caller.organization_id)]
    )


@router.get("/{webhook_id}")
async def get_one(webhook_id: PathId, caller: ReadCaller, session: SessionDep) -> WebhookOut:
    """One webhook (never its secret)."""
    return shown(await get_webhook(session, caller.organization_id, webhook_id))


@router.delete("/{webhook_id}")
async def remove(webhook_id: PathId, caller: ManageCaller, session: SessionDep) -> Deleted:
    """Delete a webhook; nothing more is delivered to it."""
    await delete_webhook(session, caller.organization_id, webhook_id, caller.actor)
    return Deleted(id=webhook_id)


@router.post("/{webhook_id}/rotate-secret")
async def rotate_secret(
    webhook_id: PathId, caller: ManageCaller, session: SessionDep, resources: ResourcesDep
) -> RotatedSecret:
    """A new signing secret (shown once); the previous one keeps signing for
    `VECTORGATE_WEBHOOK_SECRET_OVERLAP_S`."""
    issued = await rotate_webhook_secret(
        session,
        resources.keyring,
        caller.organization_id,
        webhook_id,
        overlap_s=resources.settings.webhook_secret_overlap_s,
        actor=caller.actor,
    )
    return RotatedSecret(secret=issued.secret.reveal())


@router.post("/{webhook_id}/ping", status_code=202)
async def send_ping(webhook_id: PathId, caller: ManageCaller, session: SessionDep) -> PingAccepted:
    """Deliver a `webhook.ping` event to this webhook (whatever its `events` filter)."""
    return PingAccepted(event_id=await ping(session, caller.organization_id, webhook_id))


@router.get("/{webhook_id}/deliveries")
async def deliveries(
    webhook_id: PathId,
    caller: ReadCaller,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> DeliveryList:
    """The webhook's deliveries, newest first (cursor: `after` = last id)."""
    rows, has_more = await list_deliveries(
        session, caller.organization_id, webhook_id, limit=limit, after=after
    )
    data = [delivery_out(row, event_type) for row, event_type in rows]
    return DeliveryList(data=data, has_more=has_more, last_id=data[-1].id if data else None)


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry", status_code=202)
async def retry(
    webhook_id: PathId, delivery_id: PathId, caller: ManageCaller, session: SessionDep
) -> DeliveryOut:
    """Send a failed or delivered delivery once more, now (one attempt, no new schedule)."""
    record = await retry_delivery(session, caller.organization_id, webhook_id, delivery_id)
    event = await session.get(Event, record.event_id)
    return delivery_out(record, event.type if event is not None else "")


def delivery_out(record: WebhookDelivery, event_type: str) -> DeliveryOut:
    return DeliveryOut(
        id=record.id,
        event_id=record.event_id,
        event_type=event_type,
        status=record.status,
        attempts=record.attempts,
        last_status_code=record.last_status_code,
        last_error=record.last_error,
        next_attempt_at=record.next_attempt_at if record.status == "pending" else None,
        delivered_at=record.delivered_at,
        created_at=record.created_at,
    )
