"""vectorgate's benchmark: four scenarios, each next to a baseline measured in the same run.

    .venv/bin/python bench/run.py [--runs 3] [--files 10] [--mib 50] [--requests 500]

Starts, on 127.0.0.1: the fake OpenAI, `vectorgate serve` (one worker, SQLite), and the
baseline apps of bench/apps.py under the same uvicorn. Every scenario runs `--runs`
times and reports the median. Peak RSS growth is the server's VmHWM after a run minus
its RSS before it (the peak is reset between runs through /proc/PID/clear_refs).

Uploads to vectorgate and the naive app are sent with curl (a C client, as in S4).

S1  multipart, 10 x 50 MiB PDFs, one request     vs. the same files straight to the fake
                                                  with AsyncOpenAI (5 at a time) + a batch
S2  base64 JSON, 10 x 50 MiB (~700 MB), one req.  vs. a naive pydantic + b64decode handler
S3  500 base64 requests of one 20 KiB text file,  vs. the same upstream calls (upload +
    32 at a time                                  batch) made straight with AsyncOpenAI
S4  raw drain rate of a minimal ASGI app (curl, 500 MiB) next to vectorgate's intake
    rate in S1 and S2 (body bytes / the `intake` phase of its Server-Timing header)

Hashing: the CPU seconds SHA-256 takes over S1's files in 64 KiB chunks (what the
parsers do as the bytes stream in, for SPEC 11.2), as a share of S1's and S2's wall time.
With `--only S1` or `--only S2`, a second `vectorgate serve` whose parsers hash nothing
(bench/hashing_switch, loaded by both services alike) takes turns with the first and the
baseline, and the difference between the two (wall time, service CPU) is what hashing
costs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

from vectorgate.testing import samples
from vectorgate.testing.service import (
    RunningService,
    free_port,
    new_tenant,
    run_cli,
    serve,
    service_env,
)

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


# --- processes ----------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(field_name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of `pid` and its live child processes (the
    workers of `serve --workers N`; content workers too)."""
    total = 0
    for process in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


@contextmanager
def rss_growth(pid: int) -> Iterator[list[int]]:
    """Yields a list that receives the peak RSS growth (bytes) of `pid` over the block."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass  # not permitted: the peak then includes earlier runs, an upper bound
    before = _status_kib(pid, "VmRSS")
    result: list[int] = []
    yield result
    result.append((_status_kib(pid, "VmHWM") - before) * 1024)


@contextmanager
def uvicorn_app(target: str) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/", process)
        yield Server(process, f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def fake_openai(spool: Path, *options: str) -> Iterator[Server]:
    port = free_port()
    log = (spool.parent / "fake.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "vectorgate.testing.fake_openai", "--port", str(port),
         "--spool-dir", str(spool), *options],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{port}/v1/files", process)
        yield Server(process, f"http://127.0.0.1:{port}/v1")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


# --- bodies -------------------------------------------------------------------------


def write_base64_json(paths: list[Path], out: Path) -> None:
    with out.open("wb") as f:
        f.write(b'{"files": [')
        for i, path in enumerate(paths):
            f.write(b"," if i else b"")
            head = f'{{"filename": "{path.name}", "mime_type": "application/pdf", "content": "'
            f.write(head.encode())
            with path.open("rb") as src:
                while chunk := src.read(3 * MiB):  # a multiple of 3: no padding mid-string
                    f.write(base64.b64encode(chunk))
            f.write(b'"}')
        f.write(b"]}")


# --- results ------------------------------------------------------------------------


@dataclass
class Runs:
    walls: list[float] = field(default_factory=list)
    growths: list[int] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def add(self, wall: float, growth: int | None = None, **extra: float) -> None:
        self.walls.append(wall)
        if growth is not None:
            self.growths.append(growth)
        for key, value in extra.items():
            self.extra.setdefault(key, []).append(value)

    def wall(self) -> float:
        return statistics.median(self.walls)

    def growth_mib(self) -> float | None:
        return statistics.median(self.growths) / MiB if self.growths else None

    def median(self, key: str) -> float:
        return statistics.median(self.extra[key])


def repeat(runs: int, once: Callable[[Runs], None]) -> Runs:
    result = Runs()
    for _ in range(runs):
        settled(once)(result)
    return result


def settled(once: Callable[[Runs], None]) -> Callable[[Runs], None]:
    """`once`, after the disk has caught up with the last run's writes: a run that starts
    with hundreds of MiB still dirty pays for their writeback (the kernel makes a writer
    wait), whichever run left them."""

    def run(result: Runs) -> None:
        os.sync()
        once(result)

    return run


# --- scenarios ----------------------------------------------------------------------


@dataclass
class Setup:
    service_url: str
    service_pid: int
    fake_url: str
    api_key: str
    org: str
    credential: str
    openai_key: str
    store: str


def bench_setup(env: dict[str, str], service: RunningService, fake_url: str) -> Setup:
    """An organization with a credential and a store on `service`, warmed up."""
    tenant = new_tenant(env, "bench")
    store = run_cli(
        env, "vector-stores", "register", "--org", tenant.org_id,
        "--credential", tenant.credential_id, "--create", "bench",
    )["id"]  # fmt: skip
    setup = Setup(
        service.base_url, service.pid, fake_url, tenant.api_key, tenant.org_id,
        tenant.credential_id, tenant.openai_key, store,
    )  # fmt: skip
    httpx.get(f"{service.base_url}/healthz")  # warm up
    return setup


def delete_all_files(fake_url: str, openai_key: str) -> None:
    """Keep the fake's spool from filling the disk between runs."""

    async def run() -> None:
        async with openai.AsyncOpenAI(api_key=openai_key, base_url=fake_url) as client:
            async for file in client.files.list():
                await client.files.delete(file.id)

    asyncio.run(run())


