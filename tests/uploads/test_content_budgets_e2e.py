"""Crafted files that cost far more to check or convert than their size, end to end.

Each attack runs against the real `vectorgate serve` while another organization keeps
uploading a small text file and asking `/healthz`: its latency under attack is compared
with its latency measured the same way, in the same test, without the attack. The
service's peak memory growth during the attack is measured too, and the attacker gets
its status in the route family's body. Hostile files are generated here, never checked
in.
"""

from __future__ import annotations

import base64
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e import Service, Tenant, assert_error, register_store, upload_text
from tests.support import Part, content_type, multipart_body
from tests.uploads import workbooks
from tests.uploads.zips import zip_directory_only
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.uploads import xlsx
from vectorgate.uploads.filetypes import DOCX, JSON, XLSX, MiB

pytestmark = pytest.mark.e2e

# Small enough that a leaked slot shows: after each attack the attacker must be able to
# fill all of them again at once.
SLOTS = 6
SERVICE_SETTINGS = {"max_concurrent_uploads_per_org": str(SLOTS)}

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


@pytest.fixture(scope="module")
def victim_tenant(service: Service) -> Tenant:
    return service.new_tenant()


@pytest.fixture
def victim(client: httpx.Client, victim_tenant: Tenant, fake: FakeOpenAI) -> Victim:
    return Victim(victim_tenant, register_store(client, victim_tenant, fake))


@pytest.fixture
def store(fake: FakeOpenAI, tenant: Tenant) -> str:
    return fake.create_vector_store(tenant.openai_key)


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


def assert_slots_given_back(client: httpx.Client, tenant: Tenant, store: str) -> None:
    """Every one of the attacker's slots is free again: it can use all at once."""

    def one(_: int) -> int:
        return flowise_upload(client, tenant, store, "ok.txt", b"fine", "text/plain").status_code

    with ThreadPoolExecutor(SLOTS) as pool:
        assert list(pool.map(one, range(SLOTS))) == [200] * SLOTS


def test_six_workbooks_with_a_row_numbered_ten_to_the_fifteenth_do_not_stall_anyone(
    service: Service, client: httpx.Client, tenant: Tenant, store: str, victim: Victim
) -> None:
    # Before: each never finished converting; six filled the default thread pool, and
    # every upload of every organization hung until a restart.
    hostile = workbooks.far_row()
    assert len(hostile) < 3000

    def attack(own: httpx.Client) -> None:
        response = flowise_upload(own, tenant, store, "far.xlsx", hostile, XLSX.mime_type)
        assert response.status_code == 200, response.text

    report = under_attack(service, client, victim, attack, attackers=SLOTS)
    assert_victim_unharmed(report)
    assert report.answer_s < 10
    assert_slots_given_back(client, tenant, store)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: workbooks.empty_cells(xlsx.MAX_CELLS + 1), f"more than {xlsx.MAX_CELLS:,} cells"),
        (
            lambda: workbooks.shared_strings(xlsx.MAX_SHARED_STRINGS + 1),
            f"more than {xlsx.MAX_SHARED_STRINGS:,} shared strings",
        ),
        (
            lambda: workbooks.long_cell(64 * MiB, shared=False),
            f"more than {xlsx.MAX_CELL_CHARS:,} characters",
        ),
    ],
    ids=["empty-cells", "shared-strings", "64M-character-cell"],
)
def test_workbook_over_a_cap_is_413_in_little_memory_while_others_upload(
    service: Service,
    client: httpx.Client,
    tenant: Tenant,
    store: str,
    victim: Victim,
    fake: FakeOpenAI,
    build: Callable[[], bytes],
    fragment: str,
) -> None:
    # Before: 507 KB of <c/> grew the service from 0.5 to 7.2 GB; 5M shared strings cost
    # 885 MiB; one 300 MB cell 1.3 GB.
    hostile = build()
    assert len(hostile) < 2 * MiB

    def attack(own: httpx.Client) -> None:
        response = flowise_upload(own, tenant, store, "bomb.xlsx", hostile, XLSX.mime_type)
        assert_flowise_error(response, 413, "bomb.xlsx: ", fragment)

    report = under_attack(service, client, victim, attack)
    assert_victim_unharmed(report)
    assert report.answer_s < 10
    assert fake.files_for(tenant.openai_key) == []
    assert_slots_given_back(client, tenant, store)


