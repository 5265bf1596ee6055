"""A status request refreshes a stale record from OpenAI instead of waiting for the poller."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e import Tenant, register_store, upload_text
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

# Every test that uses the fake runs against OpenAI's behaviour and Llama Stack's.
UPSTREAM_DIALECTS = ("openai", "llama_stack")

SERVICE_SETTINGS = {"poll_interval_s": "5", "batch_timeout_s": "600"}


def test_stale_status_is_refreshed_upstream_on_request(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    # The poller looks once right after the upload, then not for 5 s (the longest wait
    # it accepts from OpenAI); the batch needs two looks to complete.
    fake.poll_after_ms = 60_000
    store = register_store(client, tenant, fake)
    record_id = upload_text(client, tenant, store)["id"]
    status_url = f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{record_id}/status"

    # Fresh records are answered from the database, as the poller left them.
    first = client.get(status_url, headers=tenant.headers).json()
    assert first["processing_status"] in {"pending", "processing"}
    time.sleep(3.2)  # the poller looked within 1 s: now older than the 2 s threshold
    refreshed = client.get(status_url, headers=tenant.headers).json()
    assert refreshed["processing_status"] == "completed"
    assert refreshed["updated_at"] > first["updated_at"]
