"""What routes receive: process-wide resources, and the caller once `Access` has let it in."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import openai
from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.audit.service import Actor
from vectorgate.db import unit_of_work
from vectorgate.errors import AppError, ErrorCode, bad_request, forbidden, not_found, unauthorized
from vectorgate.organizations.models import Scope
from vectorgate.organizations.service import authenticate
from vectorgate.schemas import ID_PATTERN
from vectorgate.security.api_keys import UPLOAD_TOKEN_PREFIX
from vectorgate.security.encryption import Keyring
from vectorgate.settings import Settings
from vectorgate.upload_tokens.service import authenticate_upload_token
from vectorgate.uploads.staging import StagingArea
from vectorgate.uploads.work import ContentWork
from vectorgate.upstream.coalesce import BatchCoalescer
from vectorgate.vector_stores.stream_slots import StreamSlots


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything the lifespan creates; one per process, on `app.state.resources`."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    keyring: Keyring
    openai: openai.AsyncOpenAI
    staging: StagingArea
    content_work: ContentWork
    event_streams: StreamSlots = field(default_factory=StreamSlots)
    batches: BatchCoalescer = field(default_factory=BatchCoalescer)


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
class UploadTokenGrant:
    """What an upload token was minted for (SPEC 9.2): one store, through its credential."""

    id: str
    vector_store_id: str
    credential_id: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts for, and what it may do there.

    An API key, or an upload token (`upload_token` set): the token has the shape of a key
    of the `upload` scope for its one store, with its own expiry, and `api_key_id` is the
    key that minted it. Routes and `Access` ask this object, never the row it came from;
    `Access` lets a token through only on the routes that opt in.
    """

    organization_id: str
    api_key_id: str
    scopes: frozenset[Scope]
    vector_store_ids: frozenset[str] | None  # None: every store of the organization
    expires_at: datetime | None
    upload_token: UploadTokenGrant | None = None

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
    if key.startswith(UPLOAD_TOKEN_PREFIX):
        return await _token_caller(request, resources, key)
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


async def _token_caller(request: Request, resources: Resources, token: str) -> Caller:
    async with resources.sessionmaker() as session:
        found = await authenticate_upload_token(session, token)
    if found is None:
        raise unauthorized()  # the same answer as for a key: it names no token
    record, key = found
    request.state.organization_id = record.organization_id
    return Caller(
        organization_id=record.organization_id,
        api_key_id=key.id,
        scopes=frozenset({Scope.UPLOAD}),
        vector_store_ids=frozenset({record.vector_store_id}),
        expires_at=record.expires_at,
        upload_token=UploadTokenGrant(record.id, record.vector_store_id, record.credential_id),
    )


AuthenticatedDep = Annotated[Caller, Depends(authenticate_caller)]


async def authenticate_caller_or_query_token(
    request: Request,
    resources: ResourcesDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[
        str | None,
        Query(
            description="An upload token (`vgu_...`), for a browser's `EventSource`, which "
            "cannot send headers. Never an API key (401); not together with a key or "
            "token in a header (400)."
        ),
    ] = None,
) -> Caller:
    """`authenticate_caller`, or an upload token in the `access_token` query parameter.

    Only for the routes whose `Access` is a `QueryTokenAccess` (the status stream, SPEC
    10.4): every other route never reads the parameter. An API key is refused there
    without a lookup, so a key is never checked (nor its validity revealed) through a URL,
    which ends up in proxies' and browsers' histories. Two credentials in one request are
    a 400, as RFC 6750 (2) has it: which one would act is nobody's guess.
    """
    if access_token is None:
        return await authenticate_caller(request, resources, api_key, bearer)
    if api_key or bearer is not None:
        raise bad_request("Send one credential: a header or access_token, not both")
    if not access_token.startswith(UPLOAD_TOKEN_PREFIX):
        raise unauthorized("access_token takes an upload token (vgu_...), never an API key")
    return await _token_caller(request, resources, access_token)


