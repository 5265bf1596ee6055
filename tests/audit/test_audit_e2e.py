"""Audit events (SPEC 9.4) end to end: every change through the API and the command line
is listed with its actor, newest first, paginated like file lists, with no secret."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e import Service, Tenant, assert_error
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import register_store, run_cli

pytestmark = pytest.mark.e2e

EVENT_FIELDS = {"id", "type", "actor", "target_id", "details", "created_at"}
CLI = {"type": "cli", "id": None}


def org_url(tenant: Tenant, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}", *parts])


def page(client: httpx.Client, tenant: Tenant, **params: str) -> dict[str, Any]:
    response = client.get(org_url(tenant, "audit-events"), params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"object", "data", "has_more", "last_id"}
    assert body["object"] == "list"
    return body


def every_event(client: httpx.Client, tenant: Tenant) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    params = {"limit": "100"}
    while True:
        body = page(client, tenant, **params)
        events += body["data"]
        if not body["has_more"]:
            return events
        params["after"] = body["last_id"]


def newest(client: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    [event] = page(client, tenant, limit="1")["data"]
    assert set(event) == EVENT_FIELDS
    assert event["id"].startswith("aud_")
    return event


def key_id_of(client: httpx.Client, tenant: Tenant) -> str:
    response = client.get(org_url(tenant, "api-keys"), headers=tenant.headers)
    [key_id] = [k["id"] for k in response.json()["data"] if k["prefix"] == tenant.api_key[:11]]
    return str(key_id)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def test_each_change_through_the_api_is_listed_with_the_key_that_made_it(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    me = {"type": "api_key", "id": key_id_of(client, tenant)}
    headers = tenant.headers

    def expect(type_: str, target_id: str, details: dict[str, Any]) -> None:
        event = newest(client, tenant)
        assert (event["type"], event["actor"], event["target_id"]) == (type_, me, target_id)
        assert event["details"] == details

    openai_key = f"sk-audit-{secrets.token_hex(16)}"
    credential = ok(
        client.post(
            org_url(tenant, "credentials"),
            json={"name": "audited", "api_key": openai_key},
            headers=headers,
        ),
        201,
    )
    expect(
        "credential.created",
        credential["id"],
        {"name": "audited", "key_hint": credential["key_hint"], "base_url": None},
    )

    existing = fake.create_vector_store(openai_key, "existing")
    stores = org_url(tenant, "vector-stores")
    body = {"credential_id": credential["id"], "vector_store_id": existing}
    ok(client.post(stores, json=body, headers=headers), 201)
    details = {"name": "existing", "credential_id": credential["id"], "created_upstream": False}
    expect("vector_store.registered", existing, details)

    body = {"credential_id": credential["id"], "name": "fresh"}
    created = ok(client.post(stores, json=body, headers=headers), 201)["id"]
    details = {"name": "fresh", "credential_id": credential["id"], "created_upstream": True}
    expect("vector_store.registered", created, details)

    ok(client.delete(org_url(tenant, "vector-stores", existing), headers=headers))
    expect("vector_store.unregistered", existing, {"deleted_upstream": False})
    params = {"delete_upstream": "true"}
    ok(client.delete(org_url(tenant, "vector-stores", created), params=params, headers=headers))
    expect("vector_store.unregistered", created, {"deleted_upstream": True})

    ok(client.delete(org_url(tenant, "credentials", credential["id"]), headers=headers))
    expect("credential.deleted", credential["id"], {"name": "audited"})

    body = {"name": "ci", "scopes": ["read", "upload"], "vector_store_ids": None}
    key = ok(client.post(org_url(tenant, "api-keys"), json=body, headers=headers), 201)
    details = {
        "name": "ci",
        "prefix": key["prefix"],
        "scopes": ["upload", "read"],
        "vector_store_ids": None,
        "expires_at": None,
    }
    expect("api_key.created", key["id"], details)
    ok(client.delete(org_url(tenant, "api-keys", key["id"]), headers=headers))
    expect("api_key.revoked", key["id"], {"name": "ci", "prefix": key["prefix"]})


def test_changes_through_the_command_line_are_listed_with_the_cli_as_actor(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()  # orgs create, api-keys create, credentials create
    made = every_event(client, tenant)[::-1]  # oldest first
    assert [(e["type"], e["actor"]) for e in made] == [
        ("organization.created", CLI),
        ("api_key.created", CLI),
        ("credential.created", CLI),
    ]
    assert made[0]["target_id"] == tenant.org_id
    assert made[0]["details"]["name"].startswith("org-")
    assert made[2]["target_id"] == tenant.credential_id

    store = fake.create_vector_store(tenant.openai_key)
    register_store(service.env, tenant, store)
    event = newest(client, tenant)
    assert (event["type"], event["actor"], event["target_id"]) == (
        "vector_store.registered",
        CLI,
        store,
    )

    other = run_cli(service.env, "api-keys", "create", "--org", tenant.org_id, "--scopes", "read")
    run_cli(service.env, "api-keys", "revoke", other["id"])
    event = newest(client, tenant)
    assert (event["type"], event["actor"], event["target_id"]) == (
        "api_key.revoked",
        CLI,
        other["id"],
    )


def test_events_are_newest_first_and_paginate_like_file_lists(
    client: httpx.Client, service: Service
) -> None:
    tenant = service.new_tenant()
    for n in range(4):  # 3 events from the command line, 4 more here
        body = {"name": f"k{n}", "scopes": ["read"]}
        ok(client.post(org_url(tenant, "api-keys"), json=body, headers=tenant.headers), 201)
    everything = page(client, tenant, limit="100")
    assert everything["has_more"] is False
    events = everything["data"]
    assert len(events) == 7
    assert everything["last_id"] == events[-1]["id"]
    stamps = [datetime.fromisoformat(e["created_at"]) for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert [e["details"]["name"] for e in events[:4]] == ["k3", "k2", "k1", "k0"]

    walked, params = [], {"limit": "3"}
    while True:
        body = page(client, tenant, **params)
        walked += body["data"]
        assert body["has_more"] == (len(walked) < 7)
        if not body["has_more"]:
            break
        assert body["last_id"] == body["data"][-1]["id"]
        params["after"] = body["last_id"]
    assert walked == events

    last = page(client, tenant, after=events[-1]["id"])
    assert (last["data"], last["has_more"], last["last_id"]) == ([], False, None)


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"after": "not an id"}],
    ids=["limit-0", "limit-101", "limit-text", "malformed-after"],
)
def test_out_of_range_paging_is_400(
    client: httpx.Client, tenant: Tenant, params: dict[str, str]
) -> None:
    response = client.get(org_url(tenant, "audit-events"), params=params, headers=tenant.headers)
    assert_error(response, 400, "INVALID_REQUEST")


def test_an_unknown_after_cursor_is_404(client: httpx.Client, tenant: Tenant) -> None:
    after = {"after": "aud_" + "0" * 24}
    response = client.get(org_url(tenant, "audit-events"), params=after, headers=tenant.headers)
    assert_error(response, 404, "NOT_FOUND")


def test_no_event_holds_a_secret(client: httpx.Client, service: Service) -> None:
    tenant = service.new_tenant()
    headers = tenant.headers
    openai_key = f"sk-secret-{secrets.token_hex(16)}"
    credential = ok(
        client.post(
            org_url(tenant, "credentials"),
            json={"name": "secret", "api_key": openai_key},
            headers=headers,
        ),
        201,
    )
    ok(client.delete(org_url(tenant, "credentials", credential["id"]), headers=headers))
    body = {"scopes": ["read"], "expires_in_s": 600}
    key = ok(client.post(org_url(tenant, "api-keys"), json=body, headers=headers), 201)
    ok(client.delete(org_url(tenant, "api-keys", key["id"]), headers=headers))

    text = json.dumps(every_event(client, tenant))
    for secret in (tenant.api_key, key["key"], tenant.openai_key, openai_key):
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text
    assert key["prefix"] in text  # what may be shown is
