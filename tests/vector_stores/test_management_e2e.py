"""The management routes of SPEC section 4 end to end: credentials, vector stores, file records.

`vectorgate serve` runs against the fake OpenAI over real HTTP; what a route claims to
have done upstream is checked at the fake through the official `openai` SDK.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.e2e import Service, Tenant, assert_error
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

# Every test that uses the fake runs against OpenAI's behaviour and Llama Stack's.
UPSTREAM_DIALECTS = ("openai", "llama_stack")

CREDENTIAL_FIELDS = {"id", "name", "key_hint", "base_url", "created_at"}
VECTOR_STORE_FIELDS = {"id", "name", "credential_id", "created_at"}
FILE_RECORD_FIELDS = {
    "id",
    "file_id",
    "vector_store_id",
    "filename",
    "size",
    "mime_type",
    "processing_status",
    "error_message",
    "attributes",
    "sha256",
    "chunking_strategy",
    "created_at",
    "updated_at",
}


# --- helpers ------------------------------------------------------------------------


def org_path(tenant: Tenant, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}", *parts])


def assert_secret_absent(response: httpx.Response, secret: str) -> None:
    assert secret not in response.text
    for name, value in response.headers.items():
        assert secret not in name
        assert secret not in value


def new_openai_key() -> str:
    return f"sk-proj-{secrets.token_urlsafe(24)}"


def add_credential(
    client: httpx.Client, tenant: Tenant, api_key: str, name: str = "second"
) -> httpx.Response:
    return client.post(
        org_path(tenant, "credentials"),
        json={"name": name, "api_key": api_key},
        headers=tenant.headers,
    )


def add_store(client: httpx.Client, tenant: Tenant, **body: Any) -> httpx.Response:
    return client.post(
        org_path(tenant, "vector-stores"),
        json={"credential_id": tenant.credential_id, **body},
        headers=tenant.headers,
    )


def register(client: httpx.Client, tenant: Tenant, upstream: str) -> dict[str, Any]:
    response = add_store(client, tenant, vector_store_id=upstream)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def get_store(client: httpx.Client, tenant: Tenant, vector_store_id: str) -> httpx.Response:
    return client.get(org_path(tenant, "vector-stores", vector_store_id), headers=tenant.headers)


def delete_store(
    client: httpx.Client, tenant: Tenant, vector_store_id: str, **params: str
) -> httpx.Response:
    return client.delete(
        org_path(tenant, "vector-stores", vector_store_id), params=params, headers=tenant.headers
    )


def listed(client: httpx.Client, tenant: Tenant, collection: str) -> list[dict[str, Any]]:
    response = client.get(org_path(tenant, collection), headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    data: list[dict[str, Any]] = body["data"]
    return data


def upstream_store(fake: FakeOpenAI, openai_key: str, vector_store_id: str) -> Any:
    """The vector store as OpenAI (the fake) has it; raises openai.NotFoundError if gone."""
    with openai.OpenAI(api_key=openai_key, base_url=fake.base_url, max_retries=0) as sdk:
        return sdk.vector_stores.retrieve(vector_store_id)


def upstream_writes(fake: FakeOpenAI) -> list[tuple[str, str]]:
    """Creations at the fake (the background poller may read meanwhile; it never creates)."""
    return [
        (method, path)
        for method, path, _ in fake.requests
        if method == "POST" and path in ("/files", "/vector_stores")
    ]


def upload_text(
    client: httpx.Client, tenant: Tenant, vector_store_id: str, filename: str, text: bytes
) -> dict[str, Any]:
    response = client.post(
        org_path(tenant, "vector-stores", vector_store_id, "files", "upload-base64"),
        json={
            "files": [
                {
                    "filename": filename,
                    "content": base64.b64encode(text).decode(),
                    "mime_type": "text/plain",
                }
            ]
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()["files"][0]
    return record


def wait_until_final(
    client: httpx.Client, tenant: Tenant, vector_store_id: str, file_id: str, within: float = 10
) -> dict[str, Any]:
    path = org_path(tenant, "vector-stores", vector_store_id, "files", file_id, "status")
    deadline = time.monotonic() + within
    while True:
        response = client.get(path, headers=tenant.headers)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if status["processing_status"] in ("completed", "failed"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


# --- credentials --------------------------------------------------------------------


def test_creating_a_credential_answers_201_with_a_hint_and_never_the_key(
    service: Service, client: httpx.Client, tenant: Tenant
) -> None:
    api_key = new_openai_key()
    response = add_credential(client, tenant, api_key, name="analytics")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == CREDENTIAL_FIELDS
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert body["name"] == "analytics"
    assert body["key_hint"] == f"sk-...{api_key[-4:]}"
    assert body["created_at"].endswith("Z")
    assert_secret_absent(response, api_key)
    assert api_key not in service.running.log()


def test_listing_credentials_shows_every_credential_by_hint_only(
    service: Service, client: httpx.Client, tenant: Tenant
) -> None:
    keys = [new_openai_key(), new_openai_key()]
    created = []
    for number, api_key in enumerate(keys):
        response = add_credential(client, tenant, api_key, name=f"listed-{number}")
        assert response.status_code == 201, response.text
        created.append(response.json())

    response = client.get(org_path(tenant, "credentials"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    by_id = {c["id"]: c for c in response.json()["data"]}
    assert tenant.credential_id in by_id  # the one made with the CLI
    for credential in created:
        assert by_id[credential["id"]] == credential
    assert all(set(c) == CREDENTIAL_FIELDS for c in by_id.values())
    for api_key in [*keys, tenant.openai_key]:
        assert_secret_absent(response, api_key)
        assert api_key not in service.running.log()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"api_key": "sk-valid-looking-key"},
        {"name": "", "api_key": "sk-valid-looking-key"},
        {"name": "x", "api_key": "sk-1234"},  # shorter than any real key
        {"name": "x", "api_key": "sk-" + "k" * 600},
        {"name": "x", "api_key": "sk-with a-space"},
        {"name": "x", "api_key": "sk-with-a-nul\u0000"},
        {"name": "x", "api_key": "sk-with-a-newline\r\nX-Injected: 1"},
        {"name": "nul\u0000", "api_key": "sk-valid-looking-key"},
        {"name": "line\nbreak", "api_key": "sk-valid-looking-key"},
    ],
    ids=[
        "no-key",
        "no-name",
        "empty-name",
        "key-too-short",
        "key-too-long",
        "key-with-space",
        "key-with-nul",
        "key-with-header-injection",
        "name-with-nul",
        "name-with-line-break",
    ],
)
def test_invalid_credential_bodies_are_400_without_echoing_the_key(
    client: httpx.Client, tenant: Tenant, body: dict[str, str]
) -> None:
    before = listed(client, tenant, "credentials")
    response = client.post(org_path(tenant, "credentials"), json=body, headers=tenant.headers)
    assert_error(response, 400, "INVALID_REQUEST")
    if "api_key" in body:
        assert_secret_absent(response, body["api_key"])
    assert listed(client, tenant, "credentials") == before


def test_a_deleted_credential_is_gone_for_every_use(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    api_key = new_openai_key()
    credential = add_credential(client, tenant, api_key).json()["id"]
    upstream = fake.create_vector_store(api_key)

    response = client.delete(org_path(tenant, "credentials", credential), headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": credential, "deleted": True}
    assert credential not in {c["id"] for c in listed(client, tenant, "credentials")}

    again = client.delete(org_path(tenant, "credentials", credential), headers=tenant.headers)
    assert_error(again, 404, "NOT_FOUND")
    by_name = client.post(
        org_path(tenant, "vector-stores"),
        json={"credential_id": credential, "name": "after-delete"},
        headers=tenant.headers,
    )
    assert_error(by_name, 404, "NOT_FOUND")
    existing = client.post(
        org_path(tenant, "vector-stores"),
        json={"credential_id": credential, "vector_store_id": upstream},
        headers=tenant.headers,
    )
    assert_error(existing, 404, "NOT_FOUND")
    flowise = client.post(
        f"/api/v1/openai-assistants-vector-store/{upstream}",
        params={"credential": credential},
        files={"files": ("a.txt", b"hello", "text/plain")},
        headers=tenant.headers,
    )
    assert flowise.status_code == 404, flowise.text
    assert flowise.json()["statusCode"] == 404
    assert fake.files_for(api_key) == []
    assert upstream_writes(fake) == []


def test_deleting_a_credential_a_registered_store_uses_is_409_until_unregistered(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    api_key = new_openai_key()
    credential = add_credential(client, tenant, api_key).json()["id"]
    upstream = fake.create_vector_store(api_key)
    response = client.post(
        org_path(tenant, "vector-stores"),
        json={"credential_id": credential, "vector_store_id": upstream},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text

    in_use = client.delete(org_path(tenant, "credentials", credential), headers=tenant.headers)
    body = assert_error(in_use, 409, "CONFLICT")
    assert upstream in body["message"]
    assert_secret_absent(in_use, api_key)
    assert credential in {c["id"] for c in listed(client, tenant, "credentials")}
    assert get_store(client, tenant, upstream).status_code == 200

    assert delete_store(client, tenant, upstream).status_code == 200
    freed = client.delete(org_path(tenant, "credentials", credential), headers=tenant.headers)
    assert freed.status_code == 200, freed.text


def test_unknown_credential_ids_are_404(client: httpx.Client, tenant: Tenant) -> None:
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        response = client.delete(org_path(tenant, "credentials", unknown), headers=tenant.headers)
        assert_error(response, 404, "NOT_FOUND")


# --- vector stores ------------------------------------------------------------------


def test_creating_a_vector_store_by_name_creates_it_upstream_and_registers_it(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    response = add_store(client, tenant, name="Handbook")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == VECTOR_STORE_FIELDS
    assert body["id"].startswith("vs_")
    assert (body["name"], body["credential_id"]) == ("Handbook", tenant.credential_id)
    assert body["created_at"].endswith("Z")
    assert_secret_absent(response, tenant.openai_key)

    assert upstream_store(fake, tenant.openai_key, body["id"]).name == "Handbook"
    fetched = get_store(client, tenant, body["id"])
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == body


def test_registering_an_existing_store_takes_its_name_from_upstream(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    upstream = fake.create_vector_store(tenant.openai_key, name="Made elsewhere")
    body = register(client, tenant, upstream)
    assert set(body) == VECTOR_STORE_FIELDS
    assert (body["id"], body["name"]) == (upstream, "Made elsewhere")
    assert body["credential_id"] == tenant.credential_id
    assert get_store(client, tenant, upstream).json() == body


def test_registering_a_store_unknown_upstream_is_404_and_registers_nothing(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    missing = "vs_" + secrets.token_hex(12)
    assert_error(add_store(client, tenant, vector_store_id=missing), 404, "NOT_FOUND")
    assert_error(get_store(client, tenant, missing), 404, "NOT_FOUND")
    # A store that exists upstream, but for another OpenAI key, is just as unknown.
    foreign = fake.create_vector_store(new_openai_key())
    assert_error(add_store(client, tenant, vector_store_id=foreign), 404, "NOT_FOUND")
    assert_error(get_store(client, tenant, foreign), 404, "NOT_FOUND")


def test_registering_a_store_twice_is_409(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    upstream = fake.create_vector_store(tenant.openai_key)
    first = register(client, tenant, upstream)
    again = add_store(client, tenant, vector_store_id=upstream)
    body = assert_error(again, 409, "CONFLICT")
    assert upstream in body["message"]
    assert get_store(client, tenant, upstream).json() == first


@pytest.mark.parametrize(
    "body",
    [
        {"name": "both", "vector_store_id": "vs_abc"},
        {},
        {"name": ""},
        {"vector_store_id": "vs/../../files"},
        {"name": "nul\u0000"},
        {"name": None, "vector_store_id": "vs_abc"},
    ],
    ids=["name-and-id", "neither", "empty-name", "malformed-id", "name-with-nul", "null-name"],
)
def test_a_store_body_needs_exactly_one_of_name_and_id_else_400(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, body: dict[str, str]
) -> None:
    before = listed(client, tenant, "vector-stores")
    assert_error(add_store(client, tenant, **body), 400, "INVALID_REQUEST")
    assert listed(client, tenant, "vector-stores") == before
    assert upstream_writes(fake) == []  # refused before OpenAI was asked to create anything


def test_a_store_body_without_credential_is_400(client: httpx.Client, tenant: Tenant) -> None:
    response = client.post(
        org_path(tenant, "vector-stores"), json={"name": "orphan"}, headers=tenant.headers
    )
    assert_error(response, 400, "INVALID_REQUEST")


def test_a_store_with_an_unknown_credential_is_404(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    upstream = fake.create_vector_store(tenant.openai_key)
    for body in ({"name": "x"}, {"vector_store_id": upstream}):
        response = client.post(
            org_path(tenant, "vector-stores"),
            json={"credential_id": str(uuid.uuid4()), **body},
            headers=tenant.headers,
        )
        assert_error(response, 404, "NOT_FOUND")
    assert_error(get_store(client, tenant, upstream), 404, "NOT_FOUND")


def test_listing_stores_shows_what_is_registered_and_not_what_was_unregistered(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    before = {s["id"]: s for s in listed(client, tenant, "vector-stores")}
    kept = register(client, tenant, fake.create_vector_store(tenant.openai_key, name="kept"))
    created = add_store(client, tenant, name="created").json()
    dropped = register(client, tenant, fake.create_vector_store(tenant.openai_key))
    assert delete_store(client, tenant, dropped["id"]).status_code == 200

    stores = listed(client, tenant, "vector-stores")
    assert all(set(s) == VECTOR_STORE_FIELDS for s in stores)
    assert {s["id"]: s for s in stores} == before | {kept["id"]: kept, created["id"]: created}


def test_unknown_store_ids_are_404_on_get_and_delete(client: httpx.Client, tenant: Tenant) -> None:
    missing = "vs_" + secrets.token_hex(12)
    assert_error(get_store(client, tenant, missing), 404, "NOT_FOUND")
    assert_error(delete_store(client, tenant, missing), 404, "NOT_FOUND")
    assert_error(delete_store(client, tenant, missing, delete_upstream="true"), 404, "NOT_FOUND")


def test_deleting_a_store_unregisters_it_but_keeps_it_upstream(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    upstream = fake.create_vector_store(tenant.openai_key, name="keep me")
    register(client, tenant, upstream)
    upload_text(client, tenant, upstream, "kept.txt", b"still upstream")

    response = delete_store(client, tenant, upstream)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": upstream, "deleted": True}
    assert_error(get_store(client, tenant, upstream), 404, "NOT_FOUND")
    assert upstream not in {s["id"] for s in listed(client, tenant, "vector-stores")}
    files = client.get(org_path(tenant, "vector-stores", upstream, "files"), headers=tenant.headers)
    assert_error(files, 404, "NOT_FOUND")
    assert_error(delete_store(client, tenant, upstream), 404, "NOT_FOUND")

    assert upstream_store(fake, tenant.openai_key, upstream).name == "keep me"
    assert len(fake.vector_store_files(upstream)) == 1  # its files are left alone too
    assert register(client, tenant, upstream)["id"] == upstream  # and it can come back


def test_deleting_a_store_with_delete_upstream_deletes_it_at_openai(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    upstream = add_store(client, tenant, name="short-lived").json()["id"]
    assert upstream_store(fake, tenant.openai_key, upstream).id == upstream

    response = delete_store(client, tenant, upstream, delete_upstream="true")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": upstream, "deleted": True}
    assert_error(get_store(client, tenant, upstream), 404, "NOT_FOUND")
    # OpenAI answers 404; Llama Stack 400 "Vector_store '…' not found".
    with pytest.raises((openai.NotFoundError, openai.BadRequestError), match="not found|No such"):
        upstream_store(fake, tenant.openai_key, upstream)


def test_delete_upstream_of_a_store_already_gone_upstream_still_unregisters(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    upstream = fake.create_vector_store(tenant.openai_key)
    register(client, tenant, upstream)
    fake.reset()  # the store disappears at OpenAI behind our back

    response = delete_store(client, tenant, upstream, delete_upstream="true")
    assert response.status_code == 200, response.text
    assert_error(get_store(client, tenant, upstream), 404, "NOT_FOUND")


def test_delete_upstream_must_be_a_boolean(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    upstream = fake.create_vector_store(tenant.openai_key)
    register(client, tenant, upstream)
    response = delete_store(client, tenant, upstream, delete_upstream="perhaps")
    assert_error(response, 400, "INVALID_REQUEST")
    assert get_store(client, tenant, upstream).status_code == 200
    assert upstream_store(fake, tenant.openai_key, upstream).id == upstream


# --- file records -------------------------------------------------------------------

RECORD_COUNT = 7
FAILING = {1, 4}  # uploads that OpenAI fails; the rest complete


@dataclass(frozen=True)
class Records:
    tenant: Tenant
    vector_store_id: str
    uploaded: list[dict[str, Any]]  # oldest first, as uploaded
    finals: dict[str, dict[str, Any]]  # record id -> its final status

    def newest_first(self, status: str | None = None) -> list[str]:
        ids = [r["id"] for r in reversed(self.uploaded)]
        return [i for i in ids if status is None or self.finals[i]["processing_status"] == status]


@pytest.fixture(scope="module")
def records(service: Service, tenant: Tenant, fake_openai: FakeOpenAI) -> Records:
    """A vector store of its own with 7 file records, uploaded one by one; 2 end failed.

    Module-scoped: the records are final before any test sees them, so later resets of
    the fake (which forget the store upstream) cannot change them.
    """
    upstream = fake_openai.create_vector_store(tenant.openai_key)
    names = [f"records-{secrets.token_hex(4)}-{i}.txt" for i in range(RECORD_COUNT)]
    for i in FAILING:
        fake_openai.fail_files_named(names[i], code="invalid_file", message="cannot index")
    with httpx.Client(base_url=service.running.base_url, timeout=60) as client:
        register(client, tenant, upstream)
        uploaded = [
            upload_text(client, tenant, upstream, name, f"record {i}".encode())
            for i, name in enumerate(names)
        ]
        finals = {r["id"]: wait_until_final(client, tenant, upstream, r["id"]) for r in uploaded}
    return Records(tenant, upstream, uploaded, finals)


def list_files(client: httpx.Client, records: Records, **params: Any) -> httpx.Response:
    return client.get(
        org_path(records.tenant, "vector-stores", records.vector_store_id, "files"),
        params=params,
        headers=records.tenant.headers,
    )


def pages(client: httpx.Client, records: Records, **params: Any) -> list[dict[str, Any]]:
    """Follow the cursor from the first page to the last; returns every page's body."""
    result: list[dict[str, Any]] = []
    after: str | None = None
    while len(result) <= RECORD_COUNT:  # bounded: a cursor that loops fails below
        response = list_files(client, records, **params, **({"after": after} if after else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        result.append(page)
        if not page["has_more"]:
            return result
        after = page["last_id"]
        assert after == page["data"][-1]["id"]
    pytest.fail(f"pagination did not end: {result}")


def test_file_records_list_newest_first_with_their_final_status(
    client: httpx.Client, records: Records
) -> None:
    assert [records.finals[i]["processing_status"] for i in records.newest_first()] == [
        "failed" if n in FAILING else "completed" for n in reversed(range(RECORD_COUNT))
    ]
    response = list_files(client, records)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert [r["id"] for r in body["data"]] == records.newest_first()
    assert (body["has_more"], body["last_id"]) == (False, records.uploaded[0]["id"])
    by_id = {r["id"]: r for r in body["data"]}
    for uploaded in records.uploaded:
        record = by_id[uploaded["id"]]
        assert set(record) == FILE_RECORD_FIELDS
        assert record["vector_store_id"] == records.vector_store_id
        for key in ("file_id", "filename", "size", "mime_type", "sha256", "created_at"):
            assert record[key] == uploaded[key]
        final = records.finals[uploaded["id"]]
        for key in ("processing_status", "error_message"):
            assert record[key] == final[key]


def test_file_records_paginate_with_the_after_cursor_across_three_pages(
    client: httpx.Client, records: Records
) -> None:
    bodies = pages(client, records, limit=3)
    assert [len(b["data"]) for b in bodies] == [3, 3, 1]
    assert [b["has_more"] for b in bodies] == [True, True, False]
    assert [r["id"] for b in bodies for r in b["data"]] == records.newest_first()


def test_has_more_is_true_only_while_records_remain(client: httpx.Client, records: Records) -> None:
    for limit, has_more in ((RECORD_COUNT - 1, True), (RECORD_COUNT, False)):
        response = list_files(client, records, limit=limit)
        assert response.status_code == 200, response.text
        assert response.json()["has_more"] is has_more, limit
    completed = len(records.newest_first("completed"))
    exact = list_files(client, records, status="completed", limit=completed)
    assert exact.json()["has_more"] is False


def test_file_records_filter_by_status_and_paginate_within_it(
    client: httpx.Client, records: Records
) -> None:
    completed = pages(client, records, status="completed", limit=2)
    assert [len(b["data"]) for b in completed] == [2, 2, 1]
    assert [r["id"] for b in completed for r in b["data"]] == records.newest_first("completed")
    assert {r["processing_status"] for b in completed for r in b["data"]} == {"completed"}

    [failed] = pages(client, records, status="failed")
    assert [r["id"] for r in failed["data"]] == records.newest_first("failed")
    assert len(failed["data"]) == len(FAILING)
    assert {r["error_message"] for r in failed["data"]} == {"invalid_file: cannot index"}

    for status in ("pending", "processing"):
        [empty] = pages(client, records, status=status)
        assert empty == {"object": "list", "data": [], "has_more": False, "last_id": None}


def test_limit_bounds_are_1_and_100(client: httpx.Client, records: Records) -> None:
    for limit in (1, 100):
        response = list_files(client, records, limit=limit)
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == min(limit, RECORD_COUNT)
    for bad in ("0", "101", "-1", "ten"):
        assert_error(list_files(client, records, limit=bad), 400, "INVALID_REQUEST")


def test_an_unknown_status_filter_is_400(client: httpx.Client, records: Records) -> None:
    for status in ("done", "COMPLETED", ""):
        assert_error(list_files(client, records, status=status), 400, "INVALID_REQUEST")


def test_an_unknown_after_cursor_is_404(client: httpx.Client, records: Records) -> None:
    for after in ("vsf_" + secrets.token_hex(12), "file-" + secrets.token_hex(12), "nothing"):
        assert_error(list_files(client, records, after=after), 404, "NOT_FOUND")


def test_a_cursor_from_another_store_is_404(
    client: httpx.Client, records: Records, fake: FakeOpenAI
) -> None:
    other = fake.create_vector_store(records.tenant.openai_key)
    register(client, records.tenant, other)
    elsewhere = upload_text(client, records.tenant, other, "elsewhere.txt", b"x")
    response = list_files(client, records, after=elsewhere["id"])
    assert_error(response, 404, "NOT_FOUND")


def test_the_last_record_as_cursor_gives_an_empty_last_page(
    client: httpx.Client, records: Records
) -> None:
    response = list_files(client, records, after=records.uploaded[0]["id"])
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "list", "data": [], "has_more": False, "last_id": None}


def test_file_records_of_an_unregistered_store_are_404(
    client: httpx.Client, records: Records
) -> None:
    response = client.get(
        org_path(records.tenant, "vector-stores", "vs_" + secrets.token_hex(12), "files"),
        headers=records.tenant.headers,
    )
    assert_error(response, 404, "NOT_FOUND")
