"""Webhook endpoints over HTTP (SPEC 10.1), on SQLite and PostgreSQL.

Create, list, get, delete; the secret shown only at creation and on rotation, stored
encrypted, the previous one kept for the overlap after a rotation (never more than two);
validation errors; the audit events. The module's service admits receivers on
127.0.0.1 (`webhook_allow_private`, as every test service); a second service with the
setting off refuses private and loopback destinations.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import Service, assert_error, running_service
from vectorgate.db import create_engine, create_sessionmaker, utcnow
from vectorgate.security.encryption import Keyring, load_keyring
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import Tenant
from vectorgate.webhooks.models import WebhookEndpoint
from vectorgate.webhooks.service import MAX_WEBHOOKS_PER_ORG, signing_secrets

pytestmark = pytest.mark.e2e

RECEIVER = "http://127.0.0.1:9/hook"
SECRET = re.compile(r"^whsec_([A-Za-z0-9+/]+={0,2})$")
FIELDS = {"id", "url", "events", "description", "created_at"}


def url(tenant: Tenant, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{tenant.org_id}/webhooks", *parts])


def create(client: httpx.Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post(url(tenant), json={"url": RECEIVER, **body}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def secret_bytes(secret: str) -> bytes:
    match = SECRET.fullmatch(secret)
    assert match, secret
    return base64.b64decode(match.group(1), validate=True)


def stored(service: Service, webhook_id: str) -> WebhookEndpoint | None:
    async def load() -> WebhookEndpoint | None:
        engine = create_engine(service.env["VECTORGATE_DATABASE_URL"])
        try:
            async with create_sessionmaker(engine)() as session:
                return await session.get(WebhookEndpoint, webhook_id)
        finally:
            await engine.dispose()

    return asyncio.run(load())


def keyring_of(service: Service) -> Keyring:
    return load_keyring("", Path(service.env["VECTORGATE_DATA_DIR"]))


def audit_events(client: httpx.Client, tenant: Tenant, target_id: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/v1/organizations/{tenant.org_id}/audit-events",
        params={"limit": "100"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    events = [e for e in response.json()["data"] if e["target_id"] == target_id]
    return list(reversed(events))  # oldest first


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- create, list, get, delete ----------------------------------------------------------


def test_create_shows_the_secret_once_then_list_get_and_delete(
    client: httpx.Client, tenant: Tenant
) -> None:
    before = utcnow() - timedelta(seconds=1)
    created = create(client, tenant, description="billing receiver")

    assert set(created) == FIELDS | {"secret"}
    assert re.fullmatch(r"whk_[0-9a-v]{24}", created["id"]), created["id"]
    assert created["url"] == RECEIVER
    assert created["events"] is None  # missing: every event type, shown as null
    assert created["description"] == "billing receiver"
    assert len(secret_bytes(created["secret"])) == 32
    assert before <= when(created["created_at"]) <= utcnow() + timedelta(seconds=1)
    shown = {k: v for k, v in created.items() if k != "secret"}

    one = client.get(url(tenant, created["id"]), headers=tenant.headers)
    assert one.status_code == 200, one.text
    assert one.json() == shown
    listed = client.get(url(tenant), headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["object"] == "list"
    assert shown in listed.json()["data"]
    assert created["secret"] not in listed.text + one.text

    deleted = client.delete(url(tenant, created["id"]), headers=tenant.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": created["id"], "deleted": True}
    assert client.get(url(tenant, created["id"]), headers=tenant.headers).status_code == 404
    again = client.delete(url(tenant, created["id"]), headers=tenant.headers)
    assert_error(again, 404, "NOT_FOUND")
    rotated = client.post(url(tenant, created["id"], "rotate-secret"), headers=tenant.headers)
    assert_error(rotated, 404, "NOT_FOUND")
    listed_after = client.get(url(tenant), headers=tenant.headers).json()["data"]
    assert created["id"] not in [w["id"] for w in listed_after]


def test_the_list_is_newest_first(client: httpx.Client, tenant: Tenant) -> None:
    first = create(client, tenant)
    second = create(client, tenant, events=["file.failed"])
    ids = [w["id"] for w in client.get(url(tenant), headers=tenant.headers).json()["data"]]
    assert ids.index(second["id"]) < ids.index(first["id"])


def test_an_event_filter_is_kept_and_shown(client: httpx.Client, tenant: Tenant) -> None:
    created = create(client, tenant, events=["file.completed", "batch.completed"], description=None)
    assert created["events"] == ["file.completed", "batch.completed"]
    assert created["description"] is None
    assert client.get(url(tenant, created["id"]), headers=tenant.headers).json()["events"] == [
        "file.completed",
        "batch.completed",
    ]
    every = create(client, tenant, events=None)
    assert every["events"] is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"url": RECEIVER, "events": []}, id="empty-events"),
        pytest.param({"url": RECEIVER, "events": ["file.deleted"]}, id="unknown-event"),
        pytest.param({"url": RECEIVER, "events": ["file.failed", "file.failed"]}, id="twice"),
        pytest.param({"url": RECEIVER, "events": "file.failed"}, id="events-not-a-list"),
        pytest.param({}, id="no-url"),
        pytest.param({"url": ""}, id="empty-url"),
        pytest.param({"url": 12}, id="url-not-a-string"),
        pytest.param({"url": "ftp://127.0.0.1/hook"}, id="ftp"),
        pytest.param({"url": "127.0.0.1/hook"}, id="no-scheme"),
        pytest.param({"url": "http://user:pw@127.0.0.1/hook"}, id="user-info"),
        pytest.param({"url": "http://127.0.0.1/hook#x"}, id="fragment"),
        pytest.param({"url": "http://127.0.0.1:70000/"}, id="bad-port"),
        pytest.param({"url": "http://127.0.0.1/" + "a" * 2048}, id="too-long"),
        pytest.param({"url": "http://127.0.0.1/a b"}, id="space"),
        pytest.param({"url": "http://nowhere.invalid/hook"}, id="does-not-resolve"),
        pytest.param({"url": RECEIVER, "description": "a\x00b"}, id="control-in-description"),
        pytest.param({"url": RECEIVER, "description": "x" * 501}, id="long-description"),
    ],
)
def test_invalid_bodies_are_400_and_create_nothing(
    client: httpx.Client, tenant: Tenant, body: dict[str, Any]
) -> None:
    before = client.get(url(tenant), headers=tenant.headers).json()["data"]
    response = client.post(url(tenant), json=body, headers=tenant.headers)
    assert_error(response, 400, "INVALID_REQUEST")
    assert client.get(url(tenant), headers=tenant.headers).json()["data"] == before


def test_an_organization_has_at_most_its_cap_of_webhooks(
    service: Service, client: httpx.Client
) -> None:
    tenant = service.new_tenant()
    made = [create(client, tenant)["id"] for _ in range(MAX_WEBHOOKS_PER_ORG)]
    over = client.post(url(tenant), json={"url": RECEIVER}, headers=tenant.headers)
    body = assert_error(over, 400, "INVALID_REQUEST")
    assert body["error"]["details"] == {"max_webhooks": MAX_WEBHOOKS_PER_ORG}
    # Room again once one is deleted.
    assert client.delete(url(tenant, made[0]), headers=tenant.headers).status_code == 200
    create(client, tenant)


def test_a_malformed_webhook_id_is_400_and_an_unknown_one_404(
    client: httpx.Client, tenant: Tenant
) -> None:
    assert_error(client.get(url(tenant, "whk_%00"), headers=tenant.headers), 400, "INVALID_REQUEST")
    unknown = client.get(url(tenant, "whk_" + "0" * 24), headers=tenant.headers)
    assert_error(unknown, 404, "NOT_FOUND")


# --- secrets ---------------------------------------------------------------------------


def test_the_secret_is_stored_encrypted(
    service: Service, client: httpx.Client, tenant: Tenant
) -> None:
    created = create(client, tenant)
    record = stored(service, created["id"])
    assert record is not None
    raw = secret_bytes(created["secret"])
    assert created["secret"] not in record.secret_ciphertext
    assert created["secret"].removeprefix("whsec_") not in record.secret_ciphertext
    assert base64.urlsafe_b64encode(raw).decode() not in record.secret_ciphertext
    assert record.previous_secret_ciphertext is None
    assert record.previous_secret_expires_at is None
    keyring = keyring_of(service)
    assert [s.reveal() for s in signing_secrets(keyring, record)] == [created["secret"]]
    assert created["secret"] not in service.running.log()


def test_rotation_shows_the_new_secret_once_and_keeps_the_previous_for_the_overlap(
    service: Service, client: httpx.Client, tenant: Tenant
) -> None:
    created = create(client, tenant)
    rotate = url(tenant, created["id"], "rotate-secret")

    before = utcnow()
    first = client.post(rotate, headers=tenant.headers)
    assert first.status_code == 200, first.text
    assert set(first.json()) == {"secret"}
    new = first.json()["secret"]
    assert len(secret_bytes(new)) == 32
    assert new != created["secret"]
    one = client.get(url(tenant, created["id"]), headers=tenant.headers)
    assert new not in one.text
    assert created["secret"] not in one.text

    record = stored(service, created["id"])
    assert record is not None
    assert new not in record.secret_ciphertext
    assert record.previous_secret_expires_at is not None
    overlap = record.previous_secret_expires_at - before
    assert timedelta(seconds=86400) <= overlap <= timedelta(seconds=86400 + 60)
    keyring = keyring_of(service)
    assert [s.reveal() for s in signing_secrets(keyring, record)] == [new, created["secret"]]
    after_overlap = record.previous_secret_expires_at + timedelta(seconds=1)
    assert [s.reveal() for s in signing_secrets(keyring, record, now=after_overlap)] == [new]

    # Never more than two: rotating again drops the oldest.
    second = client.post(rotate, headers=tenant.headers)
    assert second.status_code == 200, second.text
    newest = second.json()["secret"]
    record = stored(service, created["id"])
    assert record is not None
    assert [s.reveal() for s in signing_secrets(keyring, record)] == [newest, new]
    assert new not in service.running.log()
    assert newest not in service.running.log()


def test_audit_events_name_the_webhook_and_never_a_secret(
    client: httpx.Client, tenant: Tenant
) -> None:
    created = create(client, tenant, events=["file.completed"])
    rotated = client.post(url(tenant, created["id"], "rotate-secret"), headers=tenant.headers)
    assert rotated.status_code == 200, rotated.text
    deleted = client.delete(url(tenant, created["id"]), headers=tenant.headers)
    assert deleted.status_code == 200, deleted.text

    events = audit_events(client, tenant, created["id"])

    assert [e["type"] for e in events] == [
        "webhook.created",
        "webhook.secret_rotated",
        "webhook.deleted",
    ]
    key_id = events[0]["actor"]["id"]
    assert all(e["actor"] == {"type": "api_key", "id": key_id} for e in events)
    assert events[0]["details"] == {"host": "127.0.0.1", "events": ["file.completed"]}
    expires = events[1]["details"]["previous_secret_expires_at"]
    assert when(expires) > utcnow() + timedelta(seconds=86000)
    assert events[2]["details"] == {"host": "127.0.0.1"}
    text = repr(events)
    assert "whsec_" not in text
    assert created["secret"] not in text
    assert rotated.json()["secret"] not in text


# --- destinations with the private rule on ---------------------------------------------


@pytest.fixture(scope="module")
def strict(
    database_url: str, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """A service with `webhook_allow_private` off, as in production."""
    with running_service(
        database_url, fake_openai.base_url, tmp_path_factory, webhook_allow_private="false"
    ) as service:
        yield service


@pytest.fixture(scope="module")
def strict_tenant(strict: Service) -> Tenant:
    return strict.new_tenant()


@pytest.mark.parametrize(
    ("destination", "said"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.0.0.8/hook", "private"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://localhost/hook", "localhost resolves to"),
        ("http://8.8.8.8/hook", "https://"),
        ("https://nowhere.invalid/hook", "does not resolve"),
    ],
)
def test_without_allow_private_private_destinations_are_400(
    strict: Service, strict_tenant: Tenant, destination: str, said: str
) -> None:
    tenant = strict_tenant
    with httpx.Client(base_url=strict.running.base_url, timeout=60) as client:
        response = client.post(url(tenant), json={"url": destination}, headers=tenant.headers)
        body = assert_error(response, 400, "INVALID_REQUEST")
        assert said in body["message"], body
        assert body["error"]["details"] == {"url": destination}
        assert client.get(url(tenant), headers=tenant.headers).json()["data"] == []
        events = client.get(
            f"/v1/organizations/{tenant.org_id}/audit-events", headers=tenant.headers
        ).json()["data"]
        assert not [e for e in events if e["type"].startswith("webhook.")]