def test_docx_whose_zip_directory_lists_900k_entries_is_415_at_once(
    service: Service, client: httpx.Client, tenant: Tenant, store: str, victim: Victim
) -> None:
    # Before: zipfile read the whole directory, 514 MiB and ~7 s per upload.
    hostile = zip_directory_only(900_000)
    assert len(hostile) <= DOCX.max_bytes

    def attack(own: httpx.Client) -> None:
        response = flowise_upload(own, tenant, store, "parts.docx", hostile, DOCX.mime_type)
        assert_flowise_error(response, 415, "parts.docx: ", "lists 65535 entries")

    report = under_attack(service, client, victim, attack)
    assert_victim_unharmed(report)
    assert report.answer_s < 5
    assert report.rss_growth < 128 * MiB  # the 46 MB body passes through buffers


def base64_upload(
    client: httpx.Client, tenant: Tenant, store: str, filename: str, content: bytes
) -> httpx.Response:
    return client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={
            "files": [
                {
                    "filename": filename,
                    "content": base64.b64encode(content).decode(),
                    "mime_type": JSON.mime_type,
                }
            ]
        },
        headers=tenant.headers,
    )


@pytest.fixture
def registered_store(client: httpx.Client, tenant: Tenant, fake: FakeOpenAI) -> str:
    return register_store(client, tenant, fake)


def test_ten_mib_of_small_json_strings_is_checked_in_flat_memory(
    service: Service, client: httpx.Client, tenant: Tenant, store: str, victim: Victim
) -> None:
    # Before: json.loads built the whole tree, +270 MB for this file.
    content = b"[" + b",".join([b'"ab"'] * (JSON.max_bytes // 5 - 1)) + b"]"
    assert len(content) <= JSON.max_bytes

    def attack(own: httpx.Client) -> None:
        response = flowise_upload(own, tenant, store, "many.json", content, JSON.mime_type)
        assert response.status_code == 200, response.text

    report = under_attack(service, client, victim, attack)
    assert_victim_unharmed(report)
    assert report.rss_growth < 96 * MiB  # the body's own buffers; the tree cost 270 MB


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_holding_nan_or_infinity_is_415_on_the_base64_route(
    client: httpx.Client, tenant: Tenant, registered_store: str, fake: FakeOpenAI, constant: bytes
) -> None:
    response = base64_upload(client, tenant, registered_store, "v.json", b"[1, " + constant + b"]")
    body = assert_error(response, 415, "UNSUPPORTED_FILE_TYPE")
    assert body["message"].startswith("v.json: the content is not valid JSON (")
    assert fake.files_for(tenant.openai_key) == []


def test_csv_holding_only_a_bom_is_an_empty_file_on_both_routes(
    client: httpx.Client, tenant: Tenant, store: str, registered_store: str, fake: FakeOpenAI
) -> None:
    bom = b"\xff\xfe"
    response = flowise_upload(client, tenant, store, "bom.csv", bom, "text/csv")
    assert_flowise_error(response, 400, "bom.csv: file is empty")
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{registered_store}/files/upload-base64",
        json={
            "files": [
                {
                    "filename": "bom.csv",
                    "content": base64.b64encode(bom).decode(),
                    "mime_type": "text/csv",
                }
            ]
        },  # fmt: skip
        headers=tenant.headers,
    )
    body = assert_error(response, 400, "INVALID_REQUEST")
    assert body["message"] == "bom.csv: file is empty"
    assert fake.files_for(tenant.openai_key) == []
