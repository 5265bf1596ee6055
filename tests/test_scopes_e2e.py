"""Scopes, store lists and expiry of API keys (SPEC 9.1) over every route.

`EXPECTED_SCOPES` is SPEC 9.1's table for this app's routes. The first test reads the
routes from the app itself and fails for a route that needs a key but has no `Access`
dependency deciding first, or whose `Access` asks for another scope than the table; so
a new route cannot be added without saying what it needs.

End to end, one tenant T with two registered stores (S1 and S2, each holding a
processed file) and keys made through the API:

- for every route in the matrix (tests/matrix.py), a key with the other two scopes but
  not the route's gets 403 in the route family's body, and nothing of T changes here
  or upstream; another organization's key without the scope still gets 404 on T's path
  (tenancy first);
- a key with every scope but only S2 gets 404 on every route naming S1, exactly as for
  a store that is not registered; on S2 the same routes work; registering a store takes
  it from the body and listing stores shows only S2;
- a key past its expiry gets 401 on every route;
- a key without `manage` may revoke itself, and no other key.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant

from tests.e2e import Service, register_store, upload_text
from tests.matrix import (
    ADMIN_API,
    FLOWISE,
    ORG,
    RANDOM_ID,
    ROUTES,
    STORE,
    STORES,
    Party,
    Refs,
    Route,
    assert_not_found,
    guarded_routes,
    make_party,
    names_a_store,
    org_url,
    same_as_nonexistent,
    snapshot,
    wait_until_final,
)
from vectorgate.deps import Access, AdminAccess, organization_in_path
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import run_cli

pytestmark = pytest.mark.e2e

UPLOAD, READ, MANAGE = "upload", "read", "manage"
ALL = (UPLOAD, READ, MANAGE)

# SPEC 9.1: both upload routes `upload`; every GET under the organization `read`, but
# audit events; everything else `manage`. SPEC 9.2: minting tokens `upload`, revoking
# them `upload` or `manage` (a route may accept any of several scopes).
EXPECTED_SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", FLOWISE): (UPLOAD,),
    ("POST", STORE + "/files/upload-base64"): (UPLOAD,),
    ("GET", ORG + "/credentials"): (READ,),
    ("GET", STORES): (READ,),
    ("GET", STORE): (READ,),
    ("GET", STORE + "/files"): (READ,),
    ("GET", STORE + "/files/{file_id}/status"): (READ,),
    ("GET", STORE + "/files/events"): (READ,),
    ("GET", ORG + "/api-keys"): (READ,),
    ("GET", ORG + "/audit-events"): (MANAGE,),
    ("POST", ORG + "/credentials"): (MANAGE,),
    ("DELETE", ORG + "/credentials/{credential_id}"): (MANAGE,),
    ("POST", STORES): (MANAGE,),
    ("DELETE", STORE): (MANAGE,),
    ("POST", ORG + "/api-keys"): (MANAGE,),
    ("DELETE", ORG + "/api-keys/{key_id}"): (MANAGE,),
    ("POST", ORG + "/upload-tokens"): (UPLOAD,),
    ("DELETE", ORG + "/upload-tokens/{token_id}"): (UPLOAD, MANAGE),
    ("POST", ORG + "/webhooks"): (MANAGE,),
    ("GET", ORG + "/webhooks"): (READ,),
    ("GET", ORG + "/webhooks/{webhook_id}"): (READ,),
    ("DELETE", ORG + "/webhooks/{webhook_id}"): (MANAGE,),
    ("POST", ORG + "/webhooks/{webhook_id}/rotate-secret"): (MANAGE,),
    ("POST", ORG + "/webhooks/{webhook_id}/ping"): (MANAGE,),
    ("GET", ORG + "/webhooks/{webhook_id}/deliveries"): (READ,),
    ("POST", ORG + "/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"): (MANAGE,),
}
# Routes a key may also use on itself without the scope: the path parameter naming it.
ON_ITSELF = {("DELETE", ORG + "/api-keys/{key_id}"): "key_id"}
# SPEC 9.2: the only routes an upload token may use (its store, its own files).
TOKEN_ROUTES = {
    ("POST", FLOWISE),
    ("POST", STORE + "/files/upload-base64"),
    ("GET", STORE + "/files/{file_id}/status"),
    ("GET", STORE + "/files/events"),
}
# SPEC 10.4: the one route that also takes a token in the `access_token` query parameter.
QUERY_TOKEN_ROUTES = {("GET", STORE + "/files/events")}


def scope_of(route: Route) -> tuple[str, ...]:
    return EXPECTED_SCOPES[route.method, route.path]


def takes_tokens(route: Route) -> bool:
    return (route.method, route.path) in TOKEN_ROUTES


# --- the declarations ----------------------------------------------------------------


def query_params(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= query_params(dependency)
    return names


def test_every_route_needing_a_key_decides_access_first_with_the_expected_scope() -> None:
    routes = guarded_routes()
    admin = {(m, p) for m, p in routes if p.startswith(ADMIN_API)}
    missing = sorted(set(routes) - admin - set(EXPECTED_SCOPES))
    assert not missing, f"routes without a row in EXPECTED_SCOPES: {missing}"
    stale = sorted(set(EXPECTED_SCOPES) - set(routes))
    assert not stale, f"rows in EXPECTED_SCOPES for routes the app does not have: {stale}"
    for (method, path), route in sorted(routes.items()):
        name = f"{method} {path}"
        calls = [d.call for d in route.dependant.dependencies]
        if path.startswith(ORG):
            assert organization_in_path in calls, f"{name} does not declare its org_id"
        deciding = [call for call in calls if call is not organization_in_path]
        # First: nothing (a body, a session, an upload slot) is touched before it decides.
        assert deciding, f"{name} has no Access dependency"
        access = deciding[0]
        if (method, path) in admin:
            assert isinstance(access, AdminAccess), f"{name}: its first dependency is not admin"
            assert not [c for c in deciding if isinstance(c, Access)], name
            continue
        assert isinstance(access, Access), f"{name}: its first dependency is not Access"
        assert [c for c in deciding if isinstance(c, Access)] == [access], name
        assert tuple(s.value for s in access.scopes) == EXPECTED_SCOPES[method, path], name
        assert access.or_self == ON_ITSELF.get((method, path)), name
        assert access.tokens == ((method, path) in TOKEN_ROUTES), name
        assert access.query_token == ((method, path) in QUERY_TOKEN_ROUTES), name
        # Every other route leaves `access_token` unread (and out of its schema).
        query = query_params(route.dependant)
        assert ("access_token" in query) == access.query_token, name
        store_param = "id" if path == FLOWISE else "vector_store_id"
        assert access.store_param == store_param, name
        names_store = "{" + store_param + "}" in path
        assert names_store == ("{vector_store_id}" in path or path == FLOWISE), name


def test_the_matrix_has_a_row_for_every_route_in_the_table() -> None:
    assert {(r.method, r.path) for r in ROUTES} == set(EXPECTED_SCOPES)


# --- the world -----------------------------------------------------------------------


@dataclass
class World:
    service: Service
    party: Party  # T, with its CLI key (every scope, every store) and S1
    other: Refs  # T's S2 and the file in it
    lacking: dict[tuple[str, ...], str]  # scopes -> a key of T with none of them
    token: str  # an upload token for S1, minted by T's key
    token_refs: Refs  # T's refs naming a file that token uploaded
    restricted: str  # a key of T with every scope, for S2 only
    expiring: str  # a key of T with every scope that expires during setup
    expires_at: datetime
    stranger: str  # another organization's key with `read` only


def create_key(client: httpx.Client, party: Party, **body: Any) -> dict[str, Any]:
    response = client.post(
        org_url(party.refs, "api-keys"),
        json={"name": "scoped", **body},
        headers=party.tenant.headers,
    )
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


def second_store(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    store = register_store(client, party.tenant, fake)
    record = upload_text(client, party.tenant, store, b"the other store\n")
    refs = replace(
        party.refs, vector_store_id=store, file_id=record["id"], upstream_file_id=record["file_id"]
    )
    wait_until_final(client, Party(party.tenant, refs))
    return refs


def token_of(client: httpx.Client, party: Party) -> tuple[str, Refs]:
    """An upload token for T's S1 and T's refs naming a file it uploaded."""
    response = client.post(
        org_url(party.refs, "upload-tokens"),
        json={"vector_store_id": party.refs.vector_store_id, "max_files": 1000},
        headers=party.tenant.headers,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    uploaded = route_named("upload-base64").build(party.refs).send(client, auth(token))
    assert uploaded.status_code == 200, uploaded.text
    record = uploaded.json()["files"][0]
    refs = replace(party.refs, file_id=record["id"], upstream_file_id=record["file_id"])
    wait_until_final(client, Party(party.tenant, refs))
    return token, refs


def route_named(name: str) -> Route:
    [route] = [r for r in ROUTES if r.name == name]
    return route


def stranger_key(service: Service) -> str:
    org = run_cli(service.env, "orgs", "create", f"stranger-{secrets.token_hex(3)}")["id"]
    key: str = run_cli(service.env, "api-keys", "create", "--org", org, "--scopes", READ)["key"]
    return key


@pytest.fixture(scope="module")
def world(service: Service, fake_openai: FakeOpenAI) -> World:
    # Reset once here and never again in this module: T's stores must stay upstream.
    fake_openai.reset()
    with ThreadPoolExecutor(2) as pool:  # the CLI is slow to start: both at once
        stranger = pool.submit(stranger_key, service)
        party = make_party(service, fake_openai)
    with httpx.Client(base_url=service.running.base_url, timeout=60) as client:
        other = second_store(client, party, fake_openai)
        expiring = create_key(client, party, scopes=list(ALL), expires_in_s=3)
        check = client.get(
            org_url(party.refs, "credentials"), headers={"X-API-Key": expiring["key"]}
        )
        assert check.status_code == 200, check.text  # it worked before it expired
        lacking = {
            scopes: create_key(client, party, scopes=[s for s in ALL if s not in scopes])["key"]
            for scopes in set(EXPECTED_SCOPES.values())
        }
        token, token_refs = token_of(client, party)
        restricted = create_key(
            client, party, scopes=list(ALL), vector_store_ids=[other.vector_store_id]
        )["key"]
    return World(
        service,
        party,
        other,
        lacking,
        token,
        token_refs,
        restricted,
        expiring["key"],
        datetime.fromisoformat(expiring["expires_at"]),
        stranger.result(),
    )


@pytest.fixture
def no_key_logged(world: World) -> Iterator[None]:
    """After the test: no key of the world leaked into the service log."""
    yield
    log = world.service.running.log()
    keys = [
        world.party.tenant.api_key,
        world.restricted,
        world.expiring,
        world.token,
        *world.lacking.values(),
    ]
    assert not [key[:6] for key in keys if key in log]


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def prepared(route: Route, client: httpx.Client, world: World, fake: FakeOpenAI) -> Refs:
    """T's refs, with what a successful call would consume made first (a throwaway
    credential, store or key) so that the refusal is shown to change nothing."""
    return route.prepare(client, world.party, fake) if route.prepare else world.party.refs


def assert_forbidden(response: httpx.Response, route: Route) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["success"] is False
    if route.flowise:
        assert set(body) == {"statusCode", "success", "message"}
        assert body["statusCode"] == 403
    else:
        assert body["error"]["code"] == "FORBIDDEN"
        scopes = scope_of(route)
        assert body["error"]["details"] == (
            {"required_scope": scopes[0]} if len(scopes) == 1 else {"required_scopes": list(scopes)}
        )


EVERY_ROUTE = [pytest.param(route, id=route.name) for route in ROUTES]
STORE_ROUTES = [pytest.param(r, id=r.name) for r in ROUTES if names_a_store(r)]
ORG_ROUTES_NOT_READ = [
    pytest.param(r, id=r.name) for r in ROUTES if not r.flowise and READ not in scope_of(r)
]
NOT_FOR_TOKENS = [pytest.param(r, id=r.name) for r in ROUTES if not takes_tokens(r)]
FOR_TOKENS = [pytest.param(r, id=r.name) for r in ROUTES if takes_tokens(r)]


# --- scopes --------------------------------------------------------------------------


@pytest.mark.parametrize("route", EVERY_ROUTE)
def test_a_key_without_the_routes_scope_is_403_and_changes_nothing(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, no_key_logged: None, route: Route
) -> None:
    refs = prepared(route, client, world, fake_openai)
    before = snapshot(client, world.party, fake_openai)

    response = route.build(refs).send(client, auth(world.lacking[scope_of(route)]))

    assert_forbidden(response, route)
    assert snapshot(client, world.party, fake_openai) == before


@pytest.mark.parametrize("route", ORG_ROUTES_NOT_READ)
def test_another_orgs_path_is_404_whatever_the_key_lacks(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, route: Route
) -> None:
    """Tenancy is decided before the scope: a 403 would tell the organization exists."""
    before = snapshot(client, world.party, fake_openai)
    foreign = route.build(world.party.refs).send(client, auth(world.stranger))
    random_org = RANDOM_ID["org_id"]()
    control = route.build(replace(world.party.refs, org_id=random_org)).send(
        client, auth(world.stranger)
    )

    assert_not_found(foreign, route)
    same_as_nonexistent(foreign, control, {"org_id": (world.party.refs.org_id, random_org)})
    assert snapshot(client, world.party, fake_openai) == before


def test_a_key_without_manage_may_revoke_itself(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    key = create_key(client, world.party, scopes=[UPLOAD, READ])
    url = org_url(world.party.refs, "api-keys", key["id"])

    response = client.delete(url, headers=auth(key["key"]))

    assert response.status_code == 200, response.text
    assert response.json() == {"id": key["id"], "deleted": True}
    assert client.get(url.rsplit("/", 1)[0], headers=auth(key["key"])).status_code == 401
    events = client.get(
        org_url(world.party.refs, "audit-events"), headers=world.party.tenant.headers
    ).json()["data"]
    [revoked] = [
        e for e in events if e["type"] == "api_key.revoked" and e["target_id"] == key["id"]
    ]
    assert revoked["actor"] == {"type": "api_key", "id": key["id"]}


# --- upload tokens -------------------------------------------------------------------


@pytest.mark.parametrize("route", NOT_FOR_TOKENS)
def test_an_upload_token_is_403_on_every_route_it_was_not_made_for(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, no_key_logged: None, route: Route
) -> None:
    refs = prepared(route, client, world, fake_openai)
    before = snapshot(client, world.party, fake_openai)

    response = route.build(refs).send(client, auth(world.token))

    assert response.status_code == 403, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "FORBIDDEN"
    assert world.token not in response.text
    assert snapshot(client, world.party, fake_openai) == before


@pytest.mark.parametrize("route", FOR_TOKENS)
def test_an_upload_token_works_on_the_routes_made_for_it(
    world: World, client: httpx.Client, no_key_logged: None, route: Route
) -> None:
    response = route.build(world.token_refs).send(client, auth(world.token))
    assert response.status_code == route.ok, response.text
    names_files = "{file_id}" in route.path or "ids" in route.build(world.token_refs).params
    if names_files:  # the party's file, uploaded with a key: not the token's
        other = route.build(world.party.refs).send(client, auth(world.token))
        assert_not_found(other, route)


# --- stores --------------------------------------------------------------------------


@pytest.mark.parametrize("route", STORE_ROUTES)
def test_a_key_for_another_store_gets_404_like_an_unregistered_store(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, no_key_logged: None, route: Route
) -> None:
    refs = prepared(route, client, world, fake_openai)
    assert refs.vector_store_id != world.other.vector_store_id
    before = snapshot(client, world.party, fake_openai)

    refused = route.build(refs).send(client, auth(world.restricted))
    random_store = RANDOM_ID["vector_store_id"]()
    unknown = route.build(replace(refs, vector_store_id=random_store))
    control = unknown.send(client, world.party.tenant.headers)  # a key for every store

    assert_not_found(refused, route)
    same_as_nonexistent(refused, control, {"vector_store_id": (refs.vector_store_id, random_store)})
    assert snapshot(client, world.party, fake_openai) == before


@pytest.mark.parametrize("route", STORE_ROUTES)
def test_a_malformed_store_id_is_the_same_400_for_a_key_of_some_stores(
    world: World, client: httpx.Client, route: Route
) -> None:
    call = route.build(replace(world.party.refs, vector_store_id="vs_\u202egnp.exe"))
    limited = call.send(client, auth(world.restricted))
    unlimited = call.send(client, world.party.tenant.headers)
    assert limited.status_code == 400, limited.text
    assert limited.text == unlimited.text


@pytest.mark.parametrize("route", [p for p in STORE_ROUTES if not p.values[0].prepare])
def test_a_key_for_a_store_works_on_that_store(
    world: World, client: httpx.Client, no_key_logged: None, route: Route
) -> None:
    response = route.build(world.other).send(client, auth(world.restricted))
    assert response.status_code == route.ok, response.text


def register(client: httpx.Client, world: World, key: str, **body: str) -> httpx.Response:
    return client.post(
        org_url(world.party.refs, "vector-stores"),
        json={"credential_id": world.party.refs.credential_id, **body},
        headers=auth(key),
    )


def registered_ids(client: httpx.Client, world: World, key: str) -> list[str]:
    response = client.get(org_url(world.party.refs, "vector-stores"), headers=auth(key))
    assert response.status_code == 200, response.text
    return [store["id"] for store in response.json()["data"]]


def test_a_key_for_some_stores_registers_none_outside_them_like_unknown_ones(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    outside = fake_openai.create_vector_store(world.party.tenant.openai_key)
    unknown = "vs_" + secrets.token_hex(12)

    refused = register(client, world, world.restricted, vector_store_id=outside)
    control = register(client, world, world.party.tenant.api_key, vector_store_id=unknown)

    assert refused.status_code == 404, refused.text
    same_as_nonexistent(refused, control, {"vector_store_id": (outside, unknown)})
    assert outside not in registered_ids(client, world, world.party.tenant.api_key)


def test_a_key_for_some_stores_creates_no_new_store(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    upstream_calls = len(fake_openai.requests)

    response = register(client, world, world.restricted, name="new")

    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert len(fake_openai.requests) == upstream_calls


def test_a_key_for_a_store_may_register_it_again(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    main = world.party.tenant.api_key
    store = register_store(client, world.party.tenant, fake_openai)
    key = create_key(client, world.party, scopes=[MANAGE, READ], vector_store_ids=[store])["key"]
    unregistered = client.delete(
        org_url(world.party.refs, "vector-stores", store), headers=auth(main)
    )
    assert unregistered.status_code == 200, unregistered.text

    response = register(client, world, key, vector_store_id=store)

    assert response.status_code == 201, response.text
    assert registered_ids(client, world, key) == [store]


def test_a_key_for_some_stores_lists_only_those(world: World, client: httpx.Client) -> None:
    assert registered_ids(client, world, world.restricted) == [world.other.vector_store_id]
    everything = registered_ids(client, world, world.party.tenant.api_key)
    assert {world.party.refs.vector_store_id, world.other.vector_store_id} <= set(everything)


# --- expiry --------------------------------------------------------------------------


@pytest.mark.parametrize("route", EVERY_ROUTE)
def test_an_expired_key_is_401(
    world: World, client: httpx.Client, fake_openai: FakeOpenAI, no_key_logged: None, route: Route
) -> None:
    remaining_s = (world.expires_at - datetime.now(UTC)).total_seconds()
    time.sleep(max(remaining_s + 0.1, 0))  # the first of these tests waits for the expiry
    before = snapshot(client, world.party, fake_openai)

    response = route.build(world.party.refs).send(client, auth(world.expiring))

    assert response.status_code == 401, response.text
    body = response.json()
    if route.flowise:
        assert body["statusCode"] == 401
    else:
        assert body["error"]["code"] == "UNAUTHORIZED"
    assert snapshot(client, world.party, fake_openai) == before
