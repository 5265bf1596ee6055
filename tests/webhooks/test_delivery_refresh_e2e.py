"""A status request that ends a file raises its event (SPEC 10.2: whoever makes the
change), once, and the poller does not raise it again.

The module's poller looks at a batch every 6 s only, so a status request (which asks
OpenAI about a file whose record is more than 2 s old) is the first to see the file
completed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e import Service, register_store
from tests.webhooks.test_delivery_e2e import add_webhook, by_type, upload_base64
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.receiver import Receiver, receiving

pytestmark = pytest.mark.e2e

POLL_INTERVAL_S = 6.0
SERVICE_SETTINGS = {"poll_interval_s": str(POLL_INTERVAL_S)}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


def test_the_status_route_ends_the_file_and_raises_its_event_once(
    client: httpx.Client, service: Service, fake_openai: FakeOpenAI, receiver: Receiver
) -> None:
    fake_openai.reset()
    fake_openai.polls_to_complete = 2  # the poller's first look, then the status request's
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake_openai)
    webhook = add_webhook(client, tenant, receiver)
    (record,) = upload_base64(client, tenant, store, "asked.txt")
    status_url = (
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{record['id']}/status"
    )
    # The poller's first look (within a second or so) marks the file processing; a status
    # request asks OpenAI once that record is 2 s old, before the poller's next look (6 s
    # after its first).
    deadline = time.monotonic() + POLL_INTERVAL_S - 1.5
    while client.get(status_url, headers=tenant.headers).json()["processing_status"] != (
        "completed"
    ):
        assert time.monotonic() < deadline, "no status request ended the file"
        time.sleep(0.2)
    answered = time.monotonic()
    (first,) = receiver.wait_for(1, timeout_s=POLL_INTERVAL_S)
    assert time.monotonic() - answered < 1.5  # raised by the status request's write
    assert first.verify(webhook["secret"])["type"] == "file.completed"
    # The poller then finds every file final: the batch's event, and no second file event.
    events = [r.verify(webhook["secret"]) for r in receiver.wait_for(2, timeout_s=15)]
    time.sleep(POLL_INTERVAL_S + 1)
    events = [r.verify(webhook["secret"]) for r in receiver.snapshot()]
    assert len(by_type(events, "file.completed")) == 1
    assert len(by_type(events, "batch.completed")) == 1
    assert len(events) == 2
