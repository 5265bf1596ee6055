"""Events and their delivery (SPEC 10.2, 10.3), on SQLite and PostgreSQL.

The real `vectorgate serve` against the fake OpenAI, and a real HTTP receiver on
127.0.0.1 (vectorgate.testing.receiver) whose requests are verified with the
`standardwebhooks` package, as a receiver would.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.e2e import Service, assert_error, register_store
from tests.support import Part, content_type, multipart_body, text_files_body
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.receiver import Receiver, receiving
from vectorgate.testing.service import Tenant

pytestmark = pytest.mark.e2e

RETRY_DELAYS_S = (0.3, 0.3)
SERVICE_SETTINGS = {
    "webhook_retry_schedule_s": ",".join(map(str, RETRY_DELAYS_S)),
    "webhook_timeout_s": "1",
}
DELIVERY_FIELDS = {
    "id",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "delivered_at",
    "created_at",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as receiver:
        yield receiver


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.reset()
    return fake_openai


def hooks_url(tenant: Tenant, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}/webhooks", *parts])


def add_webhook(
    client: httpx.Client, tenant: Tenant, receiver: Receiver, events: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": receiver.url}
    if events is not None:
        body["events"] = events
    response = client.post(hooks_url(tenant), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def upload_base64(
    client: httpx.Client, tenant: Tenant, store: str, *names: str
) -> list[dict[str, Any]]:
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json=text_files_body(*names),
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    uploaded: list[dict[str, Any]] = response.json()["files"]
    return uploaded


def upload_flowise(
    client: httpx.Client, tenant: Tenant, store: str, *parts: Part
) -> httpx.Response:
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{store}",
        params={"credential": tenant.credential_id},
        content=multipart_body(parts),
        headers={**tenant.headers, "content-type": content_type()},
    )


def deliveries(client: httpx.Client, tenant: Tenant, webhook_id: str) -> list[dict[str, Any]]:
    response = client.get(hooks_url(tenant, webhook_id, "deliveries"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def wait_for_deliveries(
    client: httpx.Client,
    tenant: Tenant,
    webhook_id: str,
    done: Any,
    timeout_s: float = 20,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = deliveries(client, tenant, webhook_id)
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def by_type(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e["type"] == kind]


def test_a_base64_upload_raises_signed_events_for_each_file_and_the_batch(
    client: httpx.Client, service: Service, fake: FakeOpenAI, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    webhook = add_webhook(client, tenant, receiver)
    fake.fail_files_named("bad.txt")
    records = upload_base64(client, tenant, store, "good.txt", "bad.txt")

    received = receiver.wait_for(3)
    time.sleep(0.5)  # nothing more comes
    assert len(receiver.snapshot()) == 3
    events = [r.verify(webhook["secret"]) for r in received]
    for request, event in zip(received, events, strict=True):
        assert request.webhook_id == event["id"]
        assert request.headers["content-type"] == "application/json"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert set(event) == {"id", "type", "created_at", "organization_id", "data"}
        assert event["organization_id"] == tenant.org_id
        assert event["id"].startswith("evt_")
    completed, failed = by_type(events, "file.completed"), by_type(events, "file.failed")
    assert [e["data"]["id"] for e in completed] == [records[0]["id"]]
    assert [e["data"]["id"] for e in failed] == [records[1]["id"]]
    data = completed[0]["data"]
    assert data["processing_status"] == "completed"
    assert data["vector_store_id"] == store
    assert data["filename"] == "good.txt"
    assert data["file_id"] == records[0]["file_id"]
    assert "attributes" in data
    assert failed[0]["data"]["error_message"]
    # The file's status route answers what the event said.
    status = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{records[0]['id']}/status",
        headers=tenant.headers,
    ).json()
    assert {k: data[k] for k in status} == status
    (batch,) = by_type(events, "batch.completed")
    assert batch["data"]["vector_store_id"] == store
    assert batch["data"]["batch_id"] == fake.batches[0].id
    assert batch["data"]["counts"] == {"completed": 1, "failed": 1}
    assert sorted(f["id"] for f in batch["data"]["files"]) == sorted(r["id"] for r in records)

    shown = wait_for_deliveries(
        client, tenant, webhook["id"], lambda d: all(x["status"] == "delivered" for x in d)
    )
    assert len(shown) == 3
    for delivery in shown:
        assert set(delivery) == DELIVERY_FIELDS
        assert delivery["attempts"] == 1
        assert delivery["last_status_code"] == 204
        assert delivery["next_attempt_at"] is None
        assert delivery["delivered_at"] is not None
    assert {d["event_id"] for d in shown} == {e["id"] for e in events}
    assert {d["event_type"] for d in shown} == {"file.completed", "file.failed", "batch.completed"}


def test_the_flowise_route_records_its_files_and_raises_their_events(
    client: httpx.Client, service: Service, fake: FakeOpenAI, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    store = fake.create_vector_store(tenant.openai_key)  # not registered: the route does it
    webhook = add_webhook(client, tenant, receiver)
    response = upload_flowise(
        client, tenant, store, Part("f.txt", b"a flowise file\n", "text/plain")
    )
    assert response.status_code == 200, response.text
    upstream_id = response.json()[0]["id"]

    events = [r.verify(webhook["secret"]) for r in receiver.wait_for(2)]
    (completed,) = by_type(events, "file.completed")
    assert completed["data"]["file_id"] == upstream_id
    assert completed["data"]["filename"] == "f.txt"
    (batch,) = by_type(events, "batch.completed")
    assert batch["data"]["counts"] == {"completed": 1, "failed": 0}
    files = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files", headers=tenant.headers
    ).json()["data"]
    assert [(f["file_id"], f["processing_status"]) for f in files] == [(upstream_id, "completed")]


def test_a_failed_flowise_request_leaves_failed_records_and_says_so(
    client: httpx.Client, service: Service, fake: FakeOpenAI, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    store = fake.create_vector_store(tenant.openai_key)
    webhook = add_webhook(client, tenant, receiver)
    fake.fail_files_named("broken.txt")
    response = upload_flowise(
        client,
        tenant,
        store,
        Part("fine.txt", b"fine\n", "text/plain"),
        Part("broken.txt", b"broken\n", "text/plain"),
    )
    assert response.status_code == 500, response.text

    events = [r.verify(webhook["secret"]) for r in receiver.wait_for(3)]
    assert len(by_type(events, "file.failed")) == 2  # both files were deleted upstream
    (batch,) = by_type(events, "batch.completed")
    assert batch["data"]["counts"] == {"completed": 0, "failed": 2}
    assert fake.files_for(tenant.openai_key) == []


def test_a_webhook_gets_only_the_event_types_it_asked_for(
    client: httpx.Client, service: Service, fake: FakeOpenAI, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    with receiving() as everything:
        batches_only = add_webhook(client, tenant, receiver, events=["batch.completed"])
        add_webhook(client, tenant, everything)
        upload_base64(client, tenant, store, "one.txt")
        everything.wait_for(2)
        receiver.wait_for(1)
        time.sleep(0.5)
    assert [e["type"] for e in receiver.events()] == ["batch.completed"]
    assert len(deliveries(client, tenant, batches_only["id"])) == 1


def test_a_ping_is_delivered_whatever_the_filter(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    webhook = add_webhook(client, tenant, receiver, events=["file.failed"])
    response = client.post(hooks_url(tenant, webhook["id"], "ping"), headers=tenant.headers)
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    (received,) = receiver.wait_for(1)
    event = received.verify(webhook["secret"])
    assert event["id"] == event_id == received.webhook_id
    assert event["type"] == "webhook.ping"
    assert event["data"] == {"webhook_id": webhook["id"]}


def test_a_failing_receiver_is_retried_with_the_same_webhook_id_until_it_answers(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    webhook = add_webhook(client, tenant, receiver)
    receiver.status = 503
    client.post(hooks_url(tenant, webhook["id"], "ping"), headers=tenant.headers)
    receiver.wait_for(1)
    (pending,) = wait_for_deliveries(
        client, tenant, webhook["id"], lambda d: d and d[0]["attempts"] == 1
    )
    assert pending["status"] == "pending"
    assert pending["last_status_code"] == 503
    assert pending["last_error"] == "HTTP 503"
    assert pending["next_attempt_at"] is not None
    receiver.status = 200
    received = receiver.wait_for(2)
    assert received[0].webhook_id == received[1].webhook_id
    for request in received:
        request.verify(webhook["secret"])
    (done,) = wait_for_deliveries(
        client, tenant, webhook["id"], lambda d: d[0]["status"] == "delivered"
    )
    assert (done["attempts"], done["last_status_code"], done["last_error"]) == (2, 200, None)


def test_a_receiver_that_stays_down_fails_after_every_attempt_then_a_manual_retry_works(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    webhook = add_webhook(client, tenant, receiver)
    receiver.stop()
    client.post(hooks_url(tenant, webhook["id"], "ping"), headers=tenant.headers)
    (failed,) = wait_for_deliveries(
        client, tenant, webhook["id"], lambda d: d[0]["status"] == "failed"
    )
    assert failed["attempts"] == 1 + len(RETRY_DELAYS_S)
    assert failed["last_status_code"] is None
    assert "could not connect" in failed["last_error"]
    assert failed["next_attempt_at"] is None

    retry_url = hooks_url(tenant, webhook["id"], "deliveries", failed["id"], "retry")
    receiver.start()  # back, on the same port
    response = client.post(retry_url, headers=tenant.headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    (received,) = receiver.wait_for(1)
    assert received.webhook_id == failed["event_id"]
    (done,) = wait_for_deliveries(
        client, tenant, webhook["id"], lambda d: d[0]["status"] == "delivered"
    )
    assert done["attempts"] == 2 + len(RETRY_DELAYS_S)
    # A delivered one may be sent again too; a pending one may not.
    assert client.post(retry_url, headers=tenant.headers).status_code == 202
    receiver.status = 500
    conflict = client.post(retry_url, headers=tenant.headers)
    if conflict.status_code == 409:  # still pending (else its one attempt was made already)
        assert_error(conflict, 409, "CONFLICT")
    (again,) = wait_for_deliveries(
        client, tenant, webhook["id"], lambda d: d[0]["status"] == "failed"
    )
    assert again["last_status_code"] == 500  # one attempt, failed, no new schedule
    assert len(receiver.snapshot()) == 2


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    webhook = add_webhook(client, tenant, receiver)
    receiver.status = 307
    client.post(hooks_url(tenant, webhook["id"], "ping"), headers=tenant.headers)
    (first,) = wait_for_deliveries(client, tenant, webhook["id"], lambda d: d[0]["attempts"] >= 1)
    assert first["last_status_code"] == 307
    assert "redirect" in first["last_error"]
    assert first["status"] == "pending"


def test_a_hanging_receiver_times_out_and_delays_nobody_else(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    slow_tenant, quick_tenant = service.new_tenant(), service.new_tenant()
    slow = add_webhook(client, slow_tenant, receiver)
    receiver.delay_s = 5  # well past the 1 s timeout
    for _ in range(6):  # more than one organization may have in flight at once
        client.post(hooks_url(slow_tenant, slow["id"], "ping"), headers=slow_tenant.headers)
    receiver.wait_for(1)
    with receiving() as quick_receiver:
        quick = add_webhook(client, quick_tenant, quick_receiver)
        sent = time.monotonic()
        client.post(hooks_url(quick_tenant, quick["id"], "ping"), headers=quick_tenant.headers)
        quick_receiver.wait_for(1, timeout_s=5)
        waited = time.monotonic() - sent
    assert waited < 1.5, waited  # not behind the slow receiver's 1 s timeouts
    found = wait_for_deliveries(
        client, slow_tenant, slow["id"], lambda d: all(x["last_error"] is not None for x in d)
    )
    assert all(d["last_error"] == "no answer within 1 s" for d in found), found
    receiver.delay_s = 0


def test_during_a_secret_overlap_both_secrets_verify_and_after_deletion_nothing_is_sent(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    webhook = add_webhook(client, tenant, receiver)
    rotated = client.post(hooks_url(tenant, webhook["id"], "rotate-secret"), headers=tenant.headers)
    assert rotated.status_code == 200, rotated.text
    client.post(hooks_url(tenant, webhook["id"], "ping"), headers=tenant.headers)
    (received,) = receiver.wait_for(1)
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    received.verify(webhook["secret"])
    received.verify(rotated.json()["secret"])
    with pytest.raises(WebhookVerificationError):
        received.verify("whsec_" + base64.b64encode(b"x" * 32).decode())
    # A secret alone checks the signature: a changed body does not verify.
    tampered = received.body.replace(b"webhook.ping", b"webhook.pong")
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook["secret"]).verify(tampered, received.headers)

    receiver.stop()
    client.post(hooks_url(tenant, webhook["id"], "ping"), headers=tenant.headers)
    assert client.delete(hooks_url(tenant, webhook["id"]), headers=tenant.headers).is_success
    receiver.start()
    time.sleep(1.0)  # past the first retry's delay
    assert len(receiver.snapshot()) == 1


def test_delivery_routes_answer_404_for_unknown_ids(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    webhook = add_webhook(client, tenant, receiver)
    unknown = "whd_" + "0" * 24
    retry = client.post(
        hooks_url(tenant, webhook["id"], "deliveries", unknown, "retry"), headers=tenant.headers
    )
    assert_error(retry, 404, "NOT_FOUND")
    page = client.get(
        hooks_url(tenant, webhook["id"], "deliveries"),
        params={"after": unknown},
        headers=tenant.headers,
    )
    assert_error(page, 404, "NOT_FOUND")
    missing = "whk_" + "0" * 24
    assert_error(
        client.post(hooks_url(tenant, missing, "ping"), headers=tenant.headers), 404, "NOT_FOUND"
    )


def metric(text: str, name: str) -> float:
    """The value of the metric line `name` (with its labels) in a /metrics answer."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_deliveries_by_outcome_their_lag_and_the_queue(
    client: httpx.Client, service: Service, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    webhook = add_webhook(client, tenant, receiver)
    before = client.get("/metrics").text
    receiver.status = 500
    client.post(hooks_url(tenant, webhook["id"], "ping"), headers=tenant.headers)
    receiver.wait_for(1)
    receiver.status = 204
    receiver.wait_for(2)
    wait_for_deliveries(client, tenant, webhook["id"], lambda d: d[0]["status"] == "delivered")
    after = client.get("/metrics").text
    for outcome in ("retrying", "delivered"):
        name = f'vectorgate_webhook_deliveries_total{{outcome="{outcome}"}}'
        assert metric(after, name) == metric(before, name) + 1, outcome
    lag = "vectorgate_webhook_delivery_lag_seconds_count"
    assert metric(after, lag) == metric(before, lag) + 1
    assert "vectorgate_webhook_queue_depth" in after


def test_a_file_that_times_out_is_failed_by_the_poller_and_said_so(
    client: httpx.Client, service: Service, fake: FakeOpenAI, receiver: Receiver
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    webhook = add_webhook(client, tenant, receiver)
    fake.batch_mode = "stuck"  # never ends: the 3 s batch deadline of the test service does
    (record,) = upload_base64(client, tenant, store, "slow.txt")
    events = [r.verify(webhook["secret"]) for r in receiver.wait_for(2, timeout_s=30)]
    (failed,) = by_type(events, "file.failed")
    assert failed["data"]["id"] == record["id"]
    assert "did not finish within 3s" in failed["data"]["error_message"]
    (batch,) = by_type(events, "batch.completed")
    assert batch["data"]["counts"] == {"completed": 0, "failed": 1}
