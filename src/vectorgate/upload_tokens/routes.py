"""Minting and revoking upload tokens over HTTP (SPEC 9.2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from vectorgate.deps import (
    ORGANIZATION_PATH,
    PathId,
    SessionDep,
    UploadCaller,
    UploadOrManageCaller,
)
from vectorgate.errors import OrgErrorBody, documented_errors, not_found
from vectorgate.limits import json_body, json_request_body
from vectorgate.upload_tokens.schemas import IssuedUploadToken, UploadTokenCreate
from vectorgate.upload_tokens.service import mint_upload_token, revoke_upload_token
from vectorgate.vector_stores.schemas import Deleted
from vectorgate.vector_stores.service import get_vector_store

router = APIRouter(
    prefix="/v1/organizations/{org_id}/upload-tokens",
    tags=["upload tokens"],
    dependencies=[ORGANIZATION_PATH],
    responses=documented_errors(OrgErrorBody, 400, 401, 403, 404, 413, 500),
)


@router.post("", status_code=201, openapi_extra=json_request_body(UploadTokenCreate))
async def mint_token(
    caller: UploadCaller,
    body: Annotated[UploadTokenCreate, json_body(UploadTokenCreate)],
    session: SessionDep,
) -> IssuedUploadToken:
    """Mint an upload token for one vector store (its `token` is shown in this answer only)."""
    # A store outside the key's list is answered as one that is not registered.
    if not caller.may_use_store(body.vector_store_id):
        raise not_found("Vector store not found", vector_store_id=body.vector_store_id)
    store = await get_vector_store(session, caller.organization_id, body.vector_store_id)
    issued = await mint_upload_token(
        session,
        store,
        api_key_id=caller.api_key_id,
        key_expires_at=caller.expires_at,
        expires_in_s=body.expires_in_s,
        max_files=body.max_files,
        actor=caller.actor,
    )
    record = issued.record
    return IssuedUploadToken(
        id=record.id,
        token=issued.token,
        vector_store_id=record.vector_store_id,
        credential_id=record.credential_id,
        max_files=record.max_files,
        expires_at=record.expires_at,
        created_at=record.created_at,
    )


@router.delete("/{token_id}")
async def revoke_token(
    token_id: PathId, caller: UploadOrManageCaller, session: SessionDep
) -> Deleted:
    """Revoke an upload token; its next request is 401."""
    await revoke_upload_token(
        session, caller.organization_id, token_id, caller.vector_store_ids, caller.actor
    )
    return Deleted(id=token_id)
