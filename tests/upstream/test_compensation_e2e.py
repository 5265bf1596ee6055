"""Compensation that never forgets: files a failed request left upstream are deleted
eventually, however long the upstream refuses the deletes."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from tests.e2e import Service, Tenant, assert_error, register_store
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

SERVICE_SETTINGS = {"upstream_max_retries": "0", "compensation_backoff_s": "0.2"}


def upload_two(client: httpx.Client, tenant: Tenant, store: str, n: int) -> httpx.Response:
    files = [
        {
            "filename": f"r{n}-{i}.txt",
            "content": base64.b64encode(f"request {n} file {i}".encode()).decode(),
            "mime_type": "text/plain",
        }
        for i in range(2)
    ]
    return client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={"files": files},
        headers=tenant.headers,
    )


def test_files_whose_deletes_failed_are_deleted_once_the_upstream_recovers(
    client: httpx.Client, service: Service, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    # The batch cannot be created, so each request fails after its uploads; and the
    # deletes that should undo them fail too.
    fake.inject("POST", "/vector_stores/[^/]+/file_batches", status=500, times=-1)
    fake.inject("DELETE", "/files/[^/]+", status=500, times=-1)
    fake.inject("DELETE", "/vector_stores/[^/]+/files/[^/]+", status=503, times=-1)
    for n in range(3):
        assert_error(upload_two(client, tenant, store, n), 502, "UPSTREAM_ERROR")
    left = {f.id for f in fake.files_for(tenant.openai_key)}
    assert len(left) == 6

    # While the upstream refuses, the sweeper keeps trying and keeps the journal rows.
    deadline = time.monotonic() + 15
    while "(attempt 2: the upstream delete failed)" not in service.running.log():
        assert time.monotonic() < deadline, "the sweeper did not retry the failed deletes"
        time.sleep(0.1)
    assert {f.id for f in fake.files_for(tenant.openai_key)} == left
    assert "deleted upstream file" not in service.running.log()

    fake.clear_faults()
    deadline = time.monotonic() + 20
    while fake.files_for(tenant.openai_key):
        assert time.monotonic() < deadline, "files of failed requests stayed upstream"
        time.sleep(0.1)
    deleted = [f.id for f in fake.files_for(tenant.openai_key, include_deleted=True)]
    assert sorted(deleted) == sorted(left)
    assert fake.vector_store_files(store) == []
    # A success afterwards is kept: the sweeper only ever deletes what failed.
    assert upload_two(client, tenant, store, 9).status_code == 200
    time.sleep(1)
    assert len(fake.files_for(tenant.openai_key)) == 2


def test_an_upload_on_the_wire_when_its_request_fails_is_deleted_too(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    # The first file is stored upstream at once but its answer comes late; meanwhile the
    # second file is refused, which abandons the request while the first is on the wire.
    fake.inject("POST", "/files", answer_delay=1.5)
    fake.inject("POST", "/files", status=400)
    assert_error(upload_two(client, tenant, store, 0), 502, "UPSTREAM_ERROR")
    deadline = time.monotonic() + 15
    while fake.files_for(tenant.openai_key):
        assert time.monotonic() < deadline, "the file on the wire was left upstream"
        time.sleep(0.1)
    assert len(fake.files_for(tenant.openai_key, include_deleted=True)) == 1
