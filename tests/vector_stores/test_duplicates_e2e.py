"""Duplicate handling (SPEC 11.2) and the Flowise route's records (SPEC 11.3), end to end."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import Any

import httpx
import pytest

from tests.e2e import Tenant, assert_error, register_store
from tests.support import Part, content_type, multipart_body
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

UPSTREAM_DIALECTS = ("openai", "llama_stack")
# Long enough for Llama Stack, which sends no poll-after header (the poller waits 1 s).
SERVICE_SETTINGS = {"batch_timeout_s": "20", "duplicate_wait_s": "3"}


@pytest.fixture
def store(client: httpx.Client, fake: FakeOpenAI, tenant: Tenant) -> str:
    return register_store(client, tenant, fake)


def entry(name: str, text: str) -> dict[str, str]:
    return {
        "filename": name,
        "content": base64.b64encode(text.encode()).decode(),
        "mime_type": "text/plain",
    }


def upload(
    client: httpx.Client,
    tenant: Tenant,
    store: str,
    *files: dict[str, str],
    on_duplicate: str | None = None,
) -> httpx.Response:
    params = {"on_duplicate": on_duplicate} if on_duplicate is not None else {}
    return client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={"files": list(files)},
        params=params,
        headers=tenant.headers,
    )


def flowise(
    client: httpx.Client,
    tenant: Tenant,
    store: str,
    parts: list[Part],
    *,
    on_duplicate: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    params = {"credential": tenant.credential_id}
    if on_duplicate is not None:
        params["on_duplicate"] = on_duplicate
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{store}",
        params=params,
        content=multipart_body(parts),
        headers={"X-API-Key": tenant.api_key, "Content-Type": content_type(), **(headers or {})},
    )


def status(client: httpx.Client, tenant: Tenant, store: str, file_id: str) -> dict[str, Any]:
    response = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{file_id}/status",
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until_final(
    client: httpx.Client, tenant: Tenant, store: str, file_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        current = status(client, tenant, store, file_id)
        if current["processing_status"] in ("completed", "failed"):
            return current
        assert time.monotonic() < deadline, current
        time.sleep(0.05)


def live_files(fake: FakeOpenAI, tenant: Tenant) -> list[str]:
    return [f.id for f in fake.files_for(tenant.openai_key)]


def test_skip_answers_the_existing_record_and_uploads_nothing(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    first = upload(client, tenant, store, entry("a.txt", "one\n"), on_duplicate="skip")
    assert first.status_code == 200, first.text
    [created] = first.json()["files"]
    assert created["duplicate"] is False
    assert created["sha256"] == hashlib.sha256(b"one\n").hexdigest()

    again = upload(client, tenant, store, entry("a.txt", "one\n"), on_duplicate="skip")
    assert again.status_code == 200, again.text
    [skipped] = again.json()["files"]
    assert skipped["duplicate"] is True
    assert skipped["id"] == created["id"]
    assert skipped["file_id"] == created["file_id"]
    assert "skipped" in again.json()["message"]
    assert live_files(fake, tenant) == [created["file_id"]]
    assert len(fake.batches) == 1  # every file skipped: no batch
    assert status(client, tenant, store, created["id"])["sha256"] == created["sha256"]


def test_same_content_under_another_name_or_other_content_is_not_a_duplicate(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    upload(client, tenant, store, entry("a.txt", "one\n"), on_duplicate="skip")
    renamed = upload(client, tenant, store, entry("b.txt", "one\n"), on_duplicate="skip")
    changed = upload(client, tenant, store, entry("a.txt", "two\n"), on_duplicate="skip")
    assert renamed.json()["files"][0]["duplicate"] is False
    assert changed.json()["files"][0]["duplicate"] is False
    assert len(live_files(fake, tenant)) == 3


def test_allow_is_the_default_and_uploads_again(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    upload(client, tenant, store, entry("a.txt", "one\n"))
    again = upload(client, tenant, store, entry("a.txt", "one\n"))
    assert again.json()["files"][0]["duplicate"] is False
    assert len(live_files(fake, tenant)) == 2


def test_a_failed_upload_is_never_a_duplicate(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    fake.fail_files_named("bad.txt")
    first = upload(client, tenant, store, entry("bad.txt", "one\n"), on_duplicate="skip")
    [record] = first.json()["files"]
    assert wait_until_final(client, tenant, store, record["id"])["processing_status"] == "failed"
    # The retry fails upstream again (the rule holds), but it is uploaded: a new record.
    retry = upload(client, tenant, store, entry("bad.txt", "one\n"), on_duplicate="skip")
    assert retry.status_code == 200, retry.text
    assert retry.json()["files"][0]["duplicate"] is False
    assert retry.json()["files"][0]["id"] != record["id"]


def test_skip_within_one_request_uploads_the_file_once(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    same = entry("a.txt", "one\n")
    response = upload(client, tenant, store, same, same, on_duplicate="skip")
    assert response.status_code == 200, response.text
    first, second = response.json()["files"]
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert second["id"] == first["id"]
    assert len(live_files(fake, tenant)) == 1


def test_concurrent_skips_of_one_file_upload_it_once(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    # Uploads are slowed so that the requests overlap while the first one uploads.
    fake.upload_read_delay = 0.5
    answers: list[httpx.Response] = []

    def one() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            answers.append(
                upload(own, tenant, store, entry("a.txt", "same\n"), on_duplicate="skip")
            )

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    files = [a.json()["files"][0] for a in answers]
    assert sorted(f["duplicate"] for f in files) == [False, True, True, True]
    assert len({f["file_id"] for f in files}) == 1
    assert len(live_files(fake, tenant)) == 1


def test_replace_removes_older_records_only_once_the_new_file_is_completed(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    old = upload(client, tenant, store, entry("policy.txt", "version 1\n")).json()["files"][0]
    assert wait_until_final(client, tenant, store, old["id"])["processing_status"] == "completed"
    fake.polls_to_complete = 8  # the new file stays in progress for a while
    new = upload(
        client, tenant, store, entry("policy.txt", "version 2\n"), on_duplicate="replace"
    ).json()["files"][0]
    # While the new one is processing, the store still holds the old document.
    assert status(client, tenant, store, new["id"])["processing_status"] != "completed"
    assert old["file_id"] in fake.vector_store_files(store)
    assert wait_until_final(client, tenant, store, new["id"])["processing_status"] == "completed"
    deadline = time.monotonic() + 15
    while old["file_id"] in live_files(fake, tenant):
        assert time.monotonic() < deadline, "the replaced file was not deleted upstream"
        time.sleep(0.05)
    assert fake.vector_store_files(store) == [new["file_id"]]
    gone = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{old['id']}/status",
        headers=tenant.headers,
    )
    assert_error(gone, 404, "NOT_FOUND")


def test_replace_of_a_file_that_fails_keeps_the_old_one(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    old = upload(client, tenant, store, entry("keep.txt", "version 1\n")).json()["files"][0]
    wait_until_final(client, tenant, store, old["id"])
    fake.fail_files_named("keep.txt")
    new = upload(
        client, tenant, store, entry("keep.txt", "version 2\n"), on_duplicate="replace"
    ).json()["files"][0]
    assert wait_until_final(client, tenant, store, new["id"])["processing_status"] == "failed"
    assert status(client, tenant, store, old["id"])["processing_status"] == "completed"
    assert old["file_id"] in fake.vector_store_files(store)


@pytest.mark.parametrize("value", ["ignore", "SKIP", ""])
def test_an_unknown_on_duplicate_is_a_400(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str, value: str
) -> None:
    response = upload(client, tenant, store, entry("a.txt", "x\n"), on_duplicate=value)
    assert_error(response, 400, "INVALID_REQUEST")
    parts = [Part("a.txt", b"x\n", "text/plain")]
    flowise_answer = flowise(client, tenant, store, parts, on_duplicate=value)
    assert flowise_answer.status_code == 400, flowise_answer.text
    assert flowise_answer.json()["statusCode"] == 400
    assert live_files(fake, tenant) == []


def test_flowise_skip_answers_the_first_upload_file_object(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    parts = [Part("a.txt", b"one\n", "text/plain"), Part("b.txt", b"two\n", "text/plain")]
    first = flowise(client, tenant, store, parts, on_duplicate="skip")
    assert first.status_code == 200, first.text
    parts.append(Part("c.txt", b"three\n", "text/plain"))
    again = flowise(client, tenant, store, parts, on_duplicate="skip")
    assert again.status_code == 200, again.text
    assert [f["id"] for f in again.json()[:2]] == [f["id"] for f in first.json()]
    assert [f["filename"] for f in again.json()] == ["a.txt", "b.txt", "c.txt"]
    assert len(live_files(fake, tenant)) == 3
    # The Flowise route's files have records (SPEC 11.3), with their content's hash.
    record = status(client, tenant, store, first.json()[0]["id"])
    assert record["processing_status"] == "completed"
    assert record["sha256"] == hashlib.sha256(b"one\n").hexdigest()


def test_flowise_respond_async_answers_202_once_the_batch_exists(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    fake.polls_to_complete = 4
    parts = [Part("a.txt", b"one\n", "text/plain")]
    response = flowise(client, tenant, store, parts, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    [file] = body["files"]
    assert file["processing_status"] in ("pending", "processing")
    assert wait_until_final(client, tenant, store, file["id"])["processing_status"] == "completed"


def test_a_skip_that_waits_too_long_for_a_concurrent_upload_is_a_409(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    """The first request holds the file's claim for the 6 s its upload takes; the second
    waits `duplicate_wait_s` (3 s here), then answers 409 and leaves nothing upstream."""
    fake.upload_read_delay = 6.0
    first: list[httpx.Response] = []

    def slow() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            first.append(upload(own, tenant, store, entry("a.txt", "same\n"), on_duplicate="skip"))

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 5
    while not any(m == "POST" and p == "/files" for m, p, _ in fake.requests):
        assert time.monotonic() < deadline, "the first upload did not start"
        time.sleep(0.02)
    second = upload(
        client, tenant, store, entry("a.txt", "same\n"), entry("b.txt", "other\n"),
        on_duplicate="skip",
    )  # fmt: skip
    body = assert_error(second, 409, "CONFLICT")
    assert second.headers["Retry-After"] == "5"
    assert "a.txt" in body["message"]
    thread.join()
    assert first[0].status_code == 200, first[0].text
    # b.txt of the refused request was deleted again (or never sent): only a.txt is left.
    deadline = time.monotonic() + 5
    while len(live_files(fake, tenant)) != 1:
        assert time.monotonic() < deadline, live_files(fake, tenant)
        time.sleep(0.05)
    assert live_files(fake, tenant) == [first[0].json()["files"][0]["file_id"]]


def test_flowise_replace_removes_the_older_version_once_the_new_one_is_processed(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    old = flowise(client, tenant, store, [Part("guide.md", b"# v1\n", "text/markdown")])
    assert old.status_code == 200, old.text
    new = flowise(
        client, tenant, store, [Part("guide.md", b"# v2\n", "text/markdown")],
        on_duplicate="replace",
    )  # fmt: skip
    assert new.status_code == 200, new.text
    old_id, new_id = old.json()[0]["id"], new.json()[0]["id"]
    deadline = time.monotonic() + 15
    while old_id in live_files(fake, tenant):
        assert time.monotonic() < deadline, "the replaced file was not deleted upstream"
        time.sleep(0.05)
    assert fake.vector_store_files(store) == [new_id]
    assert status(client, tenant, store, new_id)["processing_status"] == "completed"
