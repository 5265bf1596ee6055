"""Bodies of the audit-event list (SPEC 9.4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from vectorgate.audit.service import ActorType
from vectorgate.schemas import Timestamped


class AuditActor(BaseModel):
    type: ActorType
    id: str | None  # the API key's id; null for the command line


class AuditEventOut(Timestamped):
    id: str
    type: str
    actor: AuditActor
    target_id: str
    details: dict[str, Any]
    created_at: datetime


class AuditEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditEventOut]
    has_more: bool
    last_id: str | None
