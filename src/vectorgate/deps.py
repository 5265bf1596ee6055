"""What routes receive: process-wide resources and the caller's identity, as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import openai
from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import unit_of_work
from vectorgate.errors import not_found, unauthorized
from vectorgate.organizations.service import authenticate
from vectorgate.schemas import ID_PATTERN
from vectorgate.security.encryption import Keyring
from vectorgate.settings import Settings
from vectorgate.uploads.staging import StagingArea
from vectorgate.uploads.work import ContentWork


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything the lifespan creates; one per process, on `app.state.resources`."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    keyring: Keyring
    openai: openai.AsyncOpenAI
    staging: StagingArea
    content_work: ContentWork


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async for session in unit_of_work(resources.sessionmaker):
        yield session


# scope="function": commit when the handler returns, before the response goes out, so a
# client that acts on the response always finds what it created.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class Caller:
    organization_id: str
    api_key_id: str


async def get_caller(
    request: Request,
    resources: ResourcesDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The organization an API key (X-API-Key or Authorization: Bearer) acts for, or 401."""
    key = api_key or (bearer.credentials if bearer is not None else None)
    if not key:
        raise unauthorized()
    # A short session of its own: upload routes run for minutes and must not hold a
    # pooled connection while they wait on OpenAI.
    async with resources.sessionmaker() as session:
        record = await authenticate(session, key)
    if record is None:
        raise unauthorized()
    request.state.organization_id = record.organization_id  # for the access log
    return Caller(organization_id=record.organization_id, api_key_id=record.id)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_org_caller(org_id: str, caller: CallerDep) -> Caller:
    """The caller, if `org_id` in the path is its own organization; 404 otherwise."""
    if org_id != caller.organization_id:
        raise not_found("Organization not found")
    return caller


OrgCallerDep = Annotated[Caller, Depends(get_org_caller)]

PathId = Annotated[str, Path(pattern=ID_PATTERN)]
