"""An attack run over and over against the real service while a victim measures itself.

The victim is another organization uploading a small text file and asking `/healthz`;
its median latency under attack is compared with the same measurement without, taken in
the same test. The peak memory of the service and of its worker processes is measured
over the attack.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e import Service, Tenant, upload_text
from tests.support import Part, content_type, multipart_body
from vectorgate.uploads.filetypes import MiB

MAX_RSS_GROWTH = 256 * MiB
# The victim's median latency under attack may be this many times its median without,
# plus an allowance so that 2 ms against 12 ms on a busy machine is not a failure.
MAX_SLOWDOWN = 5
ALLOWANCE_S = 0.25
SAMPLES = 5


@dataclass
class Victim:
    tenant: Tenant
    store: str


def flowise_upload(
    client: httpx.Client, tenant: Tenant, store: str, filename: str, content: bytes, mime: str
) -> httpx.Response:
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{store}?credential={tenant.credential_id}",
        content=multipart_body([Part(filename, content, mime)]),
        headers={**tenant.headers, "Content-Type": content_type()},
    )


def assert_flowise_error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    assert body["success"] is False
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    message: str = body["message"]
    return message


@dataclass
class Measured:
    upload_s: float  # the victim's median upload
    health_s: float  # the median /healthz


def measure_victim(client: httpx.Client, victim: Victim) -> Measured:
    uploads: list[float] = []
    health: list[float] = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        upload_text(client, victim.tenant, victim.store, b"hello")
        uploads.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        health.append(time.perf_counter() - started)
    return Measured(statistics.median(uploads), statistics.median(health))


@dataclass
class AttackReport:
    quiet: Measured
    attacked: Measured
    rss_growth: int
    answer_s: float  # the slowest answer the attacker got
    attacks: int


def service_processes(service: Service) -> list[int]:
    """The service and its worker processes, whose memory counts as the service's."""
    pid = service.running.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def under_attack(
    service: Service,
    client: httpx.Client,
    victim: Victim,
    attack: Callable[[httpx.Client], None],
    *,
    attackers: int = 1,
) -> AttackReport:
    """Measure the victim without, then during, `attack` run over and over by `attackers`.

    Each attack checks its own answer (raising if wrong). The peak memory of the service
    and of its worker processes is reset first, so the growth reported is this attack's.
    """
    quiet = measure_victim(client, victim)
    rss_before = {}
    for pid in service_processes(service):
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to now
        rss_before[pid] = status_kib(pid, "VmRSS") * 1024
    stop = threading.Event()
    answers: list[float] = []

    def keep_attacking() -> None:
        with httpx.Client(base_url=service.running.base_url, timeout=60) as own:
            while not stop.is_set():
                started = time.perf_counter()
                attack(own)
                answers.append(time.perf_counter() - started)

    with ThreadPoolExecutor(attackers) as pool:
        running = [pool.submit(keep_attacking) for _ in range(attackers)]
        try:
            time.sleep(0.2)  # the attack requests are in flight before the victim starts
            attacked = measure_victim(client, victim)
        finally:
            stop.set()
        for future in running:
            future.result()  # an attacker's wrong answer fails the test here
    report = AttackReport(
        quiet,
        attacked,
        sum(
            status_kib(pid, "VmHWM") * 1024 - rss_before.get(pid, 0)
            for pid in service_processes(service)
        ),
        max(answers),
        len(answers),
    )
    # The figures quoted in docs/DECISIONS.md (shown with pytest -s).
    print(  # noqa: T201
        f"victim upload {quiet.upload_s * 1000:.0f} -> {attacked.upload_s * 1000:.0f} ms, "
        f"healthz {quiet.health_s * 1000:.1f} -> {attacked.health_s * 1000:.1f} ms, "
        f"peak RSS growth {report.rss_growth / MiB:.0f} MiB, slowest answer "
        f"{report.answer_s:.2f} s over {report.attacks} attacks"
    )
    return report


def assert_victim_unharmed(report: AttackReport) -> None:
    quiet, attacked = report.quiet, report.attacked
    assert attacked.upload_s <= MAX_SLOWDOWN * quiet.upload_s + ALLOWANCE_S
    assert attacked.health_s <= MAX_SLOWDOWN * quiet.health_s + ALLOWANCE_S
    assert report.rss_growth < MAX_RSS_GROWTH


def assert_slots_given_back(client: httpx.Client, tenant: Tenant, store: str, slots: int) -> None:
    """Every one of the attacker's `slots` is free again: it can use all at once."""

    def one(_: int) -> int:
        return flowise_upload(client, tenant, store, "ok.txt", b"fine", "text/plain").status_code

    with ThreadPoolExecutor(slots) as pool:
        assert list(pool.map(one, range(slots))) == [200] * slots
