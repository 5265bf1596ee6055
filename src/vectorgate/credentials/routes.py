"""Credentials of an organization (SPEC section 4): OpenAI keys, shown only as a hint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from sqlalchemy import select

from vectorgate.credentials.models import Credential
from vectorgate.credentials.schemas import CredentialCreate, CredentialList, CredentialOut
from vectorgate.credentials.service import create_credential, remove_credential
from vectorgate.deps import (
    ORGANIZATION_PATH,
    ManageCaller,
    PathId,
    ReadCaller,
    ResourcesDep,
    SessionDep,
)
from vectorgate.errors import OrgErrorBody, documented_errors
from vectorgate.limits import json_body, json_request_body
from vectorgate.security.encryption import Secret
from vectorgate.vector_stores.schemas import Deleted

router = APIRouter(
    prefix="/v1/organizations/{org_id}/credentials",
    tags=["credentials"],
    dependencies=[ORGANIZATION_PATH],
    responses=documented_errors(OrgErrorBody, 400, 401, 403, 404, 409, 413, 415, 429, 500, 502),
)


@router.post("", status_code=201, openapi_extra=json_request_body(CredentialCreate))
async def add_credential(
    caller: ManageCaller,
    body: Annotated[CredentialCreate, json_body(CredentialCreate)],
    session: SessionDep,
    resources: ResourcesDep,
) -> CredentialOut:
    """Store an OpenAI API key, encrypted."""
    credential = await create_credential(
        session,
        resources.keyring,
        caller.organization_id,
        body.name,
        Secret(body.api_key.get_secret_value()),
        caller.actor,
        base_url=body.base_url,
        allowed_base_urls=resources.settings.upstream_allowed_base_urls,
    )
    return CredentialOut.model_validate(credential, from_attributes=True)


@router.get("")
async def list_credentials(caller: ReadCaller, session: SessionDep) -> CredentialList:
    """List the organization's credentials (key hints only)."""
    rows = await session.scalars(
        select(Credential)
        .where(Credential.organization_id == caller.organization_id)
        .order_by(Credential.created_at.desc(), Credential.id)
    )
    return CredentialList(
        data=[CredentialOut.model_validate(row, from_attributes=True) for row in rows]
    )


@router.delete("/{credential_id}")
async def delete_credential(
    credential_id: PathId, caller: ManageCaller, session: SessionDep
) -> Deleted:
    """Delete a credential that no registered vector store uses."""
    await remove_credential(
        session,
        caller.organization_id,
        credential_id,
        caller.actor,
        may_name_store=caller.may_use_store,
    )
    return Deleted(id=credential_id)
