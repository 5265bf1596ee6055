"""A file within every cap that still takes too long is stopped at the per-file deadline.

The service runs with a short deadline so that an ordinary-sized costly workbook
reaches it; the attacker's request ends in 413 at the deadline and its upload slot is
free again at once, while another organization keeps uploading.
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e import Service, Tenant, register_store
from tests.uploads import workbooks
from tests.uploads.attacks import (
    Victim,
    assert_flowise_error,
    assert_slots_given_back,
    assert_victim_unharmed,
    flowise_upload,
    under_attack,
)
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.uploads import xlsx
from vectorgate.uploads.filetypes import XLSX

pytestmark = pytest.mark.e2e

SLOTS = 2
DEADLINE_S = 0.5
SERVICE_SETTINGS = {
    "max_concurrent_uploads_per_org": str(SLOTS),
    "content_deadline_s": str(DEADLINE_S),
    "content_workers": "3",
}


@pytest.fixture(scope="module")
def victim_tenant(service: Service) -> Tenant:
    return service.new_tenant()


@pytest.fixture
def victim(client: httpx.Client, victim_tenant: Tenant, fake: FakeOpenAI) -> Victim:
    return Victim(victim_tenant, register_store(client, victim_tenant, fake))


def test_workbook_that_takes_longer_than_the_deadline_is_413_and_frees_its_slot(
    service: Service, client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, victim: Victim
) -> None:
    store = fake.create_vector_store(tenant.openai_key)
    # Under the cell cap, but ~1.5 s of CPU to read: three times the deadline.
    hostile = workbooks.empty_cells(xlsx.MAX_CELLS * 3 // 4)

    def attack(own: httpx.Client) -> None:
        response = flowise_upload(own, tenant, store, "slow.xlsx", hostile, XLSX.mime_type)
        assert_flowise_error(
            response, 413, f"slow.xlsx: checking and converting the file took longer than the "
            f"{DEADLINE_S:g} s allowed per file"
        )  # fmt: skip
        # The slot was given back when the request ended: all can be taken at once.
        assert_slots_given_back(own, tenant, store, SLOTS)

    report = under_attack(service, client, victim, attack)
    assert_victim_unharmed(report)
    assert report.answer_s < 10  # the 413 comes at the deadline, then the slot check
    # Only the slot checks' files went up, never the workbook.
    assert {f.filename for f in fake.files_for(tenant.openai_key)} == {"ok.txt"}
