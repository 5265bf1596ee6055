"""Webhook benchmarks (SPEC 10.3): how late events arrive, and whether a receiver that
hangs slows anyone else down. Each figure sits next to a baseline of the same run.

    .venv/bin/python -m bench.webhooks [--runs 3] [--uploads 100] [--database sqlite|postgres]
                                       [--only W1|W2] [--json PATH]

Starts, on 127.0.0.1: the fake OpenAI, `vectorgate serve` (one worker; SQLite, or a fresh
PostgreSQL database on the local server, created, migrated and dropped by the run) and
webhook receivers (vectorgate.testing.receiver) in this process. Run as a module from
the repository's root (it imports bench/run.py's helpers).

W1  delivery lag: one organization, one webhook at a receiver that answers at once,
    `--uploads` base64 uploads of one small text file, 8 at a time. Lag of an event =
    when the receiver had it minus the envelope's `created_at` (the time the status
    change was written, in milliseconds; same machine clock). Median and p99 over the
    file.completed events; the upload rate and the delivery rate (events / time from
    the first upload to the last arrival). Service CPU per delivered event = (CPU of the
    run with the webhook - CPU of the same uploads by an organization without one) /
    events, the two taking turns.
W2  slow receiver: the same uploads, each followed by status requests (every 0.2 s) until
    the file is final, by turns (a) with no webhook, (b) with 3 webhooks of the
    organization and 1 of another organization (primed with pings) at receivers that
    hang 10 s, past VECTORGATE_WEBHOOK_TIMEOUT_S=2, and (c) the same webhooks at
    receivers that answer at once. Upload and status-route latency, median and p99, and
    the ratios b/a and b/c (SPEC 10.3: a slow receiver costs the same as a quick one).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

from bench.run import Runs, _percentile, cpu_seconds, fake_openai
from vectorgate.migrate import upgrade_to_head
from vectorgate.testing.receiver import Receiver, receiving
from vectorgate.testing.service import Tenant, new_tenant, run_cli, serve, service_env

CONCURRENCY = 8
WEBHOOK_TIMEOUT_S = 2.0
HANG_S = 10.0  # how long a slow receiver holds each request
STATUS_EVERY_S = 0.2
PINGS = 40  # the other organization's deliveries: 10 rounds of 4 hanging attempts
FINAL = ("completed", "failed")
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
CONTENT = base64.b64encode(b"vectorgate webhook benchmark\n" * 8).decode()


# --- setup --------------------------------------------------------------------------


@contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str]:
    """The service's database URL: SQLite in `data_dir`, or a PostgreSQL database made
    for this run (migrated here) and dropped after it."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{data_dir}/vg.db"
        return
    name = f"bench_webhooks_{os.getpid()}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(f"{PG_SERVER}/postgres")
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Org:
    tenant: Tenant
    store: str

    @property
    def id(self) -> str:
        return self.tenant.org_id

    @property
    def headers(self) -> dict[str, str]:
        return self.tenant.headers

    @property
    def files_url(self) -> str:
        return f"/v1/organizations/{self.id}/vector-stores/{self.store}/files"

    @property
    def hooks_url(self) -> str:
        return f"/v1/organizations/{self.id}/webhooks"


def new_org(env: dict[str, str], name: str) -> Org:
    tenant = new_tenant(env, name)
    store = run_cli(
        env, "vector-stores", "register", "--org", tenant.org_id,
        "--credential", tenant.credential_id, "--create", name,
    )["id"]  # fmt: skip
    return Org(tenant, store)


def add_webhook(client: httpx.Client, org: Org, receiver: Receiver) -> str:
    response = client.post(org.hooks_url, json={"url": receiver.url}, headers=org.headers)
    assert response.status_code == 201, response.text
    webhook_id: str = response.json()["id"]
    return webhook_id


def delete_webhook(client: httpx.Client, org: Org, webhook_id: str) -> None:
    response = client.delete(f"{org.hooks_url}/{webhook_id}", headers=org.headers)
    assert response.status_code in (200, 204), response.text


# --- load ---------------------------------------------------------------------------


