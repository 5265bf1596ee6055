"""One tenant's rate-limited or slow OpenAI key cannot take the service from the others.

The status, register and unregister routes call OpenAI while a client waits. Held across
such a call, a database connection is gone for as long as OpenAI makes it wait (the SDK
honours `Retry-After` up to 60 s per retry): a handful of requests then empties the pool
for every organization. Here one tenant's key answers 429 with `Retry-After: 55`, or
answers only after the interactive timeout, to 20 concurrent requests at a time, while
another organization's status requests, uploads and `/readyz` are timed against the
same measurement without the attack, in the same test. On PostgreSQL the service's
connections are watched meanwhile: none may sit idle in a transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e import Service, Tenant, assert_error, register_store, upload_text
from tests.support import scalar
from vectorgate.db import POOL_OVERFLOW, POOL_SIZE, create_engine, create_sessionmaker, new_id
from vectorgate.testing.fake_openai import FakeOpenAI, key_hint
from vectorgate.uploads.models import IdempotencyKey, UploadSlot

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)

INTERACTIVE_TIMEOUT_S = 1.5
SERVICE_SETTINGS = {
    "batch_timeout_s": "600",  # records stay non-final for the whole test
    "poll_interval_s": "5",  # the poller leaves the records alone once they are processing
    "interactive_upstream_timeout_s": str(INTERACTIVE_TIMEOUT_S),
    "status_refresh_timeout_s": "1",
    "expired_rows_purge_interval_s": "0.2",
}
ATTACKERS = 2 * POOL_SIZE  # concurrent requests of the attacker: as many as the pool holds
RETRY_AFTER_S = 55
SLOW_S = 6  # a slow upstream answers after this, well past the interactive timeout
PROMPT_S = 5  # the attacker's answers come within this, not after Retry-After
MIB = 1024 * 1024


# --- the victim -------------------------------------------------------------------------


@dataclass
class Victim:
    """Another organization going about its business: status, uploads, probes."""

    tenant: Tenant
    store: str
    record_id: str

    def measure(self, client: httpx.Client, rounds: int = 6) -> dict[str, float]:
        """Median seconds of each of the victim's requests over `rounds` rounds."""
        status_url = (
            f"/v1/organizations/{self.tenant.org_id}/vector-stores/{self.store}"
            f"/files/{self.record_id}/status"
        )
        timings: dict[str, list[float]] = {"status": [], "upload": [], "readyz": [], "healthz": []}
        for _ in range(rounds):
            for name, call in (
                ("status", lambda: client.get(status_url, headers=self.tenant.headers)),
                ("upload", lambda: upload_text(client, self.tenant, self.store)),
                ("readyz", lambda: client.get("/readyz")),
                ("healthz", lambda: client.get("/healthz")),
            ):
                started = time.monotonic()
                response = call()
                timings[name].append(time.monotonic() - started)
                if isinstance(response, httpx.Response):
                    assert response.status_code == 200, (name, response.text)
        return {name: statistics.median(values) for name, values in timings.items()}


def assert_unharmed(before: dict[str, float], during: dict[str, float]) -> None:
    """Each median under attack is at most 5x the one without, plus 0.25 s of noise."""
    for name, base in before.items():
        assert during[name] <= 5 * base + 0.25, (name, before, during)


@pytest.fixture(scope="module")
def victim_tenant(service: Service) -> Tenant:
    return service.new_tenant()


@pytest.fixture
def victim(victim_tenant: Tenant, client: httpx.Client, fake: FakeOpenAI) -> Victim:
    tenant = victim_tenant
    store = register_store(client, tenant, fake)
    return Victim(tenant, store, upload_text(client, tenant, store)["id"])


# --- the attack -------------------------------------------------------------------------


