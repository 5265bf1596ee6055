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
from collections.abc import Callable

import httpx
import pytest

from tests.e2e import Service, Tenant, assert_error, register_store
from tests.uploads import workbooks
from tests.uploads.attacks import (
    Victim,
    assert_flowise_error,
    assert_slots_given_back,
    assert_victim_unharmed,
    flowise_upload,
    under_attack,
)
from tests.uploads.zips import zip_directory_only
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.uploads import xlsx
from vectorgate.uploads.filetypes import DOCX, JSON, XLSX, MiB

pytestmark = pytest.mark.e2e

# Small enough that a leaked slot shows: after each attack the attacker must be able to
# fill all of them again at once.
SLOTS = 6
SERVICE_SETTINGS = {"max_concurrent_uploads_per_org": str(SLOTS), "content_workers": "3"}


@pytest.fixture(scope="module")
def victim_tenant(service: Service) -> Tenant:
    return service.new_tenant()


@pytest.fixture
def victim(client: httpx.Client, victim_tenant: Tenant, fake: FakeOpenAI) -> Victim:
    return Victim(victim_tenant, register_store(client, victim_tenant, fake))


@pytest.fixture
def store(fake: FakeOpenAI, tenant: Tenant) -> str:
    return fake.create_vector_store(tenant.openai_key)


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
    assert_slots_given_back(client, tenant, store, SLOTS)


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
    assert report.answer_s < 30  # before the 30 s per-file deadline; ~2 s on an idle machine
    assert fake.files_for(tenant.openai_key) == []
    assert_slots_given_back(client, tenant, store, SLOTS)


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
