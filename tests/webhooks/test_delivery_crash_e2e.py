"""Delivery survives a crash (SPEC 10.3: at least once; a delivery interrupted by a
crash resumes within 60 s of the restart), on SQLite and PostgreSQL.

The real `vectorgate serve` is SIGKILLed and started again on the same database. The
window is made certain, not hoped for, and checked in the database after the kill:
either the delivery is pending between two attempts (its receiver was down while the
file completed), or its attempt is in flight (the receiver hangs) and its lease is held.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e import DEFAULT_SETTINGS
from tests.support import text_files_body
from tests.webhooks.support import add_webhook
from vectorgate.migrate import upgrade_to_head
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.receiver import Received, Receiver, receiving
from vectorgate.testing.service import (
    RunningService,
    Tenant,
    new_tenant,
    register_store,
    serve,
    service_env,
    stop,
)
from vectorgate.webhooks.models import Event, WebhookDelivery

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)

# Long enough between attempts that the kill certainly falls between two of them.
RETRY_DELAYS_S = "3,3,3,3,3"
TIMEOUT_S = 2  # a short attempt, so a dead worker's lease runs out soon
RESUME_WITHIN_S = 60  # SPEC 10.3


@dataclass(frozen=True)
class Row:
    """What the database holds for one delivery."""

    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    next_attempt_at: datetime | None


def rows(database_url: str, webhook_id: str) -> list[Row]:
    """The webhook's deliveries, read from the database on a connection of its own."""

    async def read() -> list[Row]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                found = await connection.execute(
                    select(
                        WebhookDelivery.id,
                        WebhookDelivery.event_id,
                        Event.type,
                        WebhookDelivery.status,
                        WebhookDelivery.attempts,
                        WebhookDelivery.lease_owner,
                        WebhookDelivery.lease_expires_at,
                        WebhookDelivery.next_attempt_at,
                    )
                    .join(Event, Event.id == WebhookDelivery.event_id)
                    .where(WebhookDelivery.webhook_id == webhook_id)
                    .order_by(WebhookDelivery.id)
                )
                return [Row(*row) for row in found.all()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def wait_until(condition: Callable[[], bool], what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


@dataclass
class Setup:
    env: dict[str, str]
    tenant: Tenant
    store: str
    data_dir: Path


@pytest.fixture
def setup(database_url: str, fake: FakeOpenAI, tmp_path: Path) -> Setup:
    upgrade_to_head(database_url)
    settings = DEFAULT_SETTINGS | {
        "webhook_retry_schedule_s": RETRY_DELAYS_S,
        "webhook_timeout_s": str(TIMEOUT_S),
        "batch_timeout_s": "60",  # the file completes, also on a busy machine
    }
    env = service_env(tmp_path, database_url, fake.base_url, **settings)
    tenant = new_tenant(env, "webhook-crash")
    store = fake.create_vector_store(tenant.openai_key)
    register_store(env, tenant, store)
    return Setup(env, tenant, store, tmp_path)


def upload(running: RunningService, setup: Setup, name: str) -> dict[str, Any]:
    tenant = setup.tenant
    response = httpx.post(
        f"{running.base_url}/v1/organizations/{tenant.org_id}/vector-stores/{setup.store}"
        "/files/upload-base64",
        json=text_files_body(name),
        headers=tenant.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()["files"][0]
    return record


def deliveries(running: RunningService, tenant: Tenant, webhook_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{running.base_url}/v1/organizations/{tenant.org_id}/webhooks/{webhook_id}/deliveries",
        headers=tenant.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def check_events(
    received: list[Received], secret: str, expected: dict[str, str], record: dict[str, Any]
) -> None:
    """One request per expected event (id -> type), each signed, its id its webhook-id."""
    assert sorted(r.webhook_id for r in received) == sorted(expected)
    for request in received:
        event = request.verify(secret)
        assert event["id"] == request.webhook_id
        assert event["type"] == expected[event["id"]]
        if event["type"] == "file.completed":
            assert event["data"]["id"] == record["id"]
            assert event["data"]["processing_status"] == "completed"


def test_a_delivery_pending_at_a_sigkill_arrives_after_the_restart_with_its_webhook_id(
    database_url: str, setup: Setup, receiver: Receiver
) -> None:
    tenant = setup.tenant
    with serve(setup.env, log_path=setup.data_dir / "first.log") as first:
        webhook = add_webhook(first, tenant, receiver)
        receiver.stop()  # down while the file completes: its first attempt fails
        record = upload(first, setup, "kept.txt")

        def between_attempts() -> bool:
            found = rows(database_url, webhook["id"])
            return {r.event_type for r in found} == {"file.completed", "batch.completed"} and all(
                r.status == "pending" and r.attempts == 1 and r.lease_owner is None for r in found
            )

        wait_until(between_attempts, "the first attempts were not made and recorded")
        stop(first, signal.SIGKILL)
    # Killed between two attempts: nothing in flight, both still owed.
    before = rows(database_url, webhook["id"])
    assert all(r.attempts == 1 and r.lease_owner is None for r in before), before
    assert all(r.status == "pending" and r.next_attempt_at is not None for r in before), before
    expected = {r.event_id: r.event_type for r in before}

    receiver.start()  # back on the same port, answering 204
    with serve(setup.env, log_path=setup.data_dir / "second.log") as second:
        received = receiver.wait_for(2, timeout_s=RESUME_WITHIN_S)
        check_events(received, webhook["secret"], expected, record)

        def delivered() -> bool:
            return all(
                d["status"] == "delivered" for d in deliveries(second, tenant, webhook["id"])
            )

        wait_until(delivered, "the deliveries were not recorded as delivered")
        listed = deliveries(second, tenant, webhook["id"])
        assert {d["event_id"] for d in listed} == set(expected)
        for delivery in listed:
            assert delivery["attempts"] == 2  # the refused one before the kill, then this
            assert delivery["last_status_code"] == 204
            assert delivery["last_error"] is None
        time.sleep(1.0)  # nothing is sent twice
        assert len(receiver.snapshot()) == 2


def test_an_attempt_in_flight_at_a_sigkill_is_made_again_once_its_lease_runs_out(
    database_url: str, setup: Setup, receiver: Receiver
) -> None:
    tenant = setup.tenant
    receiver.delay_s = 30  # hangs: each attempt stays in flight until its timeout
    with serve(setup.env, log_path=setup.data_dir / "first.log") as first:
        webhook = add_webhook(first, tenant, receiver)
        record = upload(first, setup, "hung.txt")
        # Both events' attempts have reached the receiver, which holds them; kill now,
        # well inside their timeout (checked below: neither was recorded).
        receiver.wait_for(2, timeout_s=20)
        stop(first, signal.SIGKILL)
    killed_at = time.time()
    held = rows(database_url, webhook["id"])
    assert {r.event_type for r in held} == {"file.completed", "batch.completed"}
    for row in held:
        # The attempt counts from when it was taken: one cut short by a crash too.
        assert (row.status, row.attempts) == ("pending", 1), held
        assert row.lease_owner is not None, held
        assert row.lease_expires_at is not None, held
    expected = {r.event_id: r.event_type for r in held}
    lease_ends = {r.event_id: r.lease_expires_at.timestamp() for r in held if r.lease_expires_at}
    assert min(lease_ends.values()) > killed_at  # still held by the dead worker

    receiver.delay_s = 0
    restarted = time.time()
    with serve(setup.env, log_path=setup.data_dir / "second.log") as second:
        received = receiver.wait_for(4, timeout_s=RESUME_WITHIN_S + 5)
        resumed = received[2:]
        check_events(resumed, webhook["secret"], expected, record)
        # The same events as the killed attempts carried, under the same webhook-ids.
        assert sorted(r.webhook_id for r in received[:2]) == sorted(expected)
        for request in resumed:  # not before its lease ran out
            assert request.at > lease_ends[request.webhook_id], (request.at, lease_ends)
        resume_s = max(r.at for r in resumed) - restarted
        log.info("the attempts resumed %.1f s after the restart", resume_s)
        assert resume_s < RESUME_WITHIN_S, resume_s

        def delivered() -> bool:
            return all(
                d["status"] == "delivered" for d in deliveries(second, tenant, webhook["id"])
            )

        wait_until(delivered, "the deliveries were not recorded as delivered")
        for delivery in deliveries(second, tenant, webhook["id"]):
            assert delivery["last_status_code"] == 204
            assert delivery["attempts"] == 2  # the one the kill cut short, then this one
        time.sleep(1.0)  # nothing more comes
        assert len(receiver.snapshot()) == 4
