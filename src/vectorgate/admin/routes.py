"""The admin API (SPEC 9.3): organizations and their API keys, for operators over HTTP.

Every route declares `AdminCaller` first: off (404) without admin tokens, else 401
without one of them. There is no escalation limit: the operator may grant anything.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from vectorgate.admin.schemas import OrganizationCreate, OrganizationList, OrganizationOut
from vectorgate.deps import AdminCaller, PathId, SessionDep
from vectorgate.errors import OrgErrorBody, documented_errors, not_found
from vectorgate.limits import admin_json_body, json_request_body
from vectorgate.organizations.schemas import ApiKeyCreate, ApiKeyList, ApiKeyOut, IssuedApiKey
from vectorgate.organizations.service import (
    create_api_key,
    create_organization,
    get_organization,
    lifetime_end,
    list_api_keys,
    list_organizations,
    revoke_key_by_id,
)
from vectorgate.schemas import ID_PATTERN
from vectorgate.vector_stores.schemas import Deleted

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses=documented_errors(OrgErrorBody, 400, 401, 404, 413, 500),
)


async def _existing_organization(session: SessionDep, org_id: str) -> str:
    if await get_organization(session, org_id) is None:
        raise not_found("Organization not found")
    return org_id


@router.post("/organizations", status_code=201, openapi_extra=json_request_body(OrganizationCreate))
async def admin_create_organization(
    admin: AdminCaller,
    body: Annotated[OrganizationCreate, admin_json_body(OrganizationCreate)],
    session: SessionDep,
) -> OrganizationOut:
    """Create an organization."""
    org = await create_organization(session, body.name, admin.actor)
    return OrganizationOut.model_validate(org, from_attributes=True)


@router.get("/organizations")
async def admin_list_organizations(
    admin: AdminCaller,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> OrganizationList:
    """List organizations, newest first (cursor: `after` = last id)."""
    del admin
    rows, has_more = await list_organizations(session, limit=limit, after=after)
    data = [OrganizationOut.model_validate(r, from_attributes=True) for r in rows]
    return OrganizationList(data=data, has_more=has_more, last_id=data[-1].id if data else None)


@router.post(
    "/organizations/{org_id}/api-keys",
    status_code=201,
    openapi_extra=json_request_body(ApiKeyCreate),
)
async def admin_create_api_key(
    org_id: PathId,
    admin: AdminCaller,
    body: Annotated[ApiKeyCreate, admin_json_body(ApiKeyCreate)],
    session: SessionDep,
) -> IssuedApiKey:
    """Create an API key of an organization (its `key` is shown in this answer only)."""
    await _existing_organization(session, org_id)
    issued = await create_api_key(
        session,
        org_id,
        body.name,
        admin.actor,
        scopes=body.scopes,
        vector_store_ids=body.vector_store_ids,
        expires_at=lifetime_end(body.expires_in_s),
    )
    shown = ApiKeyOut.model_validate(issued.record, from_attributes=True)
    return IssuedApiKey(**dict(shown), key=issued.key)


@router.get("/organizations/{org_id}/api-keys")
async def admin_list_api_keys(
    org_id: PathId, admin: AdminCaller, session: SessionDep
) -> ApiKeyList:
    """List an organization's API keys that are not revoked (never a key or its hash)."""
    del admin
    await _existing_organization(session, org_id)
    records = await list_api_keys(session, org_id)
    return ApiKeyList(data=[ApiKeyOut.model_validate(r, from_attributes=True) for r in records])


@router.delete("/api-keys/{key_id}")
async def admin_revoke_api_key(key_id: PathId, admin: AdminCaller, session: SessionDep) -> Deleted:
    """Revoke an API key of any organization."""
    await revoke_key_by_id(session, key_id, admin.actor)
    return Deleted(id=key_id)
