"""Bodies of the webhook routes (SPEC 10.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, Field, StringConstraints, field_serializer, field_validator

from vectorgate.schemas import NAME_PATTERN, Timestamped, iso_millis
from vectorgate.webhooks.destinations import MAX_URL_LENGTH

# SPEC 10.2's event types. `webhook.ping` is delivered whatever a webhook's filter says;
# naming it in a filter is allowed and changes nothing.
WebhookEventType = Literal["file.completed", "file.failed", "batch.completed", "webhook.ping"]
EVENT_TYPES: tuple[str, ...] = get_args(WebhookEventType)

Description = Annotated[str, StringConstraints(max_length=500, pattern=NAME_PATTERN)]


class WebhookCreate(BaseModel):
    # Checked by the service (scheme, host, addresses): the schema only bounds it.
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    # None or missing: every event type. An empty list would deliver nothing: 400.
    events: list[WebhookEventType] | None = Field(
        default=None, min_length=1, max_length=len(EVENT_TYPES)
    )
    description: Description | None = None

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[WebhookEventType] | None) -> list[WebhookEventType] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each event type at most once")
        return value


class WebhookOut(Timestamped):
    id: str
    url: str
    events: list[str] | None  # None: every event type
    description: str | None
    created_at: datetime


class IssuedWebhook(WebhookOut):
    secret: str  # shown in this answer and on rotation only

    def __repr__(self) -> str:
        return f"IssuedWebhook(id={self.id!r})"


class RotatedSecret(BaseModel):
    secret: str

    def __repr__(self) -> str:
        return "RotatedSecret(secret='**********')"


class WebhookList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookOut]


class PingAccepted(BaseModel):
    event_id: str


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None  # the last response's status; None when none came
    last_error: str | None
    next_attempt_at: datetime | None  # None unless pending
    delivered_at: datetime | None
    created_at: datetime

    @field_serializer("next_attempt_at", "delivered_at", "created_at")
    def _iso(self, value: datetime | None) -> str | None:
        return iso_millis(value) if value is not None else None


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryOut]
    has_more: bool
    last_id: str | None