@dataclass
class Attack:
    """`threads` clients each sending `send(client, i)` every `every_s` (or as soon as the
    previous one is answered, if later) until stopped.

    The pace is that of a client polling its files' status; what hurt was never the rate
    of requests but each request waiting on OpenAI with a connection held.
    """

    base_url: str
    send: Callable[[httpx.Client, int], httpx.Response]
    threads: int = ATTACKERS
    every_s: float = 1.0
    answers: list[tuple[float, httpx.Response]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=RETRY_AFTER_S + 10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = self.send(client, i)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(exc)
                    return
                elapsed = time.monotonic() - started
                with self._lock:
                    self.answers.append((elapsed, response))
                self._stop.wait(self.every_s - elapsed)

    @contextmanager
    def running(self) -> Iterator[Attack]:
        workers = [threading.Thread(target=self._run, args=(i,)) for i in range(self.threads)]
        for worker in workers:
            worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(timeout=RETRY_AFTER_S + 15)

    def wait_for(self, answers: int, timeout_s: float = 20) -> None:
        """Until `answers` requests have been answered (the attack is in full swing)."""
        deadline = time.monotonic() + timeout_s
        while len(self.answers) < answers and not self.errors:
            assert time.monotonic() < deadline, f"only {len(self.answers)} answers"
            time.sleep(0.02)

    def slowest(self) -> float:
        return max(elapsed for elapsed, _ in self.answers)

    def median(self) -> float:
        return statistics.median(elapsed for elapsed, _ in self.answers)


# --- the service from outside -----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_idle_cpu(service: Service, timeout_s: float = 10) -> float:
    """Until the service uses under a quarter of a core over half a second; returns that."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = cpu_seconds(service.running.pid)
        time.sleep(0.5)
        share = (cpu_seconds(service.running.pid) - before) / 0.5
        if share < 0.25:
            return share
        assert time.monotonic() < deadline, f"the service still uses {share:.0%} of a core"


def database_url(service: Service) -> str:
    return service.env["VECTORGATE_DATABASE_URL"]


def query(service: Service, sql: str, **params: Any) -> Any:
    return scalar(database_url(service), sql, **params)


@dataclass
class ConnectionWatch:
    """On PostgreSQL, samples the service's connections every 50 ms from one of its own."""

    service: Service
    idle_in_transaction: int = 0  # the most seen at once, idle in a transaction > 0.5 s
    connections: int = 0  # the most seen at once
    samples: int = 0
    backends: set[int] = field(default_factory=set)  # every server process seen

    @property
    def postgres(self) -> bool:
        return database_url(self.service).startswith("postgresql")

    @contextmanager
    def running(self) -> Iterator[ConnectionWatch]:
        if not self.postgres:
            yield self
            return
        stop = threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(self._sample(stop)))
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=10)

    async def _sample(self, stop: threading.Event) -> None:
        engine = create_async_engine(database_url(self.service))
        try:
            async with engine.connect() as connection:
                while not stop.is_set():
                    row = (
                        await connection.execute(
                            text(
                                "SELECT count(*), count(*) FILTER (WHERE state = "
                                "'idle in transaction' AND now() - state_change > "
                                "interval '0.5 seconds'), array_agg(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                            )
                        )
                    ).one()
                    await connection.rollback()
                    self.connections = max(self.connections, row[0])
                    self.idle_in_transaction = max(self.idle_in_transaction, row[1])
                    self.samples += 1
                    self.backends.update(row[2] or ())
                    await asyncio.sleep(0.05)
        finally:
            await engine.dispose()

    def assert_clean(self) -> None:
        if self.postgres:
            assert self.samples > 10
            assert self.idle_in_transaction == 0, self
            assert self.connections <= POOL_SIZE + POOL_OVERFLOW, self  # the pool and no more


def slots_held(service: Service, tenant: Tenant) -> int:
    return int(
        query(
            service,
            "SELECT count(*) FROM upload_slots WHERE organization_id = :org",
            org=tenant.org_id,
        )
    )


# --- helpers ----------------------------------------------------------------------------


def org_path(tenant: Tenant, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}", *parts])


def stale_records(client: httpx.Client, tenant: Tenant, store: str, files: int) -> list[str]:
    """Upload `files` files whose batch never ends; wait until the poller has marked them
    processing (it leaves them alone after that) and they are older than the 2 s after
    which a status request asks OpenAI. Returns their ids."""
    ids = [upload_text(client, tenant, store, f"file {i}\n".encode())["id"] for i in range(files)]
    deadline = time.monotonic() + 15
    while True:
        listed = client.get(
            org_path(tenant, "vector-stores", store, "files"),
            params={"limit": 100},
            headers=tenant.headers,
        )
        records = [r for r in listed.json()["data"] if r["id"] in ids]
        if {r["processing_status"] for r in records} == {"processing"}:
            break
        assert time.monotonic() < deadline, records
        time.sleep(0.05)
    newest = max(datetime.fromisoformat(r["updated_at"]) for r in records)
    stale_at = newest + timedelta(seconds=2.2)
    while datetime.now(UTC) < stale_at:
        time.sleep(0.05)
    return ids


def report(name: str, **figures: Any) -> None:
    log.info("%s: %s", name, ", ".join(f"{k}={v}" for k, v in figures.items()))


# --- the attacks ------------------------------------------------------------------------


def test_a_rate_limited_key_asking_status_does_not_starve_other_organizations(
    service: Service, client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, victim: Victim
) -> None:
    fake.batch_mode = "stuck"
    store = register_store(client, tenant, fake)
    records = stale_records(client, tenant, store, files=4)
    fake.inject(
        "GET", f"/vector_stores/{store}/files/.+", status=429, retry_after=RETRY_AFTER_S, times=-1
    )
    victim.record_id = stale_records(client, victim.tenant, victim.store, files=1)[0]
    rss_before = service.running.rss_bytes()
    before = victim.measure(client)

    def status(attacker: httpx.Client, i: int) -> httpx.Response:
        record = records[i % len(records)]
        url = org_path(tenant, "vector-stores", store, "files", record, "status")
        return attacker.get(url, headers=tenant.headers)

    attack = Attack(service.running.base_url, status)
    watch = ConnectionWatch(service)
    with watch.running(), attack.running():
        attack.wait_for(ATTACKERS)
        during = victim.measure(client)
        attack.wait_for(3 * ATTACKERS)
    idle_share = wait_for_idle_cpu(service)

    assert attack.errors == []
    # Each attacker answer is what the database knows, at once, not after Retry-After.
    for _, response in attack.answers:
        assert response.status_code == 200, response.text
        assert response.json()["processing_status"] == "processing"
    assert attack.slowest() < PROMPT_S
    # Each status request asked OpenAI exactly once: no retries, no waiting.
    asked = [
        r
        for r in fake.requests
        if r[0] == "GET" and r[1].startswith(f"/vector_stores/{store}/files/")
    ]
    assert len(asked) == len(attack.answers)
    growth = service.running.peak_rss_bytes() - rss_before
    assert_unharmed(before, during)
    watch.assert_clean()
    assert growth < 256 * MIB
    assert slots_held(service, victim.tenant) == 0
    report(
        "status under 429",
        victim_before=before,
        victim_during=during,
        attacker_median_s=round(attack.median(), 3),
        attacker_slowest_s=round(attack.slowest(), 3),
        attacker_requests=len(attack.answers),
        peak_rss_growth_mib=round(growth / MIB, 1),
        max_connections=watch.connections if watch.postgres else None,
        idle_cpu_share=round(idle_share, 2),
    )


def test_a_slow_upstream_on_register_and_delete_does_not_starve_other_organizations(
    service: Service, client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, victim: Victim
) -> None:
    half = ATTACKERS // 2
    to_register = [fake.create_vector_store(tenant.openai_key) for _ in range(half)]
    to_delete = [register_store(client, tenant, fake) for _ in range(half)]
    fake.inject("GET", f"/vector_stores/({'|'.join(to_register)})", delay=SLOW_S, times=-1)
    fake.inject("DELETE", f"/vector_stores/({'|'.join(to_delete)})", delay=SLOW_S, times=-1)
    rss_before = service.running.rss_bytes()
    before = victim.measure(client)

    def register_or_delete(attacker: httpx.Client, i: int) -> httpx.Response:
        if i % 2:
            return attacker.delete(
                org_path(tenant, "vector-stores", to_delete[i // 2]),
                params={"delete_upstream": "true"},
                headers=tenant.headers,
            )
        return attacker.post(
            org_path(tenant, "vector-stores"),
            json={"credential_id": tenant.credential_id, "vector_store_id": to_register[i // 2]},
            headers=tenant.headers,
        )

    attack = Attack(service.running.base_url, register_or_delete)
    watch = ConnectionWatch(service)
    with watch.running(), attack.running():
        attack.wait_for(ATTACKERS)
        during = victim.measure(client)
    idle_share = wait_for_idle_cpu(service)

    assert attack.errors == []
    for _, response in attack.answers:
        body = assert_error(response, 502, "UPSTREAM_ERROR")
        assert "timed out" in body["message"], body
    # Answered at the interactive timeout, not when the slow upstream got round to it.
    assert attack.slowest() < INTERACTIVE_TIMEOUT_S + 2 < SLOW_S
    # Nothing changed: the failed registrations left no record, the failed deletions
    # left theirs.
    listed = client.get(org_path(tenant, "vector-stores"), headers=tenant.headers).json()
    registered = {store["id"] for store in listed["data"]}
    assert set(to_delete) <= registered
    assert not set(to_register) & registered
    assert_unharmed(before, during)
    watch.assert_clean()
    growth = service.running.peak_rss_bytes() - rss_before
    assert growth < 256 * MIB
    assert slots_held(service, victim.tenant) == 0
    report(
        "register and delete against a slow upstream",
        victim_before=before,
        victim_during=during,
        attacker_median_s=round(attack.median(), 3),
        attacker_slowest_s=round(attack.slowest(), 3),
        attacker_requests=len(attack.answers),
        peak_rss_growth_mib=round(growth / MIB, 1),
        max_connections=watch.connections if watch.postgres else None,
        idle_cpu_share=round(idle_share, 2),
    )


def test_a_rate_limited_key_does_not_stall_the_poller_for_other_organizations(
    service: Service, client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, victim: Victim
) -> None:
    store = register_store(client, tenant, fake)
    fake.inject(
        "GET",
        f"/vector_stores/{store}/file_batches/.+",
        status=429,
        retry_after=RETRY_AFTER_S,
        times=-1,
    )
    for i in range(3):
        upload_text(client, tenant, store, f"attacker {i}\n".encode())
    watch = ConnectionWatch(service)
    with watch.running():
        started = time.monotonic()
        record = upload_text(client, victim.tenant, victim.store)
        # Two polls complete a batch at the fake; the poller waits poll_interval_s (5 s)
        # between them, and must not wait out the attacker's Retry-After on the way.
        deadline = started + 15
        while True:
            listed = client.get(
                org_path(victim.tenant, "vector-stores", victim.store, "files"),
                headers=victim.tenant.headers,
            ).json()["data"]
            if next(r for r in listed if r["id"] == record["id"])["processing_status"] == (
                "completed"
            ):
                break
            assert time.monotonic() < deadline, "the victim's batch was not polled to the end"
            time.sleep(0.1)
        completed_in = time.monotonic() - started
    attacker_polls = [
        r for r in fake.requests if r[0] == "GET" and r[1].startswith(f"/vector_stores/{store}/")
    ]
    assert attacker_polls  # the poller did meet the 429s
    watch.assert_clean()
    report("poller with a rate-limited key", victim_completed_in_s=round(completed_in, 2))


# --- single requests --------------------------------------------------------------------


def test_a_rate_limited_key_gets_502_with_retry_after_at_once_on_register_and_delete(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant
) -> None:
    existing = fake.create_vector_store(tenant.openai_key)
    registered = register_store(client, tenant, fake)
    fake.inject("*", "/vector_stores.*", status=429, retry_after=RETRY_AFTER_S, times=-1)
    calls = len(fake.requests)
    hint = key_hint(tenant.openai_key)

    started = time.monotonic()
    responses = [
        client.post(
            org_path(tenant, "vector-stores"),
            json={"credential_id": tenant.credential_id, "vector_store_id": existing},
            headers=tenant.headers,
        ),
        client.post(
            org_path(tenant, "vector-stores"),
            json={"credential_id": tenant.credential_id, "name": "new"},
            headers=tenant.headers,
        ),
        client.delete(
            org_path(tenant, "vector-stores", registered),
            params={"delete_upstream": "true"},
            headers=tenant.headers,
        ),
    ]
    elapsed = time.monotonic() - started

    for response in responses:
        body = assert_error(response, 502, "UPSTREAM_ERROR")
        assert "429" in body["message"], body
        assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert body["error"]["details"]["retry_after_s"] == RETRY_AFTER_S
    assert elapsed < PROMPT_S
    asked = [r for r in fake.requests[calls:] if r[2] == hint and "file_batches" not in r[1]]
    assert len(asked) == 3, asked  # one try each, no retries
    # The store whose deletion failed stays registered.
    get = client.get(org_path(tenant, "vector-stores", registered), headers=tenant.headers)
    assert get.status_code == 200, get.text


def test_the_flowise_store_lookup_of_a_rate_limited_key_is_502_at_once(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant
) -> None:
    store = fake.create_vector_store(tenant.openai_key)
    fake.inject("GET", f"/vector_stores/{store}", status=429, retry_after=RETRY_AFTER_S, times=-1)
    started = time.monotonic()
    response = client.post(
        f"/api/v1/openai-assistants-vector-store/{store}",
        params={"credential": tenant.credential_id},
        files={"files": ("a.txt", b"hello\n", "text/plain")},
        headers=tenant.headers,
    )
    assert time.monotonic() - started < PROMPT_S
    assert response.status_code == 502, response.text
    assert response.json() == {
        "statusCode": 502,
        "success": False,
        "message": response.json()["message"],
    }
    assert "429" in response.json()["message"]
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    lookups = [r for r in fake.requests if r[:2] == ("GET", f"/vector_stores/{store}")]
    assert len(lookups) == 1  # one try, no retries
    assert fake.files_for(tenant.openai_key) == []


def test_two_concurrent_registrations_of_one_store_are_201_and_409(
    service: Service, fake: FakeOpenAI, tenant: Tenant
) -> None:
    store = fake.create_vector_store(tenant.openai_key)
    # Both requests pass the "already registered?" read before either one writes.
    fake.inject("GET", f"/vector_stores/{store}", delay=0.5, times=2)
    results: list[httpx.Response] = []

    def register() -> None:
        with httpx.Client(base_url=service.running.base_url, timeout=30) as own:
            results.append(
                own.post(
                    org_path(tenant, "vector-stores"),
                    json={"credential_id": tenant.credential_id, "vector_store_id": store},
                    headers=tenant.headers,
                )
            )

    threads = [threading.Thread(target=register) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]
    assert_error(next(r for r in results if r.status_code == 409), 409, "CONFLICT")


def test_a_store_whose_upstream_name_is_over_200_characters_keeps_the_first_200(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant
) -> None:
    name = "é" * 150 + "x" * 150  # 300 characters, 450 UTF-8 bytes
    store = fake.create_vector_store(tenant.openai_key, name=name)
    response = client.post(
        org_path(tenant, "vector-stores"),
        json={"credential_id": tenant.credential_id, "vector_store_id": store},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name[:200]
    got = client.get(org_path(tenant, "vector-stores", store), headers=tenant.headers)
    assert got.json()["name"] == name[:200]


def test_the_running_service_purges_expired_idempotency_keys_and_slots(
    service: Service, tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    expired_slot, live_slot = new_id("slot_"), new_id("slot_")
    expired_key, live_key = new_id("k_"), new_id("k_")

    async def insert() -> None:
        engine = create_engine(database_url(service))
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                session.add_all(
                    [
                        UploadSlot(
                            id=expired_slot,
                            organization_id=tenant.org_id,
                            files=1,
                            expires_at=now - timedelta(hours=1),
                        ),
                        UploadSlot(
                            id=live_slot,
                            organization_id=tenant.org_id,
                            files=1,
                            expires_at=now + timedelta(hours=1),
                        ),
                        IdempotencyKey(
                            organization_id=tenant.org_id,
                            key=expired_key,
                            route="POST /x",
                            expires_at=now - timedelta(seconds=1),
                        ),
                        IdempotencyKey(
                            organization_id=tenant.org_id,
                            key=live_key,
                            route="POST /x",
                            expires_at=now + timedelta(hours=1),
                        ),
                    ]
                )
        finally:
            await engine.dispose()

    asyncio.run(insert())
    slots_sql = "SELECT count(*) FROM upload_slots WHERE id = :id"
    keys_sql = "SELECT count(*) FROM idempotency_keys WHERE key = :key"
    deadline = time.monotonic() + 10
    while query(service, slots_sql, id=expired_slot) or query(service, keys_sql, key=expired_key):
        assert time.monotonic() < deadline, "expired rows were not purged"
        time.sleep(0.1)
    assert query(service, slots_sql, id=live_slot) == 1
    assert query(service, keys_sql, key=live_key) == 1
