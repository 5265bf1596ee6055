"""Upload tokens (SPEC 9.2) end to end: the real service against the fake OpenAI.

A token is minted by an `upload` key for one registered store and then used like a key:
both upload routes for that store (Flowise only with the store's credential), the
status of the files it uploaded, nothing else. Its expiry, its revocation and the end
of the key that minted it are 401 at once; `max_files` counts the files of its
successful requests, and a request over it is refused whole, leaving nothing upstream.
Which routes accept a token at all is the scope matrix's (test_scopes_e2e.py).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e import Service, assert_error, register_store
from tests.support import Part, content_type, multipart_body
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import Tenant

pytestmark = pytest.mark.e2e

# Every token minted in this module, to prove none of them reached the service log.
MINTED: list[str] = []


@pytest.fixture(autouse=True)
def no_token_logged(service: Service) -> Iterator[None]:
    yield
    log = service.running.log()
    assert not [token[:8] for token in MINTED if token in log]


def execute(database_url: str, sql: str, **params: Any) -> None:
    """Run one statement and commit it, on a connection of its own."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(sql), params)
        finally:
            await engine.dispose()

    asyncio.run(run())


def tokens_url(tenant: Tenant, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}/upload-tokens", *parts])


def store_url(tenant: Tenant, store: str, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}/vector-stores/{store}", *parts])


def new_key(client: httpx.Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/api-keys",
        json={"name": "minter", "scopes": ["upload"], **body},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


def mint(
    client: httpx.Client, tenant: Tenant, store: str, key: str | None = None, **body: Any
) -> dict[str, Any]:
    response = client.post(
        tokens_url(tenant),
        json={"vector_store_id": store, **body},
        headers={"X-API-Key": key or tenant.api_key},
    )
    assert response.status_code == 201, response.text
    token: dict[str, Any] = response.json()
    MINTED.append(token["token"])
    return token


def as_key(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def as_bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def base64_files(*names: str) -> dict[str, Any]:
    return {
        "files": [
            {
                "filename": name,
                "content": base64.b64encode(f"text of {name}\n".encode()).decode(),
                "mime_type": "text/plain",
            }
            for name in names
        ]
    }


def upload_base64(
    client: httpx.Client, tenant: Tenant, store: str, auth: dict[str, str], *names: str
) -> httpx.Response:
    return client.post(
        store_url(tenant, store, "files", "upload-base64"), json=base64_files(*names), headers=auth
    )


def upload_flowise(
    client: httpx.Client, store: str, credential: str, auth: dict[str, str], *names: str
) -> httpx.Response:
    parts = [Part(name, f"text of {name}\n".encode(), "text/plain") for name in names]
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{store}",
        params={"credential": credential},
        content=multipart_body(parts),
        headers={"Content-Type": content_type(), **auth},
    )


def assert_unauthorized(response: httpx.Response) -> None:
    assert_error(response, 401, "UNAUTHORIZED")


def upstream_files(fake: FakeOpenAI, tenant: Tenant) -> list[str]:
    return sorted(f.id for f in fake.files_for(tenant.openai_key))


# --- minting -------------------------------------------------------------------------


def test_minting_answers_the_token_once_and_records_an_event_without_it(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)

    token = mint(client, tenant, store, expires_in_s=120, max_files=3)

    assert set(token) == {
        "id",
        "token",
        "vector_store_id",
        "credential_id",
        "max_files",
        "expires_at",
        "created_at",
    }
    assert token["id"].startswith("upt_")
    assert len(token["id"]) == 28
    assert token["token"].startswith("vgu_")
    assert len(token["token"]) >= 36
    assert token["vector_store_id"] == store
    assert token["credential_id"] == tenant.credential_id
    assert token["max_files"] == 3
    events = client.get(
        f"/v1/organizations/{tenant.org_id}/audit-events", headers=tenant.headers
    ).text
    assert token["token"] not in events
    [event] = [
        e
        for e in httpx.Response(200, text=events).json()["data"]
        if e["type"] == "upload_token.created" and e["target_id"] == token["id"]
    ]
    assert event["details"] == {
        "vector_store_id": store,
        "max_files": 3,
        "expires_at": token["expires_at"],
    }
    assert event["actor"]["type"] == "api_key"


def test_defaults_are_ten_minutes_and_ten_files(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store)
    lifetime = datetime.fromisoformat(token["expires_at"]) - datetime.fromisoformat(
        token["created_at"]
    )
    assert token["max_files"] == 10
    assert 599 <= lifetime.total_seconds() <= 601


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in_s": 0},
        {"expires_in_s": 3601},
        {"expires_in_s": "60"},
        {"max_files": 0},
        {"max_files": 1001},
        {"max_files": True},
    ],
)
def test_a_lifetime_or_file_count_out_of_range_is_400(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, body: dict[str, Any]
) -> None:
    store = register_store(client, tenant, fake)
    response = client.post(
        tokens_url(tenant), json={"vector_store_id": store, **body}, headers=tenant.headers
    )
    assert_error(response, 400, "INVALID_REQUEST")


