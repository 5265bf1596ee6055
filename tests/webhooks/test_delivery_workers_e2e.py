"""Each event reaches each webhook exactly once across worker processes (SPEC 10.3:
several workers deliver each attempt once in normal operation, a lease per delivery):
`vectorgate serve --workers 2` on PostgreSQL, one organization with two webhooks, 50
single-file base64 uploads ten at a time, nothing failing.

Both workers run a dispatcher over the same deliveries table; a delivery taken twice
would reach its receiver twice, under the same `webhook-id`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e import DEFAULT_SETTINGS
from tests.support import text_files_body
from tests.webhooks.support import add_webhook
from vectorgate.migrate import upgrade_to_head
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.receiver import Receiver, receiving
from vectorgate.testing.service import (
    RunningService,
    Tenant,
    new_tenant,
    register_store,
    serve,
    service_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

UPLOADS = 50
THREADS = 10
# Per receiver: a file.completed and a batch.completed per single-file upload.


@pytest.fixture(scope="module")
def workers(
    postgres_url: str, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, dict[str, str]]]:
    upgrade_to_head(postgres_url)
    data_dir = tmp_path_factory.mktemp("webhook-workers")
    settings = DEFAULT_SETTINGS | {
        "max_concurrent_uploads_per_org": str(THREADS * 2),
        # Nothing fails: the suite's 3 s batch timeout can pass on a busy machine.
        "batch_timeout_s": "60",
    }
    env = service_env(data_dir, postgres_url, fake_openai.base_url, **settings)
    with serve(env, workers=2, log_path=data_dir / "service.log") as running:
        yield running, env


def all_deliveries(
    running: RunningService, tenant: Tenant, webhook_id: str
) -> list[dict[str, Any]]:
    """Every page of the webhook's deliveries."""
    url = f"{running.base_url}/v1/organizations/{tenant.org_id}/webhooks/{webhook_id}/deliveries"
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        response = httpx.get(url, params=params, headers=tenant.headers, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["data"]
        if not page["has_more"]:
            return found
        params["after"] = page["last_id"]


def wait_for_count(receivers: list[Receiver], count: int, timeout_s: float = 45) -> None:
    deadline = time.monotonic() + timeout_s
    while any(len(r.snapshot()) < count for r in receivers):
        assert time.monotonic() < deadline, [len(r.snapshot()) for r in receivers]
        time.sleep(0.05)


def test_two_workers_deliver_each_event_to_each_webhook_exactly_once(
    workers: tuple[RunningService, dict[str, str]], fake: FakeOpenAI
) -> None:
    running, env = workers
    tenant = new_tenant(env, "webhook-workers")
    store = fake.create_vector_store(tenant.openai_key)
    register_store(env, tenant, store)
    upload_url = (
        f"{running.base_url}/v1/organizations/{tenant.org_id}/vector-stores/{store}"
        "/files/upload-base64"
    )

    def upload(i: int) -> dict[str, Any]:
        name = f"{i}.txt"
        response = httpx.post(
            upload_url,
            json=text_files_body(name),
            headers=tenant.headers,
            timeout=60,
        )
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()["files"][0]
        return record

    with receiving() as first, receiving() as second:
        hooks = [(add_webhook(running, tenant, r), r) for r in (first, second)]
        with ThreadPoolExecutor(THREADS) as pool:
            records = list(pool.map(upload, range(UPLOADS)))
        # A file.completed per file, a batch.completed per batch: concurrent uploads to
        # one store may share a batch (upstream/coalesce.py).
        batch_ids = {b.id for b in fake.batches}
        expected = UPLOADS + len(batch_ids)
        wait_for_count([first, second], expected)
        time.sleep(1.0)  # a duplicate would arrive about now

        file_ids = sorted(r["id"] for r in records)
        assert len(set(file_ids)) == UPLOADS
        event_ids: list[set[str]] = []
        for webhook, receiver in hooks:
            received = receiver.snapshot()
            counts = Counter(r.webhook_id for r in received)
            assert len(received) == expected, [i for i, n in counts.items() if n > 1]
            assert set(counts.values()) == {1}  # no webhook-id twice
            events = [r.verify(webhook["secret"]) for r in received]
            for request, event in zip(received, events, strict=True):
                assert event["id"] == request.webhook_id
                assert event["organization_id"] == tenant.org_id
            completed = [e for e in events if e["type"] == "file.completed"]
            batches = [e for e in events if e["type"] == "batch.completed"]
            assert (len(completed), len(batches)) == (UPLOADS, len(batch_ids)), (
                Counter(e["type"] for e in events),
                Counter(e["data"].get("error_message") for e in events),
            )
            assert sorted(e["data"]["id"] for e in completed) == file_ids
            # Each file in exactly one batch's event, each batch once.
            assert sorted(f["id"] for e in batches for f in e["data"]["files"]) == file_ids
            assert {e["data"]["batch_id"] for e in batches} == batch_ids
            assert all(e["data"]["counts"]["failed"] == 0 for e in batches)
            event_ids.append(set(counts))
        # The same events went to both webhooks.
        assert event_ids[0] == event_ids[1]

    for webhook, _ in hooks:
        deadline = time.monotonic() + 10
        while True:  # the last outcomes may be written just after their answers
            shown = all_deliveries(running, tenant, webhook["id"])
            if all(d["status"] == "delivered" for d in shown) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(shown) == expected
        assert {d["event_id"] for d in shown} == event_ids[0]
        assert Counter((d["status"], d["attempts"]) for d in shown) == {("delivered", 1): expected}
