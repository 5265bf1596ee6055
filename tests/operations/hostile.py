"""Tools of the attack tests: raw hostile clients, and the victim's experience measured.

A victim is another organization doing what it always does (a small upload, a health
check) while an attack runs; its latency is compared, in the same test, with the same
measurement taken without the attack.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e import Service, upload_text
from tests.operations.raw_client import Exchange, MiB
from vectorgate.testing.service import Tenant

# The victim's median under attack may be this many times its median without...
LATENCY_RATIO = 5
# ...plus this much, so that 2 ms against 12 ms does not fail on a busy shared machine.
LATENCY_ALLOWANCE_S = 0.25
# Peak resident memory an attack may add to the service.
RSS_GROWTH_LIMIT = 256 * MiB

# The figures of each attack (`pytest -o log_cli=true --log-cli-level=INFO` shows them).
figures = logging.getLogger("tests.attack-figures")


@dataclass
class Victim:
    client: httpx.Client
    tenant: Tenant
    store: str

    def sample(self) -> tuple[float, float]:
        """Seconds for one small upload and for one `/healthz`."""
        started = time.perf_counter()
        upload_text(self.client, self.tenant, self.store, b"victim\n")
        uploaded = time.perf_counter()
        response = self.client.get("/healthz")
        assert response.status_code == 200, response.text
        return uploaded - started, time.perf_counter() - uploaded

    def medians(self, samples: int = 5) -> tuple[float, float]:
        taken = [self.sample() for _ in range(samples)]
        return (
            statistics.median(upload for upload, _ in taken),
            statistics.median(health for _, health in taken),
        )


def assert_unharmed(without: tuple[float, float], under: tuple[float, float]) -> None:
    for name, calm, attacked in zip(("upload", "healthz"), without, under, strict=True):
        figures.info(
            "victim %s: median %.1f ms without the attack, %.1f ms under it (x%.2f)",
            name, calm * 1000, attacked * 1000, attacked / calm,
        )  # fmt: skip
    for name, calm, attacked in zip(("upload", "healthz"), without, under, strict=True):
        bound = LATENCY_RATIO * calm + LATENCY_ALLOWANCE_S
        assert attacked <= bound, (
            f"victim {name}: median {attacked:.3f} s under attack, {calm:.3f} s without"
        )


@contextmanager
def peak_rss_growth(service: Service) -> Iterator[list[int]]:
    """Yields a list that receives the service's peak RSS growth over the block (bytes)."""
    pid = service.running.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak := current
    before = service.running.rss_bytes()
    growth: list[int] = []
    yield growth
    growth.append(service.running.peak_rss_bytes() - before)
    figures.info("service peak RSS growth: %.1f MiB", growth[0] / MiB)


@contextmanager
def running(attack: Callable[[threading.Event], object], copies: int = 1) -> Iterator[None]:
    """Run `copies` of `attack(stop)` in threads for the block; re-raise their failures."""
    stop = threading.Event()
    with ThreadPoolExecutor(copies) as pool:
        futures: list[Future[object]] = [pool.submit(attack, stop) for _ in range(copies)]
        try:
            yield
        finally:
            stop.set()
        for future in futures:
            future.result(timeout=60)


def log_answers(exchanges: list[Exchange]) -> None:
    times = [e.answered_after_s for e in exchanges if e.answered_after_s is not None]
    figures.info(
        "%d attack requests, answered after %.1f ms at most (median %.1f ms)",
        len(exchanges), max(times, default=0) * 1000,
        statistics.median(times) * 1000 if times else 0,
    )  # fmt: skip


def host_port(service: Service) -> tuple[str, int]:
    host, port = service.running.base_url.removeprefix("http://").split(":")
    return host, int(port)


def client_connections(service: Service) -> int:
    """How many connections of clients the service holds open (its sockets on its port)."""
    _, port = host_port(service)
    pid = service.running.pid
    inodes = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            listening = fields[3] == "0A"
            if local_port == port and not listening:
                inodes.add(fields[9])
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def staged_fds(service: Service) -> int:
    """How many files under the staging area the service holds open."""
    pid = service.running.pid
    root = str(service.temp_dir.resolve())
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(root) and not target.endswith(".owner.lock"):
            count += 1
    return count


def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)