def test_a_token_never_outlives_the_key_minting_it(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    key = new_key(client, tenant, expires_in_s=60)

    response = client.post(
        tokens_url(tenant),
        json={"vector_store_id": store, "expires_in_s": 600},
        headers=as_key(key["key"]),
    )

    body = assert_error(response, 400, "INVALID_REQUEST")
    assert "outlive" in body["message"]
    assert mint(client, tenant, store, key["key"], expires_in_s=30)["max_files"] == 10


def test_a_store_not_registered_or_outside_the_keys_stores_is_404(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    other = register_store(client, tenant, fake)
    unregistered = fake.create_vector_store(tenant.openai_key)
    key = new_key(client, tenant, vector_store_ids=[store])

    for vector_store_id, auth in (
        (unregistered, tenant.headers),
        (other, as_key(key["key"])),
    ):
        response = client.post(
            tokens_url(tenant), json={"vector_store_id": vector_store_id}, headers=auth
        )
        assert_error(response, 404, "NOT_FOUND")


def test_a_key_without_upload_cannot_mint(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    key = new_key(client, tenant, scopes=["read", "manage"])
    response = client.post(
        tokens_url(tenant), json={"vector_store_id": store}, headers=as_key(key["key"])
    )
    assert_error(response, 403, "FORBIDDEN")


# --- using it ------------------------------------------------------------------------


def test_a_token_uploads_on_both_routes_and_sees_only_its_own_files(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store)
    sibling = mint(client, tenant, store)

    by_token = upload_base64(client, tenant, store, as_key(token["token"]), "mine.txt")
    assert by_token.status_code == 200, by_token.text
    [mine] = by_token.json()["files"]
    flowise = upload_flowise(
        client, store, token["credential_id"], as_bearer(token["token"]), "flowise.txt"
    )
    assert flowise.status_code == 200, flowise.text
    assert flowise.json()[0]["filename"] == "flowise.txt"
    by_key = upload_base64(client, tenant, store, tenant.headers, "theirs.txt")
    by_sibling = upload_base64(client, tenant, store, as_key(sibling["token"]), "sibling.txt")
    assert by_key.status_code == by_sibling.status_code == 200

    for file_id in (mine["id"], mine["file_id"]):
        status = client.get(
            store_url(tenant, store, "files", file_id, "status"), headers=as_key(token["token"])
        )
        assert status.status_code == 200, status.text
        assert status.json()["id"] == mine["id"]
    for other in (by_key.json()["files"][0], by_sibling.json()["files"][0]):
        for file_id in (other["id"], other["file_id"]):
            response = client.get(
                store_url(tenant, store, "files", file_id, "status"),
                headers=as_key(token["token"]),
            )
            body = assert_error(response, 404, "NOT_FOUND")
            assert body["message"] == "File not found"
    assert token["token"] not in by_token.text + flowise.text


def test_a_token_is_404_on_another_store_and_with_another_credential(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    other = register_store(client, tenant, fake)
    token = mint(client, tenant, store)
    throwaway = client.post(
        f"/v1/organizations/{tenant.org_id}/credentials",
        json={"name": "second", "api_key": tenant.openai_key},
        headers=tenant.headers,
    )
    assert throwaway.status_code == 201, throwaway.text
    before = upstream_files(fake, tenant)

    refused = [
        upload_base64(client, tenant, other, as_key(token["token"]), "a.txt"),
        upload_flowise(client, other, token["credential_id"], as_key(token["token"]), "a.txt"),
        upload_flowise(client, store, throwaway.json()["id"], as_key(token["token"]), "a.txt"),
    ]

    assert [r.status_code for r in refused] == [404, 404, 404], [r.text for r in refused]
    assert refused[0].json()["error"]["code"] == "NOT_FOUND"
    assert {r.json()["statusCode"] for r in refused[1:]} == {404}
    assert upstream_files(fake, tenant) == before


def test_a_token_is_403_on_the_routes_it_was_not_made_for(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store)
    org = f"/v1/organizations/{tenant.org_id}"
    for method, url, body in (
        ("GET", store_url(tenant, store, "files"), None),
        ("GET", store_url(tenant, store), None),
        ("GET", f"{org}/vector-stores", None),
        ("GET", f"{org}/credentials", None),
        ("POST", tokens_url(tenant), {"vector_store_id": store}),
        ("DELETE", tokens_url(tenant, token["id"]), None),
        ("DELETE", f"{org}/api-keys/key_{'0' * 24}", None),
    ):
        response = client.request(method, url, json=body, headers=as_key(token["token"]))
        assert_error(response, 403, "FORBIDDEN")
        assert token["token"] not in response.text


# --- its end -------------------------------------------------------------------------


def test_a_revoked_token_is_401_at_once(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store)
    manager = new_key(client, tenant, scopes=["manage"])
    assert upload_base64(client, tenant, store, as_key(token["token"]), "a.txt").status_code == 200

    revoked = client.delete(tokens_url(tenant, token["id"]), headers=as_key(manager["key"]))

    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"id": token["id"], "deleted": True}
    assert_unauthorized(upload_base64(client, tenant, store, as_key(token["token"]), "b.txt"))
    again = client.delete(tokens_url(tenant, token["id"]), headers=tenant.headers)
    assert_error(again, 404, "NOT_FOUND")
    events = client.get(f"/v1/organizations/{tenant.org_id}/audit-events", headers=tenant.headers)
    [event] = [
        e
        for e in events.json()["data"]
        if e["type"] == "upload_token.revoked" and e["target_id"] == token["id"]
    ]
    assert event["actor"] == {"type": "api_key", "id": manager["id"]}
    assert event["details"] == {"vector_store_id": store}


def test_a_key_with_only_read_cannot_revoke_a_token(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store)
    reader = new_key(client, tenant, scopes=["read"])
    response = client.delete(tokens_url(tenant, token["id"]), headers=as_key(reader["key"]))
    body = assert_error(response, 403, "FORBIDDEN")
    assert body["error"]["details"] == {"required_scopes": ["upload", "manage"]}


def test_an_expired_token_is_401(client: httpx.Client, tenant: Tenant, fake: FakeOpenAI) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store, expires_in_s=1)
    time.sleep(1.2)
    assert_unauthorized(upload_base64(client, tenant, store, as_key(token["token"]), "a.txt"))


def test_revoking_the_minting_key_ends_its_tokens(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    key = new_key(client, tenant)
    token = mint(client, tenant, store, key["key"])
    revoked = client.delete(
        f"/v1/organizations/{tenant.org_id}/api-keys/{key['id']}", headers=tenant.headers
    )
    assert revoked.status_code == 200, revoked.text
    assert_unauthorized(upload_base64(client, tenant, store, as_key(token["token"]), "a.txt"))


def test_the_minting_keys_expiry_ends_its_tokens(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, database_url: str
) -> None:
    """A token never outlives its key by construction; the key's row is moved into the past
    here to show the check itself joins the key."""
    store = register_store(client, tenant, fake)
    key = new_key(client, tenant, expires_in_s=3600)
    token = mint(client, tenant, store, key["key"])
    assert upload_base64(client, tenant, store, as_key(token["token"]), "a.txt").status_code == 200

    past = datetime(2000, 1, 1, tzinfo=UTC)
    # SQLite keeps timestamps as text in SQLAlchemy's format; PostgreSQL takes a datetime.
    value = past if database_url.startswith("postgresql") else f"{past:%Y-%m-%d %H:%M:%S.%f}"
    execute(
        database_url,
        "UPDATE api_keys SET expires_at = :past WHERE id = :id",
        past=value,
        id=key["id"],
    )

    assert_unauthorized(upload_base64(client, tenant, store, as_key(token["token"]), "b.txt"))


# --- max_files -----------------------------------------------------------------------


def test_a_request_over_max_files_is_refused_whole_and_leaves_nothing_upstream(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store, max_files=2)
    auth = as_key(token["token"])
    first = upload_base64(client, tenant, store, auth, "1.txt")
    assert first.status_code == 200, first.text
    kept = upstream_files(fake, tenant)

    over_base64 = upload_base64(client, tenant, store, auth, "2.txt", "3.txt")
    over_flowise = upload_flowise(client, store, token["credential_id"], auth, "2.txt", "3.txt")

    body = assert_error(over_base64, 403, "TOKEN_EXHAUSTED")
    assert body["error"]["details"] == {"max_files": 2}
    assert over_flowise.status_code == 403, over_flowise.text
    assert set(over_flowise.json()) == {"statusCode", "success", "message"}
    assert over_flowise.json()["statusCode"] == 403
    assert upstream_files(fake, tenant) == kept
    assert sorted(fake.vector_store_files(store)) == kept
    # The refused requests took nothing: the one file left is still there to upload.
    last = upload_flowise(client, store, token["credential_id"], auth, "2.txt")
    assert last.status_code == 200, last.text
    assert_error(upload_base64(client, tenant, store, auth, "4.txt"), 403, "TOKEN_EXHAUSTED")


def test_a_failed_request_gives_its_files_back_to_the_token(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    token = mint(client, tenant, store, max_files=1)
    auth = as_key(token["token"])
    fake.inject("POST", f"/vector_stores/{store}/file_batches", status=400, times=-1)

    failed = upload_base64(client, tenant, store, auth, "1.txt")

    assert failed.status_code >= 400, failed.text
    assert upstream_files(fake, tenant) == []
    fake.clear_faults()
    ok = upload_base64(client, tenant, store, auth, "1.txt")
    assert ok.status_code == 200, ok.text
    assert_error(upload_base64(client, tenant, store, auth, "2.txt"), 403, "TOKEN_EXHAUSTED")
