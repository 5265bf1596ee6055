"""Tenant isolation (SPEC section 2) over every route of the organization API and Flowise.

Tenants A and B each have a credential, a registered vector store and an uploaded file
record. For every route in ROUTES, each case is its own test:

(a) B's key on A's organization path: 404 NOT_FOUND, exactly as for an organization
    that does not exist;
(b) B's key on B's own path (or the org-less Flowise route) naming A's credential,
    vector store, file, API key, audit event, upload token, webhook or delivery: 404, exactly as
    for a random id that does not exist (a new key naming A's store: 400, as for any
    unregistered store);
(c) no key (also with a request that is otherwise invalid), a malformed key, an unknown
    key and a revoked key (as `X-API-Key` and as Bearer): 401;
(d) a valid key works both as `X-API-Key` and as `Authorization: Bearer` (tenant C, so
    the successful writes never touch A or B);
(e) hostile values in place of each id (NUL, 10,000 characters, quoting, RTL override):
    a clean 400 (or the organization's usual 404), never a 5xx.

Idempotency keys are per organization too: C and D sending the same `Idempotency-Key`
with the same body each get an upload of their own, never the other's stored answer.

After every (a), (b) and (c) request nothing of A or B has changed, here or upstream.
`test_every_org_and_flowise_route_is_in_the_matrix` reads the routes from the app
itself, so a new route fails the suite until it has a row in ROUTES (tests/matrix.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from tests.e2e import Service
from tests.matrix import (
    ADMIN_API,
    ADMIN_ROUTES,
    FLOWISE_API,
    OPEN_PATHS,
    ORG_API,
    RANDOM_ID,
    ROUTES,
    Call,
    Party,
    Route,
    Swap,
    assert_not_found,
    declared_routes,
    make_party,
    org_url,
    same_as_nonexistent,
    snapshot,
)
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import run_cli

pytestmark = pytest.mark.e2e


# --- the world: tenants A, B (looked at) and C, D (written to) ----------------------


@dataclass
class World:
    service: Service
    a: Party
    b: Party
    c: Party
    d: Party
    revoked_key: str  # one of A's keys, revoked
    snapshots: dict[str, dict[str, Any]]

    @property
    def all_secrets(self) -> list[str]:
        parties = (self.a, self.b, self.c, self.d)
        return [
            self.revoked_key,
            *(s for p in parties for s in (p.tenant.api_key, p.tenant.openai_key)),
        ]


def revoked_key_of(client: httpx.Client, service: Service, party: Party) -> str:
    issued = run_cli(service.env, "api-keys", "create", "--org", party.refs.org_id)
    check = Call("GET", org_url(party.refs, "credentials"))
    assert check.send(client, {"X-API-Key": issued["key"]}).status_code == 200  # it did work
    run_cli(service.env, "api-keys", "revoke", issued["prefix"])
    key: str = issued["key"]
    return key


@pytest.fixture(scope="module")
def world(service: Service, fake_openai: FakeOpenAI) -> Iterator[World]:
    # Reset once here and never again in this module (no `fake` fixture): A's and B's
    # stores must stay upstream for every test.
    fake_openai.reset()

    def party_with_revoked_key() -> tuple[Party, str]:
        party = make_party(service, fake_openai)
        with httpx.Client(base_url=service.running.base_url, timeout=60) as client:
            return party, revoked_key_of(client, service, party)

    with ThreadPoolExecutor(4) as pool:  # the CLI is slow to start: make them all at once
        first = pool.submit(party_with_revoked_key)
        b, c, d = pool.map(lambda _: make_party(service, fake_openai), range(3))
        a, revoked = first.result()
    with httpx.Client(base_url=service.running.base_url, timeout=60) as client:
        snapshots = {"A": snapshot(client, a, fake_openai), "B": snapshot(client, b, fake_openai)}
        yield World(service, a, b, c, d, revoked, snapshots)


def assert_nothing_changed(world: World, client: httpx.Client, fake: FakeOpenAI) -> None:
    assert snapshot(client, world.a, fake) == world.snapshots["A"]
    assert snapshot(client, world.b, fake) == world.snapshots["B"]
    assert_no_secret_logged(world)


def assert_no_secret_logged(world: World) -> None:
    log = world.service.running.log()
    leaked = [secret[:6] + "..." for secret in world.all_secrets if secret in log]
    assert not leaked, f"secrets in the service log: {leaked}"


# --- the matrix ----------------------------------------------------------------------


def test_every_org_and_flowise_route_is_in_the_matrix() -> None:
    declared = declared_routes()
    assert declared, "no routes found"
    admin = {(m, p) for m, p in declared if p.startswith(ADMIN_API)}
    assert admin == {(route.method, route.path) for route in ADMIN_ROUTES}, "admin routes"
    unguarded = sorted(
        (m, p) for m, p in declared - admin if not p.startswith((ORG_API, FLOWISE_API))
    )
    unexpected = [(m, p) for m, p in unguarded if p not in OPEN_PATHS]
    assert not unexpected, f"routes outside the org API, Flowise and admin: {unexpected}"
    covered = {(route.method, route.path) for route in ROUTES}
    missing = sorted(declared - covered - set(unguarded) - admin)
    assert not missing, f"routes without a row in ROUTES (add them to the matrix): {missing}"
    stale = sorted(covered - declared)
    assert not stale, f"rows in ROUTES for routes the app does not have: {stale}"
    assert len({route.name for route in ROUTES}) == len(ROUTES)


def test_every_route_naming_an_id_has_a_foreign_id_case() -> None:
    for route in ROUTES:
        named = {part for part in route.path.split("/") if part.startswith("{")}
        if named - {"{org_id}"}:
            assert route.swaps, f"{route.name} names {named} but has no foreign-id case"


ORG_ROUTES = [pytest.param(r, id=r.name) for r in ROUTES if not r.flowise]
UPLOAD_ROUTE_NAMES = ("upload-base64", "flowise-upload")
FOREIGN_IDS = [pytest.param(r, s, id=f"{r.name}-{s.label}") for r in ROUTES for s in r.swaps]
BAD_KEYS = (
    "no-key",
    "no-key-and-a-broken-request",
    "malformed-key",
    "unknown-key",
    "revoked-key",
    "revoked-bearer",
)
AUTH_CASES = [pytest.param(r, k, id=f"{r.name}-{k}") for r in ROUTES for k in BAD_KEYS]
HEADER_STYLES = [
    pytest.param(r, style, id=f"{r.name}-{style}")
    for r in ROUTES
    for style in ("x-api-key", "bearer")
]


@pytest.mark.parametrize("route", ORG_ROUTES)
def test_another_orgs_path_is_404_like_an_org_that_does_not_exist(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, route: Route
) -> None:
    intruder = world.b.tenant.headers
    foreign = route.build(world.a.refs).send(client, intruder)
    random_org = RANDOM_ID["org_id"]()
    control = route.build(replace(world.a.refs, org_id=random_org)).send(client, intruder)

    assert_not_found(foreign, route)
    same_as_nonexistent(foreign, control, {"org_id": (world.a.refs.org_id, random_org)})
    assert_nothing_changed(world, client, fake_openai)


@pytest.mark.parametrize(("route", "swap"), FOREIGN_IDS)
def test_naming_another_orgs_id_is_404_like_an_id_that_does_not_exist(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, route: Route, swap: Swap
) -> None:
    ids = {name: (getattr(world.a.refs, name), RANDOM_ID[name]()) for name in swap.fields}
    foreign_call = route.build(replace(world.b.refs, **{n: p[0] for n, p in ids.items()}))
    control_call = route.build(replace(world.b.refs, **{n: p[1] for n, p in ids.items()}))
    assert foreign_call != route.build(world.b.refs), "the swap changes nothing in the request"
    intruder = world.b.tenant.headers
    foreign = foreign_call.send(client, intruder)
    control = control_call.send(client, intruder)

    assert_not_found(foreign, route)
    same_as_nonexistent(foreign, control, ids)
    assert_nothing_changed(world, client, fake_openai)


# (e) Ids no one hands out: a NUL (PostgreSQL cannot store one), too long for any
# column, SQL quoting, an RTL override. A 400 (the id alphabet is documented), or for the
# organization in the path the same 404 as for any other organization; never a 5xx.
HOSTILE_IDS = {
    "nul": "vs_\x00nul",
    "long": "x" * 10_000,
    "quote": "x' OR '1'='1",
    "rtl-override": "vs_\u202egnp.exe",
}
ORGANIZATION = Swap("its-organization", ("org_id",))
HOSTILE_CASES = [
    pytest.param(r, s, id=f"{r.name}-{s.label}")
    for r in ROUTES
    for s in (r.swaps if r.flowise else (ORGANIZATION, *r.swaps))
]


@pytest.mark.parametrize(("route", "swap"), HOSTILE_CASES)
def test_a_malformed_id_is_refused_cleanly(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, route: Route, swap: Swap
) -> None:
    for label, hostile in HOSTILE_IDS.items():
        call = route.build(replace(world.b.refs, **dict.fromkeys(swap.fields, hostile)))
        response = call.send(client, world.b.tenant.headers)

        if swap is ORGANIZATION:
            assert_not_found(response, route)
        else:
            assert response.status_code == 400, (label, response.text)
            body = response.json()
            if route.flowise:
                assert body["statusCode"] == 400
            else:
                assert body["error"]["code"] == "INVALID_REQUEST", (label, body)
    assert_nothing_changed(world, client, fake_openai)


@pytest.mark.parametrize(("route", "bad_key"), AUTH_CASES)
def test_missing_malformed_unknown_and_revoked_keys_are_401(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, route: Route, bad_key: str
) -> None:
    call = route.build(world.a.refs)
    if bad_key == "no-key-and-a-broken-request":  # the key is checked before anything else
        broken = {"limit": "0", "delete_upstream": "perhaps", "credential": ""}
        call = replace(call, params=broken, json=None, content=b"{", headers={})
    auth = {
        "no-key": {},
        "no-key-and-a-broken-request": {},
        "malformed-key": {"X-API-Key": "not-a-vectorgate-key"},
        "unknown-key": {"Authorization": f"Bearer vg_{secrets.token_urlsafe(32)}"},
        "revoked-key": {"X-API-Key": world.revoked_key},
        "revoked-bearer": {"Authorization": f"Bearer {world.revoked_key}"},
    }[bad_key]
    response = call.send(client, auth)

    assert response.status_code == 401, response.text
    body = response.json()
    assert body["success"] is False
    if route.flowise:
        assert body["statusCode"] == 401
    else:
        assert body["error"]["code"] == "UNAUTHORIZED"
    assert_nothing_changed(world, client, fake_openai)


@pytest.mark.parametrize(("route", "style"), HEADER_STYLES)
def test_a_valid_key_works_as_x_api_key_and_as_bearer(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, route: Route, style: str
) -> None:
    party = world.c
    refs = route.prepare(client, party, fake_openai) if route.prepare else party.refs
    key = party.tenant.api_key
    auth = {"X-API-Key": key} if style == "x-api-key" else {"Authorization": f"Bearer {key}"}
    response = route.build(refs).send(client, auth)

    assert response.status_code == route.ok, response.text
    assert party.tenant.openai_key not in response.text
    assert_no_secret_logged(world)


UPLOAD_ROUTES = [pytest.param(r, id=r.name) for r in ROUTES if r.name in UPLOAD_ROUTE_NAMES]


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
def test_the_same_idempotency_key_in_two_orgs_uploads_twice(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, route: Route
) -> None:
    shared = {"Idempotency-Key": f"shared-{secrets.token_hex(8)}"}
    uploaded = {}
    for party in (world.c, world.d):
        call = route.build(party.refs)
        call = replace(call, headers={**call.headers, **shared})
        response = call.send(client, party.tenant.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        [file_id] = [f["id"] for f in body] if route.flowise else [body["files"][0]["file_id"]]
        uploaded[party.tenant.org_id] = file_id
        assert file_id in {f.id for f in fake_openai.files_for(party.tenant.openai_key)}
    assert len(set(uploaded.values())) == 2, uploaded


def test_a_key_for_another_orgs_store_is_refused_like_one_for_an_unknown_store(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    """SPEC 9.1: a new key naming a store not registered to the organization is a 400;
    another organization's store is exactly that."""

    def create_key_for(store: str) -> httpx.Response:
        body = {"name": "x", "scopes": ["read"], "vector_store_ids": [store]}
        call = Call("POST", org_url(world.b.refs, "api-keys"), json=body)
        return call.send(client, world.b.tenant.headers)

    foreign_store, random_store = world.a.refs.vector_store_id, RANDOM_ID["vector_store_id"]()
    foreign, control = create_key_for(foreign_store), create_key_for(random_store)

    assert foreign.status_code == 400, foreign.text
    same_as_nonexistent(foreign, control, {"vector_store_id": (foreign_store, random_store)})
    assert_nothing_changed(world, client, fake_openai)
