"""A status request refreshes a stale record from OpenAI instead of waiting for the poller."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from tests.e2e import Tenant
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

SERVICE_SETTINGS = {"poll_interval_s": "5", "batch_timeout_s": "600"}


def test_stale_status_is_refreshed_upstream_on_request(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    # The poller looks once right after the upload, then not for 5 s (the longest wait
    # it accepts from OpenAI); the batch needs two looks to complete.
    fake.poll_after_ms = 60_000
    store = fake.create_vector_store(tenant.openai_key)
    base = f"/v1/organizations/{tenant.org_id}/vector-stores"
    client.post(
        base,
        json={"credential_id": tenant.credential_id, "vector_store_id": store},
        headers=tenant.headers,
    ).raise_for_status()
    content = base64.b64encode(b"hello").decode()
    response = client.post(
        f"{base}/{store}/files/upload-base64",
        json={"files": [{"filename": "a.txt", "content": content, "mime_type": "text/plain"}]},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    record_id = response.json()["files"][0]["id"]
    status_url = f"{base}/{store}/files/{record_id}/status"

    # Fresh records are answered from the database, as the poller left them.
    first = client.get(status_url, headers=tenant.headers).json()
    assert first["processing_status"] in {"pending", "processing"}
    time.sleep(3.2)  # the poller looked within 1 s: now older than the 2 s threshold
    refreshed = client.get(status_url, headers=tenant.headers).json()
    assert refreshed["processing_status"] == "completed"
    assert refreshed["updated_at"] > first["updated_at"]
