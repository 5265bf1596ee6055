"""The admin API (SPEC 9.3) end to end: the real service against the fake OpenAI.

Off (no `VECTORGATE_ADMIN_TOKENS`) every admin route is the 404 of a path that does not
exist. On, only `Authorization: Bearer <admin token>` gets in: no token, a wrong one, the
admin token as `X-API-Key` and an organization's API key are 401 on every route. An
admin creates organizations and keys that work, lists and revokes them, and the audit
events name the admin token by an id that is not the token.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e import Service, assert_error, running_service
from tests.matrix import ADMIN_ROUTES, RANDOM_ID, Refs, Route
from vectorgate.deps import admin_token_id
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

FIRST = "adm-" + secrets.token_urlsafe(32)
SECOND = "adm-" + secrets.token_urlsafe(32)  # two at once: how a token is rotated
SERVICE_SETTINGS = {"admin_tokens": f"{FIRST}, {SECOND}"}

EVERY_ROUTE = [pytest.param(route, id=route.name) for route in ADMIN_ROUTES]


def admin(token: str = FIRST) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def service_off(
    database_url: str, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with running_service(database_url, fake_openai.base_url, tmp_path_factory) as service:
        yield service


@pytest.fixture(autouse=True)
def no_admin_token_logged(service: Service) -> Iterator[None]:
    yield
    log = service.running.log()
    assert FIRST not in log
    assert SECOND not in log


def some_refs(client: httpx.Client) -> Refs:
    """Ids the routes name: a new organization and a key of it (made by the admin API)."""
    org = client.post("/v1/admin/organizations", json={"name": "refs"}, headers=admin())
    assert org.status_code == 201, org.text
    org_id = org.json()["id"]
    key = client.post(
        f"/v1/admin/organizations/{org_id}/api-keys",
        json={"name": "refs", "scopes": ["read"]},
        headers=admin(),
    )
    assert key.status_code == 201, key.text
    return Refs(org_id, "", "", "", "", key.json()["id"], "", "", "", "")


@pytest.mark.parametrize("route", EVERY_ROUTE)
def test_off_every_admin_route_is_the_404_of_a_path_that_does_not_exist(
    service_off: Service, route: Route
) -> None:
    refs = Refs(*(RANDOM_ID[name]() for name in Refs.__dataclass_fields__))
    with httpx.Client(base_url=service_off.running.base_url, timeout=30) as client:
        answer = route.build(refs).send(client, admin())
        unknown = client.get("/v1/admin/no-such-route", headers=admin())
        schema = client.get("/openapi.json").json()
    assert answer.status_code == 404, answer.text
    assert answer.json() == unknown.json()
    assert not [path for path in schema["paths"] if path.startswith("/v1/admin")]


@pytest.mark.parametrize("route", EVERY_ROUTE)
def test_on_anything_but_an_admin_bearer_token_is_401(
    client: httpx.Client, service: Service, route: Route
) -> None:
    refs = some_refs(client)
    org_key = client.post(
        f"/v1/admin/organizations/{refs.org_id}/api-keys",
        json={"name": "org", "scopes": ["upload", "read", "manage"]},
        headers=admin(),
    ).json()["key"]
    for auth in (
        {},
        admin("adm-" + secrets.token_urlsafe(32)),
        admin(FIRST[:-1]),
        {"X-API-Key": FIRST},
        {"Authorization": f"Basic {FIRST}"},
        {"Authorization": f"Bearer {org_key}"},
        {"X-API-Key": org_key},
    ):
        response = route.build(refs).send(client, auth)
        assert_error(response, 401, "UNAUTHORIZED")
    assert route.build(refs).send(client, admin(SECOND)).status_code == route.ok


def test_an_admin_provisions_an_organization_whose_key_works(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    created = client.post("/v1/admin/organizations", json={"name": "acme"}, headers=admin())
    assert created.status_code == 201, created.text
    org = created.json()
    assert set(org) == {"id", "name", "created_at"}
    assert org["id"].startswith("org_")
    assert org["name"] == "acme"

    issued = client.post(
        f"/v1/admin/organizations/{org['id']}/api-keys",
        json={"name": "backend", "scopes": ["upload", "manage", "read"]},
        headers=admin(),
    )
    assert issued.status_code == 201, issued.text
    key = issued.json()
    assert key["key"].startswith("vg_")
    assert key["scopes"] == ["upload", "read", "manage"]
    openai_key = f"sk-admin-{secrets.token_hex(16)}"
    credential = client.post(
        f"/v1/organizations/{org['id']}/credentials",
        json={"name": "main", "api_key": openai_key},
        headers={"X-API-Key": key["key"]},
    )
    assert credential.status_code == 201, credential.text

    listed = client.get(f"/v1/admin/organizations/{org['id']}/api-keys", headers=admin())
    assert listed.status_code == 200, listed.text
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    assert "key" not in listed.json()["data"][0]

    revoked = client.delete(f"/v1/admin/api-keys/{key['id']}", headers=admin(SECOND))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"id": key["id"], "deleted": True}
    after = client.get(
        f"/v1/organizations/{org['id']}/credentials", headers={"X-API-Key": key["key"]}
    )
    assert_error(after, 401, "UNAUTHORIZED")
    again = client.delete(f"/v1/admin/api-keys/{key['id']}", headers=admin())
    assert_error(again, 404, "NOT_FOUND")
    assert (
        client.get(f"/v1/admin/organizations/{org['id']}/api-keys", headers=admin()).json()["data"]
        == []
    )

    # The audit events, read with a new key of the organization.
    reader = client.post(
        f"/v1/admin/organizations/{org['id']}/api-keys",
        json={"name": "auditor", "scopes": ["manage"]},
        headers=admin(),
    ).json()
    events = client.get(
        f"/v1/organizations/{org['id']}/audit-events",
        params={"limit": "100"},
        headers={"X-API-Key": reader["key"]},
    )
    assert events.status_code == 200, events.text
    by_type = {(e["type"], e["target_id"]): e for e in events.json()["data"]}
    first, second = admin_token_id(FIRST), admin_token_id(SECOND)
    assert first != second
    assert by_type["organization.created", org["id"]]["actor"] == {"type": "admin", "id": first}
    assert by_type["api_key.created", key["id"]]["actor"] == {"type": "admin", "id": first}
    assert by_type["api_key.revoked", key["id"]]["actor"] == {"type": "admin", "id": second}
    assert FIRST not in events.text
    assert SECOND not in events.text


def test_admin_key_creation_validates_like_the_org_route_without_escalation_limit(
    client: httpx.Client,
) -> None:
    refs = some_refs(client)
    url = f"/v1/admin/organizations/{refs.org_id}/api-keys"
    for body in (
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": ["read"], "vector_store_ids": ["vs_" + secrets.token_hex(12)]},
        {"name": "x", "scopes": ["read"], "expires_in_s": 0},
    ):
        assert_error(client.post(url, json=body, headers=admin()), 400, "INVALID_REQUEST")
    unknown = client.post(
        f"/v1/admin/organizations/{RANDOM_ID['org_id']()}/api-keys",
        json={"name": "x", "scopes": ["read"]},
        headers=admin(),
    )
    assert_error(unknown, 404, "NOT_FOUND")
    unknown_org = RANDOM_ID["org_id"]()
    listed = client.get(f"/v1/admin/organizations/{unknown_org}/api-keys", headers=admin())
    assert_error(listed, 404, "NOT_FOUND")


def test_organizations_are_listed_newest_first_in_pages(client: httpx.Client) -> None:
    made = []
    for i in range(3):
        response = client.post(
            "/v1/admin/organizations", json={"name": f"page-{i}"}, headers=admin()
        )
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])

    first = client.get("/v1/admin/organizations", params={"limit": "2"}, headers=admin())
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["object"] == "list"
    assert [o["id"] for o in page["data"]] == made[::-1][:2]
    assert page["has_more"] is True
    assert page["last_id"] == made[1]
    rest = client.get(
        "/v1/admin/organizations",
        params={"limit": "1", "after": page["last_id"]},
        headers=admin(),
    )
    assert [o["id"] for o in rest.json()["data"]] == [made[0]]
    missing = client.get(
        "/v1/admin/organizations", params={"after": RANDOM_ID["org_id"]()}, headers=admin()
    )
    assert_error(missing, 404, "NOT_FOUND")


def test_a_missing_name_is_400(client: httpx.Client) -> None:
    for body in ({}, {"name": ""}, {"name": "a\x00b"}):
        response = client.post("/v1/admin/organizations", json=body, headers=admin())
        assert_error(response, 400, "INVALID_REQUEST")
