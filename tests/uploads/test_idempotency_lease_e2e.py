"""An Idempotency-Key whose request died frees itself within its lease."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support import Part, content_type, multipart_body, open_post
from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.migrate import upgrade_to_head
from vectorgate.testing import samples
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import new_tenant, register_store, serve, service_env, stop
from vectorgate.uploads.models import IdempotencyKey

pytestmark = pytest.mark.e2e

LEASE_S = 2.0
SETTINGS = {
    "idempotency_lease_s": str(LEASE_S),
    "upload_slot_lease_s": "2",
    "poll_interval_s": "0.2",
    "retry_backoff_s": "0.01",
}


async def key_claimed(database_url: str, org_id: str) -> bool:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await session.get(IdempotencyKey, (org_id, "killed-mid-request")) is not None
    finally:
        await engine.dispose()


def test_a_key_whose_worker_was_killed_is_taken_over_after_its_lease(
    database_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    upgrade_to_head(database_url)
    env = service_env(tmp_path, database_url, fake.base_url, **SETTINGS)
    tenant = new_tenant(env, "idempotency")
    store = fake.create_vector_store(tenant.openai_key)
    register_store(env, tenant, store)
    target = f"/api/v1/openai-assistants-vector-store/{store}?credential={tenant.credential_id}"
    body = multipart_body([Part("kept.pdf", samples.pdf_bytes(40_000), "application/pdf")])
    key = {"Idempotency-Key": "killed-mid-request"}

    with (
        serve(env, log_path=tmp_path / "first.log") as first,
        open_post(first.base_url, target, tenant.api_key, len(body), headers=key) as sock,
    ):
        sock.sendall(body[: len(body) // 2])
        deadline = time.monotonic() + 10
        while not asyncio.run(key_claimed(database_url, tenant.org_id)):
            assert time.monotonic() < deadline, "the request never claimed its key"
            time.sleep(0.05)
        # The key is claimed and its request is running: a repeat is told so.
        repeat = httpx.post(
            first.base_url + target,
            content=body,
            headers={**tenant.headers, **key, "Content-Type": content_type()},
            timeout=30,
        )
        assert repeat.status_code == 409, repeat.text
        assert "still in progress" in repeat.json()["message"]
        stop(first, signal.SIGKILL)
        killed_at = time.monotonic()

    with serve(env, log_path=tmp_path / "second.log") as second:
        while time.monotonic() < killed_at + LEASE_S + 0.5:
            time.sleep(0.1)
        retry = httpx.post(
            second.base_url + target,
            content=body,
            headers={**tenant.headers, **key, "Content-Type": content_type()},
            timeout=30,
        )
        assert retry.status_code == 200, retry.text
        replay = httpx.post(
            second.base_url + target,
            content=body,
            headers={**tenant.headers, **key, "Content-Type": content_type()},
            timeout=30,
        )
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == retry.json()
    kept = [f for f in fake.files_for(tenant.openai_key) if f.id == retry.json()[0]["id"]]
    assert len(kept) == 1