def curl_post(url: str, *args: str) -> tuple[float, int, dict[str, str]]:
    """POST with curl (a C client, as in S4, so the client costs the server no CPU);
    returns wall seconds, status and response headers."""
    with tempfile.NamedTemporaryFile("r") as headers:
        done = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", headers.name,
             "-w", "%{time_total} %{http_code}",
             "-X", "POST", "-H", "Expect:", *args, url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        lines = headers.read().splitlines()
    wall, status = done.stdout.split()
    parsed = dict(line.split(": ", 1) for line in lines if ": " in line)
    return float(wall), int(status), {k.lower(): v for k, v in parsed.items()}


def intake_seconds(headers: dict[str, str]) -> float:
    for item in headers.get("server-timing", "").split(","):
        name, _, dur = item.strip().partition(";dur=")
        if name == "intake":
            return float(dur) / 1000
    raise RuntimeError(f"no intake timing in {headers}")


def s1_vectorgate(setup: Setup, paths: list[Path], result: Runs) -> None:
    url = (
        f"{setup.service_url}/api/v1/openai-assistants-vector-store/{setup.store}"
        f"?credential={setup.credential}"
    )
    parts = [arg for p in paths for arg in ("-F", f"files=@{p};type=application/pdf")]
    cpu_before = cpu_seconds(setup.service_pid)
    with rss_growth(setup.service_pid) as growth:
        wall, status, headers = curl_post(url, "-H", f"X-API-Key: {setup.api_key}", *parts)
    assert status == 200, status
    total = sum(p.stat().st_size for p in paths)
    cpu = cpu_seconds(setup.service_pid) - cpu_before
    result.add(wall, growth[0], intake_mib_s=total / MiB / intake_seconds(headers), cpu_s=cpu)
    delete_all_files(setup.fake_url, setup.openai_key)


def s1_direct(setup: Setup, paths: list[Path], result: Runs) -> None:
    async def run() -> None:
        async with openai.AsyncOpenAI(api_key=setup.openai_key, base_url=setup.fake_url) as c:
            gate = asyncio.Semaphore(5)

            async def one(path: Path) -> str:
                async with gate:
                    with path.open("rb") as f:
                        return (await c.files.create(file=f, purpose="assistants")).id

            ids = await asyncio.gather(*(one(p) for p in paths))
            batch = await c.vector_stores.file_batches.create(setup.store, file_ids=ids)
            await c.vector_stores.file_batches.poll(batch.id, vector_store_id=setup.store)

    started = time.perf_counter()
    asyncio.run(run())
    result.add(time.perf_counter() - started)
    delete_all_files(setup.fake_url, setup.openai_key)


def s2_vectorgate(setup: Setup, body: Path, result: Runs) -> None:
    url = (
        f"{setup.service_url}/v1/organizations/{setup.org}/vector-stores/{setup.store}"
        "/files/upload-base64"
    )
    cpu_before = cpu_seconds(setup.service_pid)
    with rss_growth(setup.service_pid) as growth:
        wall, status, headers = curl_post(
            url, "-H", f"X-API-Key: {setup.api_key}", "-H", "Content-Type: application/json",
            "-T", str(body),
        )  # fmt: skip
    assert status == 200, status
    size = body.stat().st_size
    cpu = cpu_seconds(setup.service_pid) - cpu_before
    result.add(wall, growth[0], intake_mib_s=size / MiB / intake_seconds(headers), cpu_s=cpu)
    delete_all_files(setup.fake_url, setup.openai_key)


