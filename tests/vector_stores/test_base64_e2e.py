"""The organization-scoped base64 upload and the status route, end to end."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import Service, Tenant, assert_error, register_store
from vectorgate.testing import samples
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

# Every test that uses the fake runs against OpenAI's behaviour and Llama Stack's.
UPSTREAM_DIALECTS = ("openai", "llama_stack")

MiB = 1024 * 1024
SERVICE_SETTINGS = {"batch_timeout_s": "4"}


@pytest.fixture
def store(client: httpx.Client, fake: FakeOpenAI, tenant: Tenant) -> str:
    return register_store(client, tenant, fake)


def entry(filename: str, content: bytes, mime_type: str) -> dict[str, str]:
    return {
        "filename": filename,
        "content": base64.b64encode(content).decode(),
        "mime_type": mime_type,
    }


def upload(
    client: httpx.Client,
    tenant: Tenant,
    store: str,
    files: list[dict[str, str]] | None = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = content if content is not None else json.dumps({"files": files}).encode()
    return client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json", **(headers or {})},
    )


def status_of(client: httpx.Client, tenant: Tenant, store: str, file_id: str) -> dict[str, Any]:
    response = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{file_id}/status",
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_for_status(
    client: httpx.Client, tenant: Tenant, store: str, file_id: str, *final: str, within: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        current = status_of(client, tenant, store, file_id)
        if current["processing_status"] in final:
            return current
        assert time.monotonic() < deadline, current
        time.sleep(0.05)


def test_seed_curl_example_uploads_and_reaches_completed(
    service: Service, client: httpx.Client, tenant: Tenant, store: str, tmp_path: Path
) -> None:
    document = tmp_path / "document.pdf"
    document.write_bytes(samples.pdf_bytes(28042))
    # The seed's example, verbatim but for host, ids and key. GNU base64 wraps its
    # output at 76 columns: the line breaks land inside the JSON string.
    url = (
        f"{service.running.base_url}/v1/organizations/{tenant.org_id}"
        f"/vector-stores/{store}/files/upload-base64"
    )
    script = textwrap.dedent(
        f"""\
        set -e
        cd {tmp_path}
        FILE_CONTENT=$(base64 -i document.pdf)
        curl -sS -X POST "{url}" \\
        -H "X-API-Key: $FREDDY_API_KEY" \\
        -H "Content-Type: application/json" \\
        -d "{{
        \\"files\\": [
        {{
        \\"filename\\": \\"document.pdf\\",
        \\"content\\": \\"$FILE_CONTENT\\",
        \\"mime_type\\": \\"application/pdf\\"
        }}
        ]
        }}"
        """
    )
    done = subprocess.run(
        ["bash", "-c", script],
        env={"FREDDY_API_KEY": tenant.api_key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    body = json.loads(done.stdout)
    assert body["success"] is True
    assert body["message"] == "1 file(s) uploaded successfully"
    [uploaded] = body["files"]
    assert uploaded["id"].startswith("vsf_")
    assert uploaded["file_id"].startswith("file-")
    assert (uploaded["filename"], uploaded["size"]) == ("document.pdf", 28042)
    assert uploaded["mime_type"] == "application/pdf"
    assert uploaded["processing_status"] == "pending"
    assert uploaded["created_at"].endswith("Z")

    final = wait_for_status(client, tenant, store, uploaded["id"], "completed", "failed")
    assert final["processing_status"] == "completed"
    assert final["error_message"] is None
    by_upstream_id = status_of(client, tenant, store, uploaded["file_id"])
    assert by_upstream_id["id"] == uploaded["id"]


def test_a_file_openai_fails_ends_failed_with_its_error(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    fake.fail_files_named("bad.txt", code="unsupported_file", message="nothing to index")
    response = upload(
        client,
        tenant,
        store,
        [entry("good.txt", b"fine", "text/plain"), entry("bad.txt", b"bad", "text/plain")],
    )
    assert response.status_code == 200, response.text
    good, bad = response.json()["files"]
    assert (
        wait_for_status(client, tenant, store, good["id"], "completed", "failed")[
            "processing_status"
        ]
        == "completed"
    )
    failed = wait_for_status(client, tenant, store, bad["id"], "completed", "failed")
    assert failed["processing_status"] == "failed"
    assert failed["error_message"] == (
        "unsupported_file: nothing to index"
        if fake.dialect == "openai"
        else "failed upstream without a reason given"  # Llama Stack gives no last_error
    )


def test_a_stuck_batch_fails_its_files_after_the_timeout(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    fake.batch_mode = "stuck"
    response = upload(client, tenant, store, [entry("slow.txt", b"zzz", "text/plain")])
    assert response.status_code == 200, response.text
    [record] = response.json()["files"]
    assert wait_for_status(client, tenant, store, record["id"], "processing", within=3)
    final = wait_for_status(client, tenant, store, record["id"], "failed", within=10)
    assert "did not finish within 4s" in final["error_message"]


def test_exactly_10_mib_of_text_is_accepted_and_one_byte_more_is_413(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    ok = upload(client, tenant, store, [entry("max.txt", b"a" * (10 * MiB), "text/plain")])
    assert ok.status_code == 200, ok.text
    assert ok.json()["files"][0]["size"] == 10 * MiB
    before = len(fake.files_for(tenant.openai_key))
    over = upload(client, tenant, store, [entry("over.txt", b"a" * (10 * MiB + 1), "text/plain")])
    body = assert_error(over, 413, "FILE_TOO_LARGE")
    assert "over.txt" in body["message"]
    assert len(fake.files_for(tenant.openai_key)) == before


def test_pdf_declared_text_is_415(client: httpx.Client, tenant: Tenant, store: str) -> None:
    response = upload(client, tenant, store, [entry("notes.pdf", b"just text", "application/pdf")])
    assert_error(response, 415, "UNSUPPORTED_FILE_TYPE")


def test_invalid_base64_is_400_naming_the_file(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    files = [
        entry("fine.txt", b"ok", "text/plain"),
        {"filename": "broken.txt", "content": "not*base64!", "mime_type": "text/plain"},
    ]
    body = assert_error(upload(client, tenant, store, files), 400, "INVALID_BASE64")
    assert "broken.txt" in body["message"]
    assert fake.files_for(tenant.openai_key) == []  # all-or-nothing


def test_data_url_prefix_is_stripped(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    content = samples.pdf_bytes(5000)
    file = entry("d.pdf", content, "application/pdf")
    file["content"] = "data:application/pdf;base64," + file["content"]
    response = upload(client, tenant, store, [file])
    assert response.status_code == 200, response.text
    [stored] = fake.files_for(tenant.openai_key)
    assert stored.sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"files": []}', b'{"files": [{"filename": "a.txt"}]}', b"[1, 2]"],
)
def test_malformed_requests_are_400(
    client: httpx.Client, tenant: Tenant, store: str, body: bytes
) -> None:
    assert_error(upload(client, tenant, store, content=body), 400, "INVALID_REQUEST")


def test_eleven_files_are_too_many(client: httpx.Client, tenant: Tenant, store: str) -> None:
    files = [entry(f"{i}.txt", b"x", "text/plain") for i in range(11)]
    assert_error(upload(client, tenant, store, files), 400, "TOO_MANY_FILES")


def test_unregistered_store_and_other_orgs_are_404(
    client: httpx.Client, service: Service, tenant: Tenant, store: str
) -> None:
    files = [entry("a.txt", b"x", "text/plain")]
    assert_error(upload(client, tenant, "vs_unregistered", files), 404, "NOT_FOUND")
    other = service.new_tenant()
    assert_error(upload(client, other, store, files), 404, "NOT_FOUND")  # other's path org
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={"files": files},
        headers=other.headers,
    )
    assert_error(response, 404, "NOT_FOUND")


def test_missing_key_and_rejected_openai_key_are_401(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    files = [entry("a.txt", b"x", "text/plain")]
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={"files": files},
    )
    assert_error(response, 401, "UNAUTHORIZED")
    fake.rejected_keys.add(tenant.openai_key)
    assert_error(upload(client, tenant, store, files), 401, "UNAUTHORIZED")


def test_upstream_failure_is_502_and_leaves_nothing_upstream(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    fake.inject("POST", "/vector_stores/[^/]+/file_batches", status=500, times=-1)
    files = [entry("a.txt", b"x", "text/plain"), entry("b.txt", b"y", "text/plain")]
    assert_error(upload(client, tenant, store, files), 502, "UPSTREAM_ERROR")
    assert fake.files_for(tenant.openai_key) == []
    listed = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files", headers=tenant.headers
    )
    assert listed.json()["data"] == []


def test_csv_and_xlsx_arrive_converted_and_records_keep_original_names(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    xlsx = samples.xlsx_bytes({"S": [["k", "v"], ["a", 1]]})
    mime_xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    files = [entry("t.csv", b"k,v\na,1\n", "text/csv"), entry("b.xlsx", xlsx, mime_xlsx)]
    response = upload(client, tenant, store, files)
    assert response.status_code == 200, response.text
    assert [f["filename"] for f in response.json()["files"]] == ["t.csv", "b.xlsx"]
    assert [f["mime_type"] for f in response.json()["files"]] == ["text/csv", mime_xlsx]
    upstream = {f.filename: f for f in fake.files_for(tenant.openai_key)}
    assert set(upstream) == {"t.csv.txt", "b.xlsx.md"}
    assert fake.file_content(upstream["t.csv.txt"].id) == b"k,v\na,1\n"
    assert "| a | 1 |" in fake.file_content(upstream["b.xlsx.md"].id).decode()


def test_org_limit_is_429_with_retry_after(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    upstream = fake.create_vector_store(tenant.openai_key)
    client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores",
        json={"credential_id": tenant.credential_id, "vector_store_id": upstream},
        headers=tenant.headers,
    ).raise_for_status()
    fake.inject("POST", "/files", delay=1.5, times=-1)  # keep the first request in flight
    first: dict[str, httpx.Response] = {}
    files = [entry(f"{i}.txt", b"x", "text/plain") for i in range(10)]

    def hold() -> None:
        with httpx.Client(base_url=service.running.base_url, timeout=60) as other:
            first["response"] = upload(other, tenant, upstream, files)

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.7)
    try:
        response = upload(client, tenant, upstream, files[:3])
        assert_error(response, 429, "RATE_LIMITED")
        assert int(response.headers["Retry-After"]) > 0
    finally:
        thread.join()
    assert first["response"].status_code == 200


def test_idempotency_key_replays_and_conflicts(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    files = [entry("once.txt", b"only once", "text/plain")]
    # Unique per run: the module's tenant is shared by every parametrisation of the test.
    key = {"Idempotency-Key": f"req-{uuid.uuid4().hex}"}
    first = upload(client, tenant, store, files, headers=key)
    assert first.status_code == 200, first.text
    again = upload(client, tenant, store, files, headers=key)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(fake.files_for(tenant.openai_key)) == 1
    changed = upload(
        client, tenant, store, [entry("once.txt", b"other", "text/plain")], headers=key
    )
    assert_error(changed, 409, "CONFLICT")


def test_concurrent_duplicates_upload_once(
    service: Service, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    fake.inject("POST", "/files", delay=0.5, times=-1)
    duplicate = f"dup-{uuid.uuid4().hex}"  # unique per run, as above
    files = [entry("dup.txt", b"same", "text/plain")]
    responses: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=service.running.base_url, timeout=60) as c:
            responses.append(
                upload(c, tenant, store, files, headers={"Idempotency-Key": duplicate})
            )

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    assert len(fake.files_for(tenant.openai_key)) == 1


def test_files_go_upstream_while_the_body_streams_and_a_later_refusal_deletes_them(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    """SPEC 3.2: a file may be uploaded as soon as it has arrived and passed its checks;
    when a later file is refused, nothing of the request stays upstream."""
    good = json.dumps(entry("a.txt", b"alpha\n", "text/plain"))
    bad = json.dumps({"filename": "b.txt", "content": "not base64!", "mime_type": "text/plain"})

    def body() -> Iterator[bytes]:
        yield b'{"files": [' + good.encode() + b", "
        deadline = time.monotonic() + 10
        while not fake.files_for(tenant.openai_key) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.files_for(tenant.openai_key), "the first file was not uploaded at once"
        yield bad.encode() + b"]}"

    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        content=body(),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "INVALID_BASE64")
    assert fake.files_for(tenant.openai_key) == []
    assert fake.vector_store_files(store) == []
