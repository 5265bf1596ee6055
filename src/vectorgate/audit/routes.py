"""An organization's audit events over HTTP (SPEC 9.4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from vectorgate.audit.models import AuditEvent
from vectorgate.audit.schemas import AuditActor, AuditEventList, AuditEventOut
from vectorgate.audit.service import list_events
from vectorgate.deps import ORGANIZATION_PATH, ManageCaller, SessionDep
from vectorgate.errors import OrgErrorBody, documented_errors
from vectorgate.schemas import ID_PATTERN

router = APIRouter(
    prefix="/v1/organizations/{org_id}/audit-events",
    tags=["audit"],
    dependencies=[ORGANIZATION_PATH],
    responses=documented_errors(OrgErrorBody, 400, 401, 403, 404, 500),
)


def _out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.id,
        type=event.type,
        actor=AuditActor.model_validate({"type": event.actor_type, "id": event.actor_id}),
        target_id=event.target_id,
        details=event.details,
        created_at=event.created_at,
    )


@router.get("")
async def list_audit_events(
    caller: ManageCaller,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> AuditEventList:
    """List the organization's audit events, newest first (cursor: `after` = last id)."""
    rows, has_more = await list_events(session, caller.organization_id, limit=limit, after=after)
    data = [_out(row) for row in rows]
    return AuditEventList(data=data, has_more=has_more, last_id=data[-1].id if data else None)