@dataclass
class Load:
    upload_s: list[float]
    status_s: list[float]
    file_ids: list[str]


def upload_load(base_url: str, org: Org, uploads: int, *, poll_status: bool) -> Load:
    """`uploads` base64 uploads of one small file, CONCURRENCY at a time; with
    `poll_status`, each is followed by status requests until its file is final."""
    body = {"files": [{"filename": "a.txt", "content": CONTENT, "mime_type": "text/plain"}]}
    load = Load([], [], [])

    async def worker(client: httpx.AsyncClient, todo: list[int]) -> None:
        while todo:
            todo.pop()
            started = time.perf_counter()
            response = await client.post(
                f"{org.files_url}/upload-base64", json=body, headers=org.headers
            )
            load.upload_s.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            file_id = response.json()["files"][0]["id"]
            load.file_ids.append(file_id)
            while poll_status:
                await asyncio.sleep(STATUS_EVERY_S)
                started = time.perf_counter()
                response = await client.get(
                    f"{org.files_url}/{file_id}/status", headers=org.headers
                )
                load.status_s.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                if response.json()["processing_status"] in FINAL:
                    break

    async def run() -> None:
        todo = list(range(uploads))
        # Idle connections are dropped before the server's keep-alive timeout (5 s), so a
        # request never goes out on a connection the server is closing at that moment.
        limits = httpx.Limits(max_connections=CONCURRENCY, keepalive_expiry=2)
        async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
            await asyncio.gather(*(worker(client, todo) for _ in range(CONCURRENCY)))

    asyncio.run(run())
    return load


