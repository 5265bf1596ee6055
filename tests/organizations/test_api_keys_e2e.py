"""The API-key routes of SPEC 9.1 end to end: create (shown once), list, revoke, and no
key handing out more than it has."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e import Tenant, assert_error, register_store
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

LISTED_FIELDS = {"id", "name", "prefix", "scopes", "vector_store_ids", "expires_at", "created_at"}
ALL = ["upload", "read", "manage"]


def keys_url(tenant: Tenant, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}/api-keys", *parts])


def create(client: httpx.Client, tenant: Tenant, key: str, **body: Any) -> httpx.Response:
    return client.post(keys_url(tenant), json={"name": "made", **body}, headers={"X-API-Key": key})


def made(
    client: httpx.Client, tenant: Tenant, key: str | None = None, **body: Any
) -> dict[str, Any]:
    response = create(client, tenant, key or tenant.api_key, **body)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


def listed(client: httpx.Client, tenant: Tenant) -> list[dict[str, Any]]:
    response = client.get(keys_url(tenant), headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    data: list[dict[str, Any]] = body["data"]
    return data


def works(client: httpx.Client, tenant: Tenant, key: str, method: str = "GET") -> int:
    """The status `key` gets on the credentials list (read) or a bad credential (manage)."""
    url = f"/v1/organizations/{tenant.org_id}/credentials"
    if method == "GET":
        return client.get(url, headers={"X-API-Key": key}).status_code
    return client.post(url, json={}, headers={"X-API-Key": key}).status_code


# --- create and list -----------------------------------------------------------------


def test_a_new_key_is_shown_once_listed_without_it_and_works_within_its_scopes(
    client: httpx.Client, tenant: Tenant
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    issued = made(client, tenant, name="reader", scopes=["read"])

    assert set(issued) == LISTED_FIELDS | {"key"}
    assert issued["id"].startswith("key_")
    assert issued["key"].startswith("vg_")
    assert issued["prefix"] == issued["key"][:11]
    assert (issued["name"], issued["scopes"]) == ("reader", ["read"])
    assert (issued["vector_store_ids"], issued["expires_at"]) == (None, None)
    assert datetime.fromisoformat(issued["created_at"]) >= before

    [row] = [row for row in listed(client, tenant) if row["id"] == issued["id"]]
    assert row == {field: issued[field] for field in LISTED_FIELDS}
    text = client.get(keys_url(tenant), headers=tenant.headers).text
    assert issued["key"] not in text
    assert hashlib.sha256(issued["key"].encode()).hexdigest() not in text

    assert works(client, tenant, issued["key"]) == 200
    assert works(client, tenant, issued["key"], "POST") == 403


def test_scopes_come_back_once_each_in_one_order(client: httpx.Client, tenant: Tenant) -> None:
    issued = made(client, tenant, scopes=["manage", "upload", "manage"])
    assert issued["scopes"] == ["upload", "manage"]


def test_a_lifetime_sets_expires_at(client: httpx.Client, tenant: Tenant) -> None:
    before = datetime.now(UTC)
    issued = made(client, tenant, scopes=["read"], expires_in_s=3600)
    expires_at = datetime.fromisoformat(issued["expires_at"])
    assert before + timedelta(seconds=3599) <= expires_at <= datetime.now(UTC) + timedelta(hours=1)


def test_a_key_for_some_stores_names_them(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    first, second = register_store(client, tenant, fake), register_store(client, tenant, fake)
    issued = made(client, tenant, scopes=["upload"], vector_store_ids=[second, first, second])
    assert issued["vector_store_ids"] == [second, first]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-scopes"),
        pytest.param({"scopes": []}, id="empty-scopes"),
        pytest.param({"scopes": ["admin"]}, id="unknown-scope"),
        pytest.param({"scopes": "read"}, id="scopes-not-a-list"),
        pytest.param({"scopes": ["read"], "vector_store_ids": []}, id="empty-stores"),
        pytest.param({"scopes": ["read"], "vector_store_ids": ["vs_unknown"]}, id="unregistered"),
        pytest.param({"scopes": ["read"], "vector_store_ids": ["vs/x"]}, id="malformed-store"),
        pytest.param({"scopes": ["read"], "expires_in_s": 0}, id="zero-lifetime"),
        pytest.param({"scopes": ["read"], "expires_in_s": -60}, id="negative-lifetime"),
        pytest.param({"scopes": ["read"], "expires_in_s": True}, id="boolean-lifetime"),
        pytest.param({"scopes": ["read"], "expires_in_s": "60"}, id="string-lifetime"),
        pytest.param({"scopes": ["read"], "expires_in_s": 1.5}, id="fractional-lifetime"),
        pytest.param({"scopes": ["read"], "expires_in_s": 10**12}, id="endless-lifetime"),
        pytest.param({"scopes": ["read"], "name": ""}, id="empty-name"),
        pytest.param({"scopes": ["read"], "name": "a\nb"}, id="control-in-name"),
    ],
)
def test_an_impossible_key_is_400_and_not_made(
    client: httpx.Client, tenant: Tenant, body: dict[str, Any]
) -> None:
    before = listed(client, tenant)
    response = client.post(keys_url(tenant), json=body, headers=tenant.headers)
    assert_error(response, 400, "INVALID_REQUEST")
    assert listed(client, tenant) == before


# --- no escalation -------------------------------------------------------------------


def test_a_key_grants_no_scope_it_does_not_have(client: httpx.Client, tenant: Tenant) -> None:
    manager = made(client, tenant, scopes=["read", "manage"])["key"]
    before = listed(client, tenant)

    refused = create(client, tenant, manager, scopes=["read", "upload"])

    body = assert_error(refused, 403, "FORBIDDEN")
    assert body["error"]["details"] == {"scopes": ["upload"]}
    assert listed(client, tenant) == before
    assert made(client, tenant, manager, scopes=["read"])["scopes"] == ["read"]


def test_a_key_makes_no_key_that_outlives_it(client: httpx.Client, tenant: Tenant) -> None:
    mortal = made(client, tenant, scopes=ALL, expires_in_s=600)["key"]
    for lifetime in ({}, {"expires_in_s": None}, {"expires_in_s": 3600}):
        assert_error(create(client, tenant, mortal, scopes=["read"], **lifetime), 403, "FORBIDDEN")
    shorter = made(client, tenant, mortal, scopes=["read"], expires_in_s=60)
    assert datetime.fromisoformat(shorter["expires_at"]) < datetime.now(UTC) + timedelta(seconds=61)


def test_a_key_for_some_stores_makes_keys_only_for_those(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    mine, other = register_store(client, tenant, fake), register_store(client, tenant, fake)
    limited = made(client, tenant, scopes=ALL, vector_store_ids=[mine])["key"]

    assert_error(create(client, tenant, limited, scopes=["read"]), 403, "FORBIDDEN")
    outside = create(client, tenant, limited, scopes=["read"], vector_store_ids=[mine, other])
    body = assert_error(outside, 404, "NOT_FOUND")
    assert body["message"] == "Vector store not found"
    # A store nobody registered is outside its list too: the same 404, not the 400.
    unknown = create(client, tenant, limited, scopes=["read"], vector_store_ids=["vs_unknown"])
    assert assert_error(unknown, 404, "NOT_FOUND")["message"] == "Vector store not found"
    mine_only = made(client, tenant, limited, scopes=["read"], vector_store_ids=[mine])
    assert mine_only["vector_store_ids"] == [mine]


# --- revoke --------------------------------------------------------------------------


def test_a_revoked_key_is_401_and_no_longer_listed(client: httpx.Client, tenant: Tenant) -> None:
    issued = made(client, tenant, scopes=["read"])
    assert works(client, tenant, issued["key"]) == 200

    response = client.delete(keys_url(tenant, issued["id"]), headers=tenant.headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"id": issued["id"], "deleted": True}
    assert works(client, tenant, issued["key"]) == 401
    assert issued["id"] not in {row["id"] for row in listed(client, tenant)}
    again = client.delete(keys_url(tenant, issued["id"]), headers=tenant.headers)
    assert_error(again, 404, "NOT_FOUND")


def test_revoking_an_unknown_key_is_404(client: httpx.Client, tenant: Tenant) -> None:
    response = client.delete(keys_url(tenant, "key_" + "0" * 24), headers=tenant.headers)
    assert_error(response, 404, "NOT_FOUND")
