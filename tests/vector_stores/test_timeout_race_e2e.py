"""A file is never reported failed for a timeout while its batch may still complete it.

The batch is stuck until its deadline, then the upstream finishes it just as the service
gives up on it, while a client keeps asking the status route. Whatever wins the race, the
record ends as the upstream says: completed if the upstream completed the file, failed
only if its batch was cancelled first.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.e2e import Service, Tenant, register_store, upload_text
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

TIMEOUT_S = 2.0
SERVICE_SETTINGS = {"batch_timeout_s": str(TIMEOUT_S), "poll_interval_s": "0.1"}


@pytest.mark.parametrize("finish_after_deadline_s", [0.0, 0.3])
def test_a_timed_out_file_is_failed_only_when_its_batch_cannot_complete_it(
    client: httpx.Client,
    service: Service,
    tenant: Tenant,
    fake: FakeOpenAI,
    finish_after_deadline_s: float,
) -> None:
    store = register_store(client, tenant, fake)
    fake.batch_mode = "stuck"
    uploaded_at = time.monotonic()
    records = [upload_text(client, tenant, store, f"file {n}".encode()) for n in range(3)]
    seen: dict[str, list[str]] = {r["id"]: [] for r in records}
    stop = threading.Event()

    def watch() -> None:  # a client polling the status route all along
        with httpx.Client(base_url=service.running.base_url, timeout=30) as watcher:
            while not stop.is_set():
                for record in records:
                    url = (
                        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}"
                        f"/files/{record['id']}/status"
                    )
                    seen[record["id"]].append(
                        watcher.get(url, headers=tenant.headers).json()["processing_status"]
                    )
                time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        time.sleep(max(0.0, uploaded_at + TIMEOUT_S + finish_after_deadline_s - time.monotonic()))
        fake.batch_mode = "complete"  # the upstream finishes the batch, if not cancelled yet
        deadline = time.monotonic() + 20
        while not all(
            statuses and statuses[-1] in ("completed", "failed") for statuses in seen.values()
        ):
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
    finally:
        stop.set()
        watcher.join(timeout=30)

    # Upstream truth, after the dust settles: polling a batch advances it in the fake.
    for batch in fake.batches:
        assert batch.status in ("completed", "cancelled"), batch
    for record in records:
        statuses = seen[record["id"]]
        final = statuses[-1]
        # Never failed first and completed later (or the reverse).
        assert statuses[statuses.index(final) :] == [final] * (
            len(statuses) - statuses.index(final)
        )
        (batch,) = [b for b in fake.batches if record["file_id"] in b.file_ids]
        if final == "failed":
            assert batch.cancel_requested, (record, batch)
            assert batch.status == "cancelled"
        else:
            assert batch.status == "completed"