def s2_naive(naive: Server, body: Path, result: Runs) -> None:
    with rss_growth(naive.pid) as growth:
        wall, status, _ = curl_post(
            f"{naive.url}/upload", "-H", "Content-Type: application/json", "-T", str(body)
        )
    assert status == 200, status
    result.add(wall, growth[0])


def _latencies(
    requests: int,
    concurrency: int,
    make_client: Callable[[], Any],
    call: Callable[[Any], Awaitable[None]],
) -> tuple[float, list[float]]:
    """Run `call` `requests` times, `concurrency` at once, with one client made in the loop."""

    async def run() -> tuple[float, list[float]]:
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        async with make_client() as client:

            async def one() -> None:
                async with gate:
                    started = time.perf_counter()
                    await call(client)
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(requests)))
            return time.perf_counter() - started, latencies

    return asyncio.run(run())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


S3_CONTENT = base64.b64encode(b"vectorgate benchmark text\n" * 800).decode()  # ~20 KiB


def s3_vectorgate(setup: Setup, requests: int, result: Runs) -> None:
    url = (
        f"{setup.service_url}/v1/organizations/{setup.org}/vector-stores/{setup.store}"
        "/files/upload-base64"
    )
    body = {"files": [{"filename": "a.txt", "content": S3_CONTENT, "mime_type": "text/plain"}]}

    async def call(client: httpx.AsyncClient) -> None:
        response = await client.post(url, json=body, headers={"X-API-Key": setup.api_key})
        response.raise_for_status()

    cpu_before = cpu_seconds(setup.service_pid)
    wall, latencies = _latencies(
        requests,
        32,
        lambda: httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=32)),
        call,
    )
    cpu_ms = (cpu_seconds(setup.service_pid) - cpu_before) * 1000 / requests
    add_latency_run(result, requests, wall, latencies, cpu_ms_per_request=cpu_ms)
    delete_all_files(setup.fake_url, setup.openai_key)


def add_latency_run(
    result: Runs, requests: int, wall: float, latencies: list[float], **extra: float
) -> None:
    result.add(
        wall,
        rps=requests / wall,
        p50=_percentile(latencies, 0.5),
        p99=_percentile(latencies, 0.99),
        **extra,
    )


def s3_direct(setup: Setup, requests: int, result: Runs) -> None:
    content = base64.b64decode(S3_CONTENT)

    async def call(client: openai.AsyncOpenAI) -> None:
        file = await client.files.create(file=("a.txt", content), purpose="assistants")
        await client.vector_stores.file_batches.create(setup.store, file_ids=[file.id])

    cpu_before = time.process_time()  # this process is the direct client
    wall, latencies = _latencies(
        requests,
        32,
        lambda: openai.AsyncOpenAI(api_key=setup.openai_key, base_url=setup.fake_url),
        call,
    )
    cpu_ms = (time.process_time() - cpu_before) * 1000 / requests
    add_latency_run(result, requests, wall, latencies, cpu_ms_per_request=cpu_ms)
    delete_all_files(setup.fake_url, setup.openai_key)


# Put on every measured service's PYTHONPATH: with BENCH_NO_HASHING=1 its parsers hash
# nothing (bench/hashing_switch/sitecustomize.py).
HASHING_SWITCH = str(Path(__file__).resolve().parent / "hashing_switch")


def hashing_seconds(paths: list[Path]) -> float:
    """CPU seconds to SHA-256 the files chunk by chunk, as the intake parsers do."""
    spent = 0.0
    for path in paths:
        data = path.read_bytes()
        started = time.process_time()
        digest = hashlib.sha256()
        view = memoryview(data)
        for start in range(0, len(data), 64 * 1024):
            digest.update(view[start : start + 64 * 1024])
        digest.hexdigest()
        spent += time.process_time() - started
    return spent


def s4_drain(drain: Server, path: Path, result: Runs) -> None:
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total}", "-X", "POST", "-T", str(path),
         "-H", "Content-Type: application/octet-stream", drain.url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = float(done.stdout)
    result.add(seconds, mib_s=path.stat().st_size / MiB / seconds)