QueryTokenAuthenticatedDep = Annotated[Caller, Depends(authenticate_caller_or_query_token)]


class Access:
    """What a route needs, decided in one place before its handler runs (SPEC 2, 9.1, 9.2).

    In this order, so that what a caller cannot see never turns into a 403 that would
    confirm it exists:

    1. the key or token: missing, unknown, revoked or expired is 401 (a token also when
       the key that minted it is revoked or expired);
    2. tenancy: an `org_id` in the path that is not the caller's organization is 404,
       exactly as an organization that does not exist, whatever the key's scopes;
    3. an upload token is 403 unless the route opts in (`tokens=True`); where it does,
       the token needs no scope: it was minted for exactly these routes;
    4. the scope: 403 FORBIDDEN (the Flowise route answers it in its own body style);
       a route may accept any of several scopes; with `or_self`, a key may also act on
       itself where that path parameter is its id;
    5. the store: a vector store named in the path (`store_param`) outside the caller's
       stores is 404, exactly as a store that is not registered (a token has one store).

    `QueryTokenAccess`, the one variant, also takes an upload token from the
    `access_token` query parameter; every other route leaves the parameter unread.

    Routes that take a store from the body, or list stores, ask `Caller.may_use_store`;
    routes that accept tokens check what else a token is bound to (its credential, its
    own files) in the handler. Each route declares one of the aliases below next to its
    path; a test enumerates the app's routes and fails for one without an `Access`, and
    holds `tokens` to the routes SPEC 9.2 lets a token use.
    """

    query_token = False  # see QueryTokenAccess

    def __init__(
        self,
        scope: Scope,
        *also: Scope,
        store_param: str = "vector_store_id",
        or_self: str | None = None,
        tokens: bool = False,
    ) -> None:
        self.scopes = (scope, *also)
        self.store_param = store_param
        self.or_self = or_self
        self.tokens = tokens

    def __repr__(self) -> str:
        return (
            f"Access({', '.join(repr(s.value) for s in self.scopes)}, "
            f"store_param={self.store_param!r}, or_self={self.or_self!r}, tokens={self.tokens}, "
            f"query_token={self.query_token})"
        )

    async def __call__(self, request: Request, caller: AuthenticatedDep) -> Caller:
        return self.decide(request, caller)

    def decide(self, request: Request, caller: Caller) -> Caller:
        path = request.path_params
        org_id = path.get("org_id")
        if org_id is not None and org_id != caller.organization_id:
            raise not_found("Organization not found")
        if caller.upload_token is not None:
            if not self.tokens:
                raise forbidden("An upload token may not use this route")
        elif not any(map(caller.has_scope, self.scopes)) and not self._acts_on_itself(path, caller):
            raise self._missing_scope()
        store = path.get(self.store_param)
        # A malformed id is in no key's list: it goes on to the route's own 400, as it
        # would for a key of every store.
        if store is not None and _ID.fullmatch(store) and not caller.may_use_store(store):
            raise not_found("Vector store not found", vector_store_id=store)
        return caller

    def _missing_scope(self) -> AppError:
        if len(self.scopes) == 1:
            return forbidden(
                f"This API key does not have the {self.scopes[0].value!r} scope this route needs",
                required_scope=self.scopes[0].value,
            )
        names = [scope.value for scope in self.scopes]
        return forbidden(
            f"This API key has none of the scopes this route needs ({' or '.join(names)})",
            required_scopes=names,
        )

    def _acts_on_itself(self, path: Mapping[str, Any], caller: Caller) -> bool:
        return self.or_self is not None and path.get(self.or_self) == caller.api_key_id


