"""Guarantees across processes: `vectorgate serve --workers 2` on PostgreSQL.

The database is the only state the workers share, so the per-organization limit and
the poller's leases must hold between them, and a worker killed mid-poll must not
leave a file stuck.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from tests.e2e import DEFAULT_SETTINGS
from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.migrate import upgrade_to_head
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import (
    RunningService,
    new_tenant,
    register_store,
    serve,
    service_env,
)
from vectorgate.vector_stores.models import FileBatch

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

LIMIT = 3


@pytest.fixture(scope="module")
def workers(
    postgres_url: str, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, dict[str, str]]]:
    upgrade_to_head(postgres_url)
    data_dir = tmp_path_factory.mktemp("workers")
    settings = DEFAULT_SETTINGS | {
        "max_concurrent_uploads_per_org": str(LIMIT),
        "batch_timeout_s": "60",
        "poll_interval_s": "0.2",
        "poller_lease_s": "2",
    }
    env = service_env(data_dir, postgres_url, fake_openai.base_url, **settings)
    with serve(env, workers=2, log_path=data_dir / "service.log") as running:
        yield running, env


def new_store(env: dict[str, str], fake: FakeOpenAI) -> tuple[str, str, str]:
    """(org id, api key, vector store id) of a fresh tenant with a registered store."""
    tenant = new_tenant(env, "w")
    store = fake.create_vector_store(tenant.openai_key)
    register_store(env, tenant, store)
    return tenant.org_id, tenant.api_key, store


def body(name: str) -> dict[str, object]:
    content = base64.b64encode(f"text of {name}".encode()).decode()
    return {"files": [{"filename": name, "content": content, "mime_type": "text/plain"}]}


def test_org_limit_holds_across_workers(
    workers: tuple[RunningService, dict[str, str]], fake: FakeOpenAI
) -> None:
    running, env = workers
    org, key, store = new_store(env, fake)
    fake.inject("POST", "/files", delay=2.0, times=-1)  # keep the winners in flight
    url = f"{running.base_url}/v1/organizations/{org}/vector-stores/{store}/files/upload-base64"
    statuses: list[int] = []
    start = threading.Barrier(8)

    def send(i: int) -> None:
        with httpx.Client(timeout=60) as client:
            start.wait()
            response = client.post(url, json=body(f"{i}.txt"), headers={"X-API-Key": key})
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * LIMIT + [429] * (8 - LIMIT)
    assert len(fake.files_for()) == LIMIT
    # Both workers served some of the requests (otherwise this proves nothing).
    assert len({line.split()[0] for line in _access_pids(running)}) == 2


def _access_pids(running: RunningService) -> list[str]:
    """`[pid]` prefixes of uvicorn's per-worker start lines."""
    return [
        line.split("[")[1]
        for line in running.log().splitlines()
        if "Started server process" in line
    ]


def test_worker_killed_mid_poll_leaves_no_file_stuck(
    workers: tuple[RunningService, dict[str, str]],
    fake: FakeOpenAI,
    postgres_url: str,
) -> None:
    running, env = workers
    org, key, store = new_store(env, fake)
    fake.polls_to_complete = 3
    # Every batch poll hangs for a while: the poller holding the lease is mid-poll.
    fake.inject("GET", f"/vector_stores/{store}/file_batches/[^/]+", delay=4.0, times=1)
    url = f"{running.base_url}/v1/organizations/{org}/vector-stores/{store}/files/upload-base64"
    response = httpx.post(url, json=body("survivor.txt"), headers={"X-API-Key": key}, timeout=60)
    assert response.status_code == 200, response.text
    [record] = response.json()["files"]

    owner = asyncio.run(_wait_for_lease(postgres_url, record["file_id"]))
    pid = int(owner.split(":")[1])
    assert pid != running.pid  # a worker, not the supervisor
    os.kill(pid, signal.SIGKILL)

    status_url = (
        f"{running.base_url}/v1/organizations/{org}/vector-stores/{store}"
        f"/files/{record['id']}/status"
    )
    deadline = time.monotonic() + 30
    while True:
        current = httpx.get(status_url, headers={"X-API-Key": key}, timeout=10)
        if current.status_code == 200 and current.json()["processing_status"] == "completed":
            break
        assert time.monotonic() < deadline, current.text
        time.sleep(0.2)
    # The status route may have refreshed the file itself; the batch is the poller's to end.
    while not (final := asyncio.run(_batch(postgres_url, record["file_id"]))).done:
        assert time.monotonic() < deadline, "the batch was never finished"
        time.sleep(0.2)
    assert f":{pid}:" not in (final.lease_owner or "")


async def _batch(url: str, file_id: str) -> FileBatch:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            from vectorgate.vector_stores.models import VectorStoreFile

            batch_id = await session.scalar(
                select(VectorStoreFile.batch_id).where(VectorStoreFile.file_id == file_id)
            )
            batch = await session.get(FileBatch, batch_id)
            assert batch is not None
            return batch
    finally:
        await engine.dispose()


async def _wait_for_lease(url: str, file_id: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        batch = await _batch(url, file_id)
        if batch.lease_owner is not None:
            return batch.lease_owner
        await asyncio.sleep(0.05)
    raise AssertionError("no worker ever leased the batch")
