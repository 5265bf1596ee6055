"""The Flowise route end to end: `vectorgate serve` against the fake OpenAI over real HTTP.

Every row of SPEC 3.1's error table is here. After every request the service's staging
directory must be empty and no file may be left upstream that the caller does not own.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e import DEFAULT_SETTINGS, Service, Tenant
from tests.support import (
    Part,
    content_type,
    multipart_body,
    open_post,
    read_reply,
    staged_leftovers,
)
from vectorgate.testing import samples
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import run_cli

pytestmark = pytest.mark.e2e

# Every test that uses the fake runs against OpenAI's behaviour and Llama Stack's.
UPSTREAM_DIALECTS = ("openai", "llama_stack")

MiB = 1024 * 1024
BATCH_TIMEOUT_S = int(DEFAULT_SETTINGS["batch_timeout_s"])
ORG_UPLOAD_LIMIT = int(DEFAULT_SETTINGS["max_concurrent_uploads_per_org"])


@pytest.fixture
def vector_store(fake: FakeOpenAI, tenant: Tenant) -> str:
    return fake.create_vector_store(tenant.openai_key)


def upload(
    client: httpx.Client,
    tenant: Tenant,
    vector_store: str,
    parts: list[Part],
    *,
    credential: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{vector_store}",
        params={"credential": credential or tenant.credential_id},
        content=multipart_body(parts),
        headers={"X-API-Key": tenant.api_key, "Content-Type": content_type(), **(headers or {})},
    )


def flowise_target(tenant: Tenant, vector_store: str) -> str:
    return (
        f"/api/v1/openai-assistants-vector-store/{vector_store}?credential={tenant.credential_id}"
    )


def assert_flowise_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["statusCode"] == status
    assert body["success"] is False
    for fragment in fragments:
        assert fragment in body["message"]
    return body


def upstream_reason(fake: FakeOpenAI, openai_says: str) -> str:
    """How a failed file's reason reads: OpenAI gives its `last_error`, Llama Stack none."""
    return openai_says if fake.dialect == "openai" else "without a reason given"


def assert_no_upstream_files(fake: FakeOpenAI, tenant: Tenant, vector_store: str) -> None:
    assert fake.files_for(tenant.openai_key) == []
    assert fake.vector_store_files(vector_store) == []


def pdf(name: str = "doc.pdf", size: int = 2048) -> Part:
    return Part(name, samples.pdf_bytes(size), "application/pdf")


# --- success ------------------------------------------------------------------------


def test_three_files_come_back_in_order_with_names_intact(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    parts = [
        Part("résumé 日本語.pdf", samples.pdf_bytes(40_000), "application/pdf"),
        Part("notes.txt", "plain text, ünïcode\n".encode() * 100, "text/plain"),
        Part("report.docx", samples.docx_bytes(), None),  # no declared type: inferred
    ]
    response = upload(client, tenant, vector_store, parts)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["filename"] for item in body] == [part.filename for part in parts]
    assert [item["bytes"] for item in body] == [len(part.content) for part in parts]
    assert all(item["object"] == "file" and item["purpose"] == "assistants" for item in body)
    stored = {f.id: f for f in fake.files_for(tenant.openai_key)}
    for item, part in zip(body, parts, strict=True):
        assert stored[item["id"]].sha256 == hashlib.sha256(part.content).hexdigest()
    batches = [b for b in fake.batches if b.vector_store_id == vector_store]
    assert len(batches) == 1
    assert list(batches[0].file_ids) == [item["id"] for item in body]
    assert batches[0].status == "completed"