class QueryTokenAccess(Access):
    """`Access` for a route that takes upload tokens also from the `access_token` query
    parameter (see `authenticate_caller_or_query_token`); a subclass because FastAPI reads
    where a dependency's caller comes from in the signature of its `__call__`."""

    query_token = True

    def __init__(self, scope: Scope, *also: Scope, store_param: str = "vector_store_id") -> None:
        super().__init__(scope, *also, store_param=store_param, tokens=True)

    async def __call__(self, request: Request, caller: QueryTokenAuthenticatedDep) -> Caller:
        return self.decide(request, caller)


# One alias per kind of route; SPEC 9.1 says which route needs which scope, 9.2 which
# routes an upload token may use.
UploadCaller = Annotated[Caller, Depends(Access(Scope.UPLOAD))]
ReadCaller = Annotated[Caller, Depends(Access(Scope.READ))]
ManageCaller = Annotated[Caller, Depends(Access(Scope.MANAGE))]
# The base64 upload, for a key or for a token of its store.
UploadOrTokenCaller = Annotated[Caller, Depends(Access(Scope.UPLOAD, tokens=True))]
# The Flowise route names its vector store `id`; tokens too.
FlowiseUploadCaller = Annotated[
    Caller, Depends(Access(Scope.UPLOAD, store_param="id", tokens=True))
]
# A file's status: `read`, or the token that uploaded the file (checked in the handler).
StatusCaller = Annotated[Caller, Depends(Access(Scope.READ, tokens=True))]
# The status stream of files (SPEC 10.4): as a file's status, and the token may come as
# `access_token` in the query, for a browser's EventSource.
StatusStreamCaller = Annotated[Caller, Depends(QueryTokenAccess(Scope.READ))]
# Revoking an upload token: the scope that mints them, or `manage`.
UploadOrManageCaller = Annotated[Caller, Depends(Access(Scope.UPLOAD, Scope.MANAGE))]
# Revoking a key: `manage`, or the key itself (SPEC 9.1).
ManageOrSelfCaller = Annotated[Caller, Depends(Access(Scope.MANAGE, or_self="key_id"))]


@dataclass(frozen=True, slots=True)
class Admin:
    """An operator of the admin API (SPEC 9.3), known by a non-secret id of its token."""

    token_id: str

    @property
    def actor(self) -> Actor:
        return Actor("admin", self.token_id)


def admin_token_id(token: str) -> str:
    """The id audit events name an admin token by: a short prefix of its SHA-256, which
    tells operators' tokens apart (and survives reordering the setting) without being one.
    Admin tokens are long random strings, so the prefix helps no one guess a token."""
    return "adm_" + hashlib.sha256(token.encode()).hexdigest()[:12]


class AdminAccess:
    """What every admin route needs, decided before its handler runs (SPEC 9.3).

    1. the admin API is on: with no `VECTORGATE_ADMIN_TOKENS` every admin route answers
       the 404 of a path that does not exist;
    2. `Authorization: Bearer` with one of the configured tokens, compared in constant time
       with each (no early exit); anything else, an organization's API key too, is 401.
    """

    def __repr__(self) -> str:
        return "AdminAccess()"

    async def __call__(
        self,
        settings: SettingsDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Admin:
        if not settings.admin_tokens:
            raise AppError(404, ErrorCode.NOT_FOUND, "Not Found")
        given = bearer.credentials if bearer is not None else ""
        # Digests of equal length, so the comparison's time says nothing of a token's length.
        digest = hashlib.sha256(given.encode()).digest()
        found = ""
        for configured in settings.admin_tokens:
            token = configured.get_secret_value()
            if hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest()):
                found = token
        if not given or not found:
            raise unauthorized("Missing or invalid admin token")
        return Admin(admin_token_id(found))


AdminCaller = Annotated[Admin, Depends(AdminAccess())]


def organization_in_path(org_id: str) -> None:
    """Declares `{org_id}` (for the schema) on the routers under /v1/organizations/{org_id};
    `Access` is what compares it with the caller's organization."""
    del org_id


ORGANIZATION_PATH = Depends(organization_in_path)

PathId = Annotated[str, Path(pattern=ID_PATTERN)]
