"""OpenAI's write limit per vector store, under a burst of uploads (issue 14, item 4).

The fake limits writes to a store (a file batch is one) over a short window. A burst of
single-file base64 uploads to one store must all succeed: concurrent requests' files go
out in shared batch calls (upstream/coalesce.py), and a 429 that still happens is
retried after its Retry-After.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e import Tenant, register_store
from tests.support import text_files_body
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

UPLOADS = 60
THREADS = 20
SERVICE_SETTINGS = {"max_concurrent_uploads_per_org": "100"}


def test_a_burst_of_single_file_uploads_to_one_store_all_succeed_under_its_write_limit(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant
) -> None:
    store = register_store(client, tenant, fake)
    fake.attach_limit_per_store_per_minute = 4
    fake.rate_window_s = 2.0
    # Each batch call takes a while, as OpenAI's do: requests pile up behind it.
    fake.inject("POST", r"/vector_stores/[^/]+/file_batches", delay=0.2, times=-1)
    url = f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64"

    def upload(i: int) -> httpx.Response:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as own:
            return own.post(url, json=text_files_body(f"{i}.txt"), headers=tenant.headers)

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(upload, range(UPLOADS)))
    took = time.monotonic() - started

    assert [a.status_code for a in answers] == [200] * UPLOADS, {
        a.status_code: a.text for a in answers if a.status_code != 200
    }
    file_ids = {a.json()["files"][0]["file_id"] for a in answers}
    assert len(file_ids) == UPLOADS
    assert set(fake.vector_store_files(store)) == file_ids
    # Far fewer writes than requests: 60 uploads in a handful of shared calls.
    batches = [b for b in fake.batches if b.vector_store_id == store]
    assert len(batches) < UPLOADS / 4, [len(b.file_ids) for b in batches]
    assert sorted(f for b in batches for f in b.file_ids) == sorted(file_ids)
    assert took < 30