def test_a_quote_in_a_filename_comes_back_as_the_client_sent_it(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    part = Part('say "hi".txt', b"quoted\n", "text/plain", encoding="star")
    response = upload(client, tenant, vector_store, [part])
    assert response.status_code == 200, response.text
    assert response.json()[0]["filename"] == 'say "hi".txt'
    # Upstream it goes as a browser's form would send it (docs/DECISIONS.md), and Llama
    # Stack keeps only its ASCII letters, digits and `._-`.
    [stored] = fake.files_for(tenant.openai_key)
    assert stored.filename == (
        "say %22hi%22.txt" if fake.dialect == "openai" else "say__22hi_22.txt"
    )


def test_rfc5987_filename_is_preserved(
    client: httpx.Client, tenant: Tenant, vector_store: str
) -> None:
    part = Part("Übersicht – 2025 📄.pdf", samples.pdf_bytes(), "application/pdf", encoding="star")
    response = upload(client, tenant, vector_store, [part])
    assert response.status_code == 200, response.text
    assert response.json()[0]["filename"] == "Übersicht – 2025 📄.pdf"


def test_bearer_authorization_is_accepted(
    client: httpx.Client, tenant: Tenant, vector_store: str
) -> None:
    response = client.post(
        f"/api/v1/openai-assistants-vector-store/{vector_store}",
        params={"credential": tenant.credential_id},
        content=multipart_body([pdf()]),
        headers={"Authorization": f"Bearer {tenant.api_key}", "Content-Type": content_type()},
    )
    assert response.status_code == 200, response.text


def test_csv_and_xlsx_arrive_upstream_converted(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    xlsx = samples.xlsx_bytes({"People": [["name", "age"], ["Ada", 36]]})
    parts = [
        Part("table.csv", b"name,age\nAda,36\n", "text/csv"),
        Part("book.xlsx", xlsx, "application/octet-stream"),
    ]
    response = upload(client, tenant, vector_store, parts)

    assert response.status_code == 200, response.text
    names = [item["filename"] for item in response.json()]
    assert names == ["table.csv.txt", "book.xlsx.md"]
    ids = [item["id"] for item in response.json()]
    assert fake.file_content(ids[0]) == b"name,age\nAda,36\n"
    markdown = fake.file_content(ids[1]).decode()
    assert "## People" in markdown
    assert "| Ada | 36 |" in markdown


def test_exactly_the_text_limit_is_accepted(
    client: httpx.Client, tenant: Tenant, vector_store: str
) -> None:
    response = upload(
        client, tenant, vector_store, [Part("big.txt", b"a" * (10 * MiB), "text/plain")]
    )
    assert response.status_code == 200, response.text
    assert response.json()[0]["bytes"] == 10 * MiB


def test_upload_answered_500_twice_then_200_arrives_byte_identical(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    content = samples.pdf_bytes(300_000)
    fake.inject("POST", "/files", status=500, times=2)
    response = upload(client, tenant, vector_store, [Part("retry.pdf", content, "application/pdf")])

    assert response.status_code == 200, response.text
    [stored] = fake.files_for(tenant.openai_key)
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.bytes == len(content)
    uploads = [r for r in fake.requests if r[0] == "POST" and r[1] == "/files"]
    assert len(uploads) == 3


def test_429_from_openai_is_retried_honouring_retry_after(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.inject("POST", "/files", status=429, retry_after=0.2, times=1)
    started = time.monotonic()
    response = upload(client, tenant, vector_store, [pdf()])
    assert response.status_code == 200, response.text
    assert time.monotonic() - started >= 0.2


# --- 400 ----------------------------------------------------------------------------


@pytest.mark.parametrize("credential", [None, ""])
def test_missing_credential_is_400(
    client: httpx.Client, tenant: Tenant, vector_store: str, credential: str | None
) -> None:
    params = {} if credential is None else {"credential": credential}
    response = client.post(
        f"/api/v1/openai-assistants-vector-store/{vector_store}",
        params=params,
        content=multipart_body([pdf()]),
        headers={"X-API-Key": tenant.api_key, "Content-Type": content_type()},
    )
    assert_flowise_error(response, 400, "credential")


@pytest.mark.parametrize("bad_id", ["vs.bad", "x" * 129, "vs%20space"])
def test_invalid_vector_store_id_is_400(client: httpx.Client, tenant: Tenant, bad_id: str) -> None:
    response = upload(client, tenant, bad_id, [pdf()])
    assert_flowise_error(response, 400, "path.id")


def test_no_files_part_is_400(client: httpx.Client, tenant: Tenant, vector_store: str) -> None:
    response = upload(client, tenant, vector_store, [Part(None, b"hello", field="comment")])
    assert_flowise_error(response, 400, "No files")


def test_malformed_multipart_is_400(
    client: httpx.Client, tenant: Tenant, vector_store: str
) -> None:
    response = client.post(
        f"/api/v1/openai-assistants-vector-store/{vector_store}",
        params={"credential": tenant.credential_id},
        content=b"this is not multipart at all",
        headers={"X-API-Key": tenant.api_key, "Content-Type": content_type()},
    )
    assert_flowise_error(response, 400, "Malformed multipart")


def test_truncated_multipart_is_400(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    body = multipart_body([pdf()])
    response = client.post(
        f"/api/v1/openai-assistants-vector-store/{vector_store}",
        params={"credential": tenant.credential_id},
        content=body[: len(body) - 30],
        headers={"X-API-Key": tenant.api_key, "Content-Type": content_type()},
    )
    assert_flowise_error(response, 400, "Malformed multipart")
    assert_no_upstream_files(fake, tenant, vector_store)


def test_too_many_files_is_400_and_nothing_is_uploaded(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    response = upload(client, tenant, vector_store, [pdf(f"{i}.pdf") for i in range(11)])
    assert_flowise_error(response, 400, "Too many files")
    assert_no_upstream_files(fake, tenant, vector_store)


@pytest.mark.parametrize("name", ["bad\x07name.pdf", "", "x" * 252 + ".pdf", "evil\u202efdp.txt"])
def test_bad_filename_is_400(
    client: httpx.Client, tenant: Tenant, vector_store: str, name: str
) -> None:
    response = upload(
        client, tenant, vector_store, [Part(name, samples.pdf_bytes(), "application/pdf")]
    )
    assert_flowise_error(response, 400)


def test_path_parts_are_stripped_from_filenames(
    client: httpx.Client, tenant: Tenant, vector_store: str
) -> None:
    part = Part("../../etc/passwd.txt", b"root:x:0:0\n", "text/plain")
    response = upload(client, tenant, vector_store, [part])
    assert response.status_code == 200, response.text
    assert response.json()[0]["filename"] == "passwd.txt"


# --- 401 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-Key": "vg_" + "x" * 43}, {"Authorization": "Bearer nope"}]
)
def test_missing_or_invalid_api_key_is_401(
    client: httpx.Client, vector_store: str, headers: dict[str, str]
) -> None:
    response = client.post(
        f"/api/v1/openai-assistants-vector-store/{vector_store}",
        params={"credential": str(uuid.uuid4())},
        content=multipart_body([pdf()]),
        headers={"Content-Type": content_type(), **headers},
    )
    assert_flowise_error(response, 401)


def test_revoked_api_key_is_401(client: httpx.Client, service: Service, vector_store: str) -> None:
    other = service.new_tenant()
    run_cli(service.env, "api-keys", "revoke", other.api_key[:11])
    response = upload(client, other, vector_store, [pdf()])
    assert_flowise_error(response, 401)


def test_openai_rejecting_the_stored_key_is_401(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.rejected_keys.add(tenant.openai_key)
    response = upload(client, tenant, vector_store, [pdf()])
    body = assert_flowise_error(response, 401, "OpenAI rejected the credential's API key")
    assert tenant.openai_key not in body["message"]


# --- 404 ----------------------------------------------------------------------------


def test_unknown_vector_store_is_404(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    response = upload(client, tenant, "vs_doesnotexist", [pdf()])
    assert_flowise_error(response, 404, "Vector store not found")
    assert fake.files_for(tenant.openai_key) == []


def test_another_organizations_vector_store_is_404(
    client: httpx.Client, service: Service, tenant: Tenant, fake: FakeOpenAI
) -> None:
    other = service.new_tenant()
    foreign_store = fake.create_vector_store(other.openai_key)
    response = upload(client, tenant, foreign_store, [pdf()])
    assert_flowise_error(response, 404, "Vector store not found")


def test_unknown_credential_is_404(client: httpx.Client, tenant: Tenant, vector_store: str) -> None:
    response = upload(client, tenant, vector_store, [pdf()], credential=str(uuid.uuid4()))
    assert_flowise_error(response, 404, "Credential not found")


def test_another_organizations_credential_is_404(
    client: httpx.Client, service: Service, tenant: Tenant, vector_store: str
) -> None:
    other = service.new_tenant()
    response = upload(client, tenant, vector_store, [pdf()], credential=other.credential_id)
    assert_flowise_error(response, 404, "Credential not found")


# --- 413 ----------------------------------------------------------------------------


def test_text_one_byte_over_its_limit_is_413_without_upload(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    parts = [pdf("first.pdf"), Part("big.txt", b"a" * (10 * MiB + 1), "text/plain")]
    response = upload(client, tenant, vector_store, parts)
    assert_flowise_error(response, 413, "big.txt")
    assert_no_upstream_files(fake, tenant, vector_store)


def test_body_declared_over_the_request_limit_is_413_before_reading(
    service: Service, tenant: Tenant, vector_store: str
) -> None:
    target = flowise_target(tenant, vector_store)
    with open_post(service.running.base_url, target, tenant.api_key, 10**12) as sock:
        reply = read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]


# --- 415 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        (Part("notes.txt", b"just text", "application/pdf"), "notes.txt"),
        (Part("fake.pdf", b"not a pdf at all", "application/pdf"), "fake.pdf"),
        (Part("image.png", b"\x89PNG\r\n", "image/png"), "image.png"),
        (Part("data.json", b"{not json", "application/json"), "data.json"),
        (Part("doc.docx", b"PK\x03\x04broken", None), "doc.docx"),
    ],
)
def test_wrong_or_mismatched_type_is_415(
    client: httpx.Client,
    tenant: Tenant,
    vector_store: str,
    fake: FakeOpenAI,
    part: Part,
    fragment: str,
) -> None:
    response = upload(client, tenant, vector_store, [part])
    assert_flowise_error(response, 415, fragment)
    assert_no_upstream_files(fake, tenant, vector_store)


# --- 429 ----------------------------------------------------------------------------


def test_org_upload_limit_is_429_with_retry_after_and_slots_come_back(
    client: httpx.Client, service: Service, vector_store: str, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = fake.create_vector_store(tenant.openai_key)
    fake.batch_mode = "stuck"
    holder: dict[str, httpx.Response] = {}

    def hold_all_slots() -> None:
        with httpx.Client(base_url=service.running.base_url, timeout=60) as other:
            parts = [pdf(f"{i}.pdf") for i in range(ORG_UPLOAD_LIMIT - 2)]
            holder["response"] = upload(other, tenant, store, parts)

    thread = threading.Thread(target=hold_all_slots)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any(b.vector_store_id == store for b in fake.batches):
            assert time.monotonic() < deadline, "the first request never created its batch"
            time.sleep(0.02)
        response = upload(client, tenant, store, [pdf("a.pdf"), pdf("b.pdf"), pdf("c.pdf")])
        assert_flowise_error(response, 429, "uploads in flight")
        assert int(response.headers["Retry-After"]) > 0
    finally:
        thread.join()
    assert holder["response"].status_code == 504
    fake.batch_mode = "complete"
    assert upload(client, tenant, store, [pdf()]).status_code == 200


# --- 500 ----------------------------------------------------------------------------


def test_failed_batch_is_500_listing_each_file_and_leaves_no_orphans(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.batch_mode = "fail"
    response = upload(client, tenant, vector_store, [pdf("one.pdf"), pdf("two.pdf")])
    body = assert_flowise_error(response, 500, "one.pdf", "two.pdf", "failed")
    assert upstream_reason(fake, "server_error") in body["message"]
    assert_no_upstream_files(fake, tenant, vector_store)


def test_one_failed_file_is_500_naming_it_with_openais_error(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.fail_files_named("bad.pdf", code="unsupported_file", message="cannot parse this PDF")
    response = upload(client, tenant, vector_store, [pdf("good.pdf"), pdf("bad.pdf")])
    body = assert_flowise_error(
        response, 500, "bad.pdf", upstream_reason(fake, "unsupported_file: cannot parse this PDF")
    )
    assert "good.pdf" not in body["message"]
    assert_no_upstream_files(fake, tenant, vector_store)


def test_cancelled_batch_is_500(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.batch_mode = "cancel"
    response = upload(client, tenant, vector_store, [pdf()])
    assert_flowise_error(response, 500, "cancelled")
    assert_no_upstream_files(fake, tenant, vector_store)


# --- 502 ----------------------------------------------------------------------------


def test_openai_5xx_after_retries_is_502_and_compensated(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.inject("POST", "/vector_stores/[^/]+/file_batches", status=503, times=-1)
    response = upload(client, tenant, vector_store, [pdf("a.pdf"), pdf("b.pdf")])
    assert_flowise_error(response, 502, "503")
    assert_no_upstream_files(fake, tenant, vector_store)


def test_upload_failing_after_retries_is_502_and_other_files_are_deleted(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    # The first upload succeeds; every later one answers 500.
    fake.inject("POST", "/files", delay=0.0, times=1)
    fake.inject("POST", "/files", status=500, times=-1)
    response = upload(client, tenant, vector_store, [pdf("a.pdf"), pdf("b.pdf"), pdf("c.pdf")])
    assert_flowise_error(response, 502, "500")
    assert_no_upstream_files(fake, tenant, vector_store)


def test_dropped_connections_after_retries_are_502(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.inject("POST", "/files", drop=True, times=-1)
    response = upload(client, tenant, vector_store, [pdf()])
    assert_flowise_error(response, 502, "could not be reached")
    assert_no_upstream_files(fake, tenant, vector_store)


# --- 504 ----------------------------------------------------------------------------


def test_stuck_batch_is_504_cancelled_upstream_and_compensated(
    client: httpx.Client, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    fake.batch_mode = "stuck"
    started = time.monotonic()
    response = upload(client, tenant, vector_store, [pdf()])
    assert_flowise_error(response, 504, f"{BATCH_TIMEOUT_S}s")
    assert time.monotonic() - started < BATCH_TIMEOUT_S + 5
    [batch] = [b for b in fake.batches if b.vector_store_id == vector_store]
    assert batch.cancel_requested
    assert_no_upstream_files(fake, tenant, vector_store)


# --- disconnect ---------------------------------------------------------------------


def test_client_disconnect_mid_body_leaves_nothing_behind(
    service: Service, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    body = multipart_body([pdf("partial.pdf", 4 * MiB)])
    target = flowise_target(tenant, vector_store)
    with open_post(service.running.base_url, target, tenant.api_key, len(body)) as sock:
        sock.sendall(body[: 2 * MiB])
        deadline = time.monotonic() + 5
        while not staged_leftovers(service.temp_dir):  # the request is being staged
            assert time.monotonic() < deadline, "the service never started staging the body"
            time.sleep(0.01)
    # The autouse fixture then checks that the staging area empties.
    time.sleep(0.3)
    assert fake.files_for(tenant.openai_key) == []


def test_a_file_goes_upstream_while_the_rest_of_the_body_is_still_arriving(
    service: Service, tenant: Tenant, vector_store: str, fake: FakeOpenAI
) -> None:
    body = multipart_body([pdf("first.pdf", 200_000), pdf("second.pdf", 200_000)])
    second_starts = body.index(b"second.pdf")  # the first part and its closing boundary
    target = flowise_target(tenant, vector_store)
    with open_post(service.running.base_url, target, tenant.api_key, len(body)) as sock:
        sock.sendall(body[:second_starts])
        deadline = time.monotonic() + 10
        while [f.filename for f in fake.files_for(tenant.openai_key)] != ["first.pdf"]:
            assert time.monotonic() < deadline, "the first file did not go upstream early"
            time.sleep(0.02)
        sock.sendall(body[second_starts:])
        reply = read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert b'"first.pdf"' in reply
    assert b'"second.pdf"' in reply