def wait_until_final(client: httpx.Client, org: Org, timeout_s: float = 120) -> None:
    """Until none of the organization's files is pending or processing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = False
        for status in ("pending", "processing"):
            found = client.get(
                org.files_url, params={"status": status, "limit": 1}, headers=org.headers
            )
            found.raise_for_status()
            busy = busy or bool(found.json()["data"])
        if not busy:
            return
        time.sleep(0.25)
    raise RuntimeError(f"files of {org.id} still not final after {timeout_s} s")


# --- W1: delivery lag ---------------------------------------------------------------


def event_time(created_at: str) -> float:
    return datetime.fromisoformat(created_at).timestamp()


def w1_with_webhook(
    client: httpx.Client, pid: int, org: Org, receiver: Receiver, uploads: int, result: Runs
) -> None:
    before = len(receiver.snapshot())
    cpu, started = cpu_seconds(pid), time.time()
    upload_load(str(client.base_url), org, uploads, poll_status=False)
    uploaded = time.time()
    wait_until_final(client, org)
    expected = 2 * uploads  # file.completed (or failed) and batch.completed per upload
    arrived = receiver.wait_for(before + expected, timeout_s=120)[before:]
    cpu = cpu_seconds(pid) - cpu
    events = [(r.at, r.json()) for r in arrived]
    lags = [at - event_time(e["created_at"]) for at, e in events if e["type"] == "file.completed"]
    assert lags, "no file.completed arrived"
    result.add(
        statistics.median(lags),
        lag_p50=statistics.median(lags),
        lag_p99=_percentile(lags, 0.99),
        cpu_s=cpu,
        events=len(events),
        completed=len(lags),
        # The uploads' own rate, and how fast the events reached the receiver.
        uploads_per_s=uploads / (uploaded - started),
        events_per_s=len(events) / (max(at for at, _ in events) - started),
    )


def w1_without_webhook(
    client: httpx.Client, pid: int, org: Org, uploads: int, result: Runs
) -> None:
    cpu = cpu_seconds(pid)
    upload_load(str(client.base_url), org, uploads, poll_status=False)
    wait_until_final(client, org)
    result.add(0.0, cpu_s=cpu_seconds(pid) - cpu)


# --- W2: slow receivers -------------------------------------------------------------


def w2_once(base_url: str, pid: int, org: Org, uploads: int, result: Runs) -> None:
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    load = upload_load(base_url, org, uploads, poll_status=True)
    wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    result.add(
        wall,
        upload_p50=statistics.median(load.upload_s),
        upload_p99=_percentile(load.upload_s, 0.99),
        status_p50=statistics.median(load.status_s),
        status_p99=_percentile(load.status_s, 0.99),
        status_requests=len(load.status_s),
        cpu_s=cpu,
    )


@contextmanager
def webhooks_at(
    client: httpx.Client, org: Org, other: Org, receivers: list[Receiver], other_receiver: Receiver
) -> Iterator[None]:
    """3 webhooks of `org` and 1 of `other` at `receivers`, the latter with PINGS
    pending; all deleted afterwards (their pending deliveries with them), and the attempts
    in flight left to time out, so the next run without webhooks starts clean."""
    mine = [add_webhook(client, org, r) for r in receivers]
    theirs = add_webhook(client, other, other_receiver)
    for _ in range(PINGS):
        response = client.post(f"{other.hooks_url}/{theirs}/ping", headers=other.headers)
        assert response.status_code == 202, response.text
    deadline = time.monotonic() + 10
    while not other_receiver.snapshot() and time.monotonic() < deadline:
        time.sleep(0.05)  # the other organization's attempts hang before uploads start
    try:
        yield
    finally:
        for webhook_id in mine:
            delete_webhook(client, org, webhook_id)
        delete_webhook(client, other, theirs)
        time.sleep(WEBHOOK_TIMEOUT_S + 1)


# --- main ---------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--only", choices=["W1", "W2"], help="run one scenario")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    n, uploads = args.runs, args.uploads
    figures: dict[str, Any] = {"database": args.database, "runs": n, "uploads": uploads}
    rows: list[tuple[str, str, float | None]] = []

    with tempfile.TemporaryDirectory(prefix="vg-bench-webhooks-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        (root / "spool").mkdir()
        data_dir = root / "service"
        data_dir.mkdir()
        database_url = stack.enter_context(database(args.database, data_dir))
        fake = stack.enter_context(fake_openai(root / "spool"))
        env = service_env(
            data_dir, database_url, fake.url,
            webhook_allow_private="true", webhook_timeout_s=f"{WEBHOOK_TIMEOUT_S:g}",
        )  # fmt: skip
        service = stack.enter_context(serve(env, log_path=root / "service.log"))
        client = stack.enter_context(httpx.Client(base_url=service.base_url, timeout=60))
        pid = service.pid
        print(
            f"webhooks benchmark on {args.database}: {n} runs per scenario, medians reported",
            file=sys.stderr,
        )

        if args.only in (None, "W1"):
            hooked, plain = new_org(env, "w1-webhook"), new_org(env, "w1-plain")
            receiver = stack.enter_context(receiving())
            add_webhook(client, hooked, receiver)
            # A first round of each, unmeasured: connections, caches, the fake's warm-up.
            upload_load(service.base_url, plain, CONCURRENCY, poll_status=False)
            w1_with_webhook(client, pid, hooked, receiver, CONCURRENCY, Runs())
            with_hook, without = Runs(), Runs()
            for _ in range(n):  # by turns, so the machine's load weighs on both alike
                w1_without_webhook(client, pid, plain, uploads, without)
                w1_with_webhook(client, pid, hooked, receiver, uploads, with_hook)
            events = with_hook.median("events")
            cpu_hook, cpu_plain = with_hook.median("cpu_s"), without.median("cpu_s")
            per_event = (cpu_hook - cpu_plain) / events
            figures["W1"] = {
                "lag_p50_s": with_hook.median("lag_p50"),
                "lag_p99_s": with_hook.median("lag_p99"),
                "events_per_run": events,
                "cpu_s_with_webhook": cpu_hook,
                "cpu_s_without_webhook": cpu_plain,
                "cpu_ms_per_delivered_event": per_event * 1000,
                "uploads_per_s": with_hook.median("uploads_per_s"),
                "events_delivered_per_s": with_hook.median("events_per_s"),
                "runs_with": with_hook.extra,
                "runs_without": without.extra,
            }
            rows += [
                (f"W1 lag file.completed ({args.database})",
                 f"p50 {ms(with_hook.median('lag_p50'))}, "
                 f"p99 {ms(with_hook.median('lag_p99'))}", None),
                ("W1 rates",
                 f"{with_hook.median('uploads_per_s'):.1f} uploads/s "
                 f"({2 * with_hook.median('uploads_per_s'):.1f} events/s raised), "
                 f"{with_hook.median('events_per_s'):.1f} events/s delivered", None),
                ("W1 service CPU, webhook",
                 f"{cpu_hook:.2f} s for {events:.0f} events, "
                 f"{per_event * 1000:.1f} ms per delivered event", cpu_hook / cpu_plain),
                ("W1 baseline: no webhook", f"{cpu_plain:.2f} s", 1.0),
            ]  # fmt: skip

        if args.only in (None, "W2"):
            org, other = new_org(env, "w2"), new_org(env, "w2-other")
            slow = [stack.enter_context(receiving()) for _ in range(4)]
            for receiver in slow:
                receiver.delay_s = HANG_S
            quick = [stack.enter_context(receiving()) for _ in range(4)]
            upload_load(service.base_url, org, CONCURRENCY, poll_status=True)  # warm-up
            quiet, answering, hanging = Runs(), Runs(), Runs()
            for _ in range(n):
                w2_once(service.base_url, pid, org, uploads, quiet)
                with webhooks_at(client, org, other, quick[:3], quick[3]):
                    w2_once(service.base_url, pid, org, uploads, answering)
                with webhooks_at(client, org, other, slow[:3], slow[3]):
                    w2_once(service.base_url, pid, org, uploads, hanging)
            keys = ("upload_p50", "upload_p99", "status_p50", "status_p99", "cpu_s")
            figures["W2"] = {
                "no_webhook": {k: quiet.median(k) for k in keys},
                "answering": {k: answering.median(k) for k in keys},
                "hanging": {k: hanging.median(k) for k in keys},
                "ratio": {k: hanging.median(k) / quiet.median(k) for k in keys},
                "ratio_hanging_to_answering": {
                    k: hanging.median(k) / answering.median(k) for k in keys
                },
                "walls_no_webhook": quiet.walls,
                "walls_hanging": hanging.walls,
                "runs_no_webhook": quiet.extra,
                "runs_hanging": hanging.extra,
                "hanging_requests": sum(len(r.snapshot()) for r in slow),
            }
            for label, runs, base in (
                ("W2 hanging receivers", hanging, quiet),
                ("W2 answering receivers", answering, quiet),
                ("W2 baseline: no webhook", quiet, quiet),
            ):
                rows += [
                    (f"{label}: upload",
                     f"p50 {ms(runs.median('upload_p50'))}, p99 {ms(runs.median('upload_p99'))}",
                     runs.median("upload_p50") / base.median("upload_p50")),
                    (f"{label}: status",
                     f"p50 {ms(runs.median('status_p50'))}, p99 {ms(runs.median('status_p99'))}",
                     runs.median("status_p50") / base.median("status_p50")),
                ]  # fmt: skip
            ratios = figures["W2"]["ratio"]
            rows.append(
                ("W2 ratios (hanging / none)",
                 f"upload p99 {ratios['upload_p99']:.2f}, status p99 {ratios['status_p99']:.2f}, "
                 f"CPU {ratios['cpu_s']:.2f}", None)
            )  # fmt: skip
            versus = figures["W2"]["ratio_hanging_to_answering"]
            rows.append(
                ("W2 ratios (hanging / answering)",
                 f"upload p50 {versus['upload_p50']:.2f}, p99 {versus['upload_p99']:.2f}, "
                 f"status p50 {versus['status_p50']:.2f}, p99 {versus['status_p99']:.2f}, "
                 f"CPU {versus['cpu_s']:.2f}", None)
            )  # fmt: skip

    print(f"{'scenario':<40} {'figures':<52} {'ratio':>6}")
    for name, text, ratio in rows:
        ratio_text = f"{ratio:6.2f}" if ratio is not None else f"{'':>6}"
        print(f"{name:<40} {text:<52} {ratio_text}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
