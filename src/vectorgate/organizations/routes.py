"""An organization's API keys over HTTP (SPEC 9.1)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter

from vectorgate.deps import (
    ORGANIZATION_PATH,
    Caller,
    ManageCaller,
    ManageOrSelfCaller,
    PathId,
    ReadCaller,
    SessionDep,
)
from vectorgate.errors import OrgErrorBody, documented_errors, forbidden, not_found
from vectorgate.limits import json_body, json_request_body
from vectorgate.organizations.models import ALL_SCOPES, Scope
from vectorgate.organizations.schemas import ApiKeyCreate, ApiKeyList, ApiKeyOut, IssuedApiKey
from vectorgate.organizations.service import (
    create_api_key,
    lifetime_end,
    list_api_keys,
    revoke_organization_key,
)
from vectorgate.schemas import iso_millis
from vectorgate.vector_stores.schemas import Deleted

router = APIRouter(
    prefix="/v1/organizations/{org_id}/api-keys",
    tags=["api keys"],
    dependencies=[ORGANIZATION_PATH],
    responses=documented_errors(OrgErrorBody, 400, 401, 403, 404, 413, 500),
)


def refuse_escalation(
    caller: Caller,
    scopes: Sequence[Scope],
    vector_store_ids: Sequence[str] | None,
    expires_at: datetime | None,
) -> None:
    """A key hands out at most what it has itself: its scopes (403), its lifetime (403),
    its stores (all of them only if it has all: 403; one outside its list: 404, as for a
    store that does not exist)."""
    beyond = [scope for scope in ALL_SCOPES if scope in scopes and not caller.has_scope(scope)]
    if beyond:
        raise forbidden(
            f"This API key cannot grant the {beyond[0].value!r} scope, which it does not have",
            scopes=[scope.value for scope in beyond],
        )
    if caller.expires_at is not None and (expires_at is None or expires_at > caller.expires_at):
        raise forbidden(
            "This API key cannot create a key that outlives it "
            f"(it expires at {iso_millis(caller.expires_at)})"
        )
    if caller.vector_store_ids is None:
        return
    if vector_store_ids is None:
        raise forbidden(
            "This API key is restricted to some vector stores and cannot create a key for all"
        )
    for store in vector_store_ids:
        if not caller.may_use_store(store):
            raise not_found("Vector store not found", vector_store_id=store)


@router.post("", status_code=201, openapi_extra=json_request_body(ApiKeyCreate))
async def add_api_key(
    caller: ManageCaller,
    body: Annotated[ApiKeyCreate, json_body(ApiKeyCreate)],
    session: SessionDep,
) -> IssuedApiKey:
    """Create an API key (its `key` is shown in this answer only)."""
    expires_at = lifetime_end(body.expires_in_s)
    refuse_escalation(caller, body.scopes, body.vector_store_ids, expires_at)
    issued = await create_api_key(
        session,
        caller.organization_id,
        body.name,
        caller.actor,
        scopes=body.scopes,
        vector_store_ids=body.vector_store_ids,
        expires_at=expires_at,
    )
    shown = ApiKeyOut.model_validate(issued.record, from_attributes=True)
    return IssuedApiKey(**dict(shown), key=issued.key)


@router.get("")
async def list_keys(caller: ReadCaller, session: SessionDep) -> ApiKeyList:
    """List the organization's API keys that are not revoked (never a key or its hash)."""
    records = await list_api_keys(session, caller.organization_id)
    return ApiKeyList(data=[ApiKeyOut.model_validate(r, from_attributes=True) for r in records])


@router.delete("/{key_id}")
async def revoke_key(key_id: PathId, caller: ManageOrSelfCaller, session: SessionDep) -> Deleted:
    """Revoke an API key (any key may revoke itself, with or without `manage`)."""
    await revoke_organization_key(session, caller.organization_id, key_id, caller.actor)
    return Deleted(id=key_id)