# --- main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--database-url",
        help="the service's database (default: SQLite in the run's temp dir); e.g. "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/bench, created empty by you",
    )
    parser.add_argument("--workers", type=int, default=1, help="the service's worker processes")
    parser.add_argument(
        "--only", choices=["S1", "S2", "S3"], help="run one scenario and its baseline, taking turns"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vg-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        paths = []
        for i in range(args.files):
            paths.append(root / f"doc{i}.pdf")
            samples.write_pdf(paths[-1], args.mib * MiB)
        body = root / "body.json"
        write_base64_json(paths, body)
        raw = root / "raw.bin"
        with raw.open("wb") as f:
            for _ in range(500):
                f.write(os.urandom(MiB))

        (root / "spool").mkdir()
        fake = stack.enter_context(fake_openai(root / "spool"))
        data_dir = root / "service"
        data_dir.mkdir()
        database_url = args.database_url or f"sqlite+aiosqlite:///{data_dir}/vg.db"
        env = service_env(data_dir, database_url, fake.url) | {
            "PYTHONPATH": HASHING_SWITCH  # both services start alike (see the docstring)
        }
        service = stack.enter_context(
            serve(env, workers=args.workers, log_path=root / "service.log")
        )
        naive = stack.enter_context(uvicorn_app("bench.apps:naive"))
        drain = stack.enter_context(uvicorn_app("bench.apps:drain"))

        setup = bench_setup(env, service, fake.url)

        n = args.runs
        print(f"benchmark: {n} runs per scenario, median reported", file=sys.stderr)
        if args.only:
            print(f"service pid {service.pid}", file=sys.stderr, flush=True)
            only, baseline = {
                "S1": (
                    lambda r: s1_vectorgate(setup, paths, r),
                    lambda r: s1_direct(setup, paths, r),
                ),
                "S2": (lambda r: s2_vectorgate(setup, body, r), lambda r: s2_naive(naive, body, r)),
                "S3": (
                    lambda r: s3_vectorgate(setup, args.requests, r),
                    lambda r: s3_direct(setup, args.requests, r),
                ),
            }[args.only]
            unhashed: Runs | None = None
            if args.only in ("S1", "S2"):
                # The same service with hashing off, beside it (see the docstring).
                plain_dir = root / "service-no-hashing"
                plain_dir.mkdir()
                plain_env = service_env(
                    plain_dir, f"sqlite+aiosqlite:///{plain_dir}/vg.db", fake.url
                ) | {"PYTHONPATH": HASHING_SWITCH, "BENCH_NO_HASHING": "1"}
                plain_service = stack.enter_context(
                    serve(plain_env, log_path=root / "service-no-hashing.log")
                )
                plain = bench_setup(plain_env, plain_service, fake.url)
                unhashed = Runs()
                without = {
                    "S1": lambda r: s1_vectorgate(plain, paths, r),
                    "S2": lambda r: s2_vectorgate(plain, body, r),
                }[args.only]
                only(Runs())  # one unmeasured run each: both services fully started
                without(Runs())
            # The scenario and its baseline take turns, so that the machine's load weighs on
            # both alike.
            runs, base = Runs(), Runs()
            for i in range(n):
                if unhashed is not None and i % 2:  # which service goes first alternates
                    settled(without)(unhashed)
                settled(only)(runs)
                settled(baseline)(base)
                if unhashed is not None and not i % 2:
                    settled(without)(unhashed)
            print(f"{args.only}: walls {runs.walls} {runs.extra}")
            print(f"{args.only} baseline: walls {base.walls} {base.extra}")
            print(f"{args.only}: median wall {runs.wall():.3f} s, baseline {base.wall():.3f} s")
            if args.only in ("S1", "S2"):
                print(f"{args.only}: wall ratio {runs.wall() / base.wall():.3f}")
                hashing = statistics.median(hashing_seconds(paths) for _ in range(n))
                print(
                    f"{args.only}: SHA-256 of the files alone {hashing:.3f} CPU s, "
                    f"{100 * hashing / runs.wall():.1f}% of its wall time"
                )
                assert unhashed is not None
                print(f"{args.only} without hashing: walls {unhashed.walls} {unhashed.extra}")
                share = 1 - unhashed.wall() / runs.wall()
                print(
                    f"{args.only}: median wall {runs.wall():.3f} s hashing, "
                    f"{unhashed.wall():.3f} s not: hashing costs {100 * share:.1f}% of the wall"
                )
                if "cpu_s" in runs.extra:
                    cpu_with, cpu_without = runs.median("cpu_s"), unhashed.median("cpu_s")
                    print(
                        f"{args.only}: median service CPU {cpu_with:.3f} s hashing, "
                        f"{cpu_without:.3f} s not ({100 * (1 - cpu_without / cpu_with):.1f}%)"
                    )
            else:
                print(f"S3: throughput ratio {runs.median('rps') / base.median('rps'):.3f}")
            if "cpu_s" in runs.extra:
                print(f"{args.only}: median service CPU {runs.median('cpu_s'):.3f} s per run")
            if "cpu_ms_per_request" in runs.extra:
                cpu_ms = runs.median("cpu_ms_per_request")
                direct_ms = base.median("cpu_ms_per_request")
                print(
                    f"{args.only}: median CPU per request: service {cpu_ms:.1f} ms, "
                    f"direct SDK client {direct_ms:.1f} ms, ratio {cpu_ms / direct_ms:.2f}"
                )
                p99 = runs.median("p99") / base.median("p99")
                print(f"{args.only}: p99 ratio {p99:.2f}")
            return
        s1 = repeat(n, lambda r: s1_vectorgate(setup, paths, r))
        s1b = repeat(n, lambda r: s1_direct(setup, paths, r))
        s2 = repeat(n, lambda r: s2_vectorgate(setup, body, r))
        s2b = repeat(n, lambda r: s2_naive(naive, body, r))
        s3 = repeat(n, lambda r: s3_vectorgate(setup, args.requests, r))
        s3b = repeat(n, lambda r: s3_direct(setup, args.requests, r))
        s4 = repeat(n, lambda r: s4_drain(drain, raw, r))
        hashing = statistics.median(hashing_seconds(paths) for _ in range(n))

        total_mib = args.files * args.mib
        body_mib = body.stat().st_size / MiB
        drain_rate = s4.median("mib_s")
        rows = [
            ("S1 multipart vectorgate", s1.wall(), f"{total_mib / s1.wall():.0f} MiB/s",
             s1.growth_mib(), s1.wall() / s1b.wall()),
            ("S1 baseline: direct SDK", s1b.wall(), f"{total_mib / s1b.wall():.0f} MiB/s",
             None, 1.0),
            ("S2 base64 vectorgate", s2.wall(), f"{body_mib / s2.wall():.0f} MiB/s",
             s2.growth_mib(), s2.wall() / s2b.wall()),
            ("S2 baseline: naive pydantic", s2b.wall(), f"{body_mib / s2b.wall():.0f} MiB/s",
             s2b.growth_mib(), 1.0),
            ("S3 small requests vectorgate", s3.wall(),
             f"{s3.median('rps'):.0f} req/s, p50 {s3.median('p50') * 1000:.0f} ms, "
             f"p99 {s3.median('p99') * 1000:.0f} ms", None, s3.median("rps") / s3b.median("rps")),
            ("S3 baseline: direct SDK", s3b.wall(),
             f"{s3b.median('rps'):.0f} req/s, p50 {s3b.median('p50') * 1000:.0f} ms, "
             f"p99 {s3b.median('p99') * 1000:.0f} ms", None, 1.0),
            ("S4 raw drain (minimal ASGI)", s4.wall(), f"{drain_rate:.0f} MiB/s", None, 1.0),
            ("S4 vectorgate intake, S1", None, f"{s1.median('intake_mib_s'):.0f} MiB/s", None,
             s1.median("intake_mib_s") / drain_rate),
            ("S4 vectorgate intake, S2", None, f"{s2.median('intake_mib_s'):.0f} MiB/s", None,
             s2.median("intake_mib_s") / drain_rate),
            ("Hashing / S1 wall (SPEC 11.2)", hashing, f"{total_mib / hashing:.0f} MiB/s", None,
             hashing / s1.wall()),
            ("Hashing / S2 wall (SPEC 11.2)", hashing, "", None, hashing / s2.wall()),
        ]  # fmt: skip
        print(f"{'scenario':<30} {'wall s':>7}  {'throughput':<44} {'RSS +MiB':>8} {'ratio':>6}")
        for name, wall, throughput, growth, ratio in rows:
            wall_text = f"{wall:7.2f}" if wall is not None else f"{'':>7}"
            growth_text = f"{growth:8.1f}" if growth is not None else f"{'':>8}"
            print(f"{name:<30} {wall_text}  {throughput:<44} {growth_text} {ratio:6.2f}")
        p99_ratio = s3.median("p99") / s3b.median("p99")
        print(f"S3 p99 ratio (vectorgate / direct): {p99_ratio:.2f}")
        if args.json:
            args.json.write_text(json.dumps({name: [w, t, g, r] for name, w, t, g, r in rows}))


if __name__ == "__main__":
    main()
