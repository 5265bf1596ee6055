"""What routes receive: process-wide resources, and the caller once `Access` has let it in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import openai
from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import Actor
from vectorgate.db import unit_of_work
from vectorgate.errors import forbidden, not_found, unauthorized
from vectorgate.organizations.models import Scope
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

_ID = re.compile(ID_PATTERN)
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts for, and what it may do there.

    Today always an API key. Upload tokens (SPEC 9.2) will be a second kind with the same
    shape (the upload scope, one store, an expiry of their own), so routes and `Access`
    ask this object, never the row it came from.
    """

    organization_id: str
    api_key_id: str
    scopes: frozenset[Scope]
    vector_store_ids: frozenset[str] | None  # None: every store of the organization
    expires_at: datetime | None

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes

    def may_use_store(self, vector_store_id: str) -> bool:
        return self.vector_store_ids is None or vector_store_id in self.vector_store_ids

    @property
    def actor(self) -> Actor:
        """How the audit events of this caller's changes name it."""
        return Actor("api_key", self.api_key_id)


async def authenticate_caller(
    request: Request,
    resources: ResourcesDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The live key (X-API-Key or Authorization: Bearer) a request carries, or 401.

    Routes do not use this directly but through `Access`, which also decides what the
    key may do there; FastAPI resolves it once per request however often it is named.
    """
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
    return Caller(
        organization_id=record.organization_id,
        api_key_id=record.id,
        scopes=frozenset(Scope(scope) for scope in record.scopes),
        vector_store_ids=(
            frozenset(record.vector_store_ids) if record.vector_store_ids is not None else None
        ),
        expires_at=record.expires_at,
    )


AuthenticatedDep = Annotated[Caller, Depends(authenticate_caller)]


class Access:
    """What a route needs, decided in one place before its handler runs (SPEC 2, 9.1).

    In this order, so that what a key cannot see never turns into a 403 that would
    confirm it exists:

    1. the key: missing, unknown, revoked or expired is 401;
    2. tenancy: an `org_id` in the path that is not the key's organization is 404,
       exactly as an organization that does not exist, whatever the key's scopes;
    3. the scope: 403 FORBIDDEN (the Flowise route answers it in its own body style);
       with `or_self`, a key may also act on itself where that path parameter is its id;
    4. the store: a vector store named in the path (`store_param`) outside the key's
       stores is 404, exactly as a store that is not registered.

    Routes that take a store from the body, or list stores, ask `Caller.may_use_store`.
    Each route declares one of the aliases below next to its path; a test enumerates
    the app's routes and fails for one without an `Access`.
    """

    def __init__(
        self, scope: Scope, *, store_param: str = "vector_store_id", or_self: str | None = None
    ) -> None:
        self.scope = scope
        self.store_param = store_param
        self.or_self = or_self

    def __repr__(self) -> str:
        return (
            f"Access({self.scope.value!r}, store_param={self.store_param!r}, "
            f"or_self={self.or_self!r})"
        )

    async def __call__(self, request: Request, caller: AuthenticatedDep) -> Caller:
        path = request.path_params
        org_id = path.get("org_id")
        if org_id is not None and org_id != caller.organization_id:
            raise not_found("Organization not found")
        if not caller.has_scope(self.scope) and not self._acts_on_itself(path, caller):
            raise forbidden(
                f"This API key does not have the {self.scope.value!r} scope this route needs",
                required_scope=self.scope.value,
            )
        store = path.get(self.store_param)
        # A malformed id is in no key's list: it goes on to the route's own 400, as it
        # would for a key of every store.
        if store is not None and _ID.fullmatch(store) and not caller.may_use_store(store):
            raise not_found("Vector store not found", vector_store_id=store)
        return caller

    def _acts_on_itself(self, path: Mapping[str, Any], caller: Caller) -> bool:
        return self.or_self is not None and path.get(self.or_self) == caller.api_key_id


# One alias per kind of route; SPEC 9.1 says which route needs which scope.
UploadCaller = Annotated[Caller, Depends(Access(Scope.UPLOAD))]
ReadCaller = Annotated[Caller, Depends(Access(Scope.READ))]
ManageCaller = Annotated[Caller, Depends(Access(Scope.MANAGE))]
# The Flowise route names its vector store `id`.
FlowiseUploadCaller = Annotated[Caller, Depends(Access(Scope.UPLOAD, store_param="id"))]
# Revoking a key: `manage`, or the key itself (SPEC 9.1).
ManageOrSelfCaller = Annotated[Caller, Depends(Access(Scope.MANAGE, or_self="key_id"))]


def organization_in_path(org_id: str) -> None:
    """Declares `{org_id}` (for the schema) on the routers under /v1/organizations/{org_id};
    `Access` is what compares it with the caller's organization."""
    del org_id


ORGANIZATION_PATH = Depends(organization_in_path)

PathId = Annotated[str, Path(pattern=ID_PATTERN)]
