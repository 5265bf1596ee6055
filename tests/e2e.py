"""End-to-end fixtures: the real `vectorgate serve` against the fake OpenAI over HTTP.

Loaded for every test module as a pytest plugin (see conftest.py). Each module that
uses `service` gets one service per database backend; a module-level
`SERVICE_SETTINGS` dict tunes its settings.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import staged_leftovers
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import (
    RunningService,
    Tenant,
    new_tenant,
    serve,
    service_env,
)

DEFAULT_SETTINGS = {
    "batch_timeout_s": "3",
    "retry_backoff_s": "0.01",
    "max_concurrent_uploads_per_org": "12",
    "poll_interval_s": "0.1",
    "poller_lease_s": "2",
    # One content worker process per service, not the default three: the suite starts
    # dozens of services. Modules that test how organizations share workers set more.
    "content_workers": "1",
    # Webhooks the tests create point at receivers on 127.0.0.1 (SPEC 10.1 lets this
    # setting admit them); tests/webhooks checks the refusals with it off.
    "webhook_allow_private": "true",
    # Two attempts, then `failed`: the matrices' deliveries to a closed port end soon.
    "webhook_retry_schedule_s": "0.2",
}


@dataclass
class Service:
    running: RunningService
    env: dict[str, str]
    temp_dir: Path

    def new_tenant(self) -> Tenant:
        return new_tenant(self.env, f"org-{uuid.uuid4().hex[:6]}")


def register_store(client: httpx.Client, tenant: Tenant, fake: FakeOpenAI) -> str:
    """A vector store created at the fake and registered through the API."""
    store = fake.create_vector_store(tenant.openai_key)
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores",
        json={"credential_id": tenant.credential_id, "vector_store_id": store},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    return store


def upload_text(
    client: httpx.Client, tenant: Tenant, store: str, content: bytes = b"hello\n"
) -> dict[str, Any]:
    """One text file through the base64 route; its file record."""
    encoded = base64.b64encode(content).decode()
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={"files": [{"filename": "a.txt", "content": encoded, "mime_type": "text/plain"}]},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()["files"][0]
    return record


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An organization-API error: the status, the body shape and the code."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["message"]
    return body


@contextmanager
def running_service(
    database_url: str,
    openai_base_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    **settings: str,
) -> Iterator[Service]:
    """`vectorgate serve` with the test defaults, `settings` on top."""
    data_dir = tmp_path_factory.mktemp("service")
    env = service_env(data_dir, database_url, openai_base_url, **(DEFAULT_SETTINGS | settings))
    with serve(env, log_path=data_dir / "service.log") as running:
        yield Service(running, env, data_dir / "tmp")


@pytest.fixture(scope="module")
def service(
    request: pytest.FixtureRequest,
    database_url: str,
    fake_openai: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    settings = getattr(request.module, "SERVICE_SETTINGS", {})
    with running_service(database_url, fake_openai.base_url, tmp_path_factory, **settings) as s:
        yield s


@pytest.fixture(scope="module")
def tenant(service: Service) -> Tenant:
    return service.new_tenant()


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.running.base_url, timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test: the staging area is empty and the service logged no secret."""
    yield
    if "service" not in request.fixturenames:
        return
    service: Service = request.getfixturevalue("service")
    deadline = time.monotonic() + 5
    while staged_leftovers(service.temp_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staged_leftovers(service.temp_dir) == []
    if "tenant" in request.fixturenames:
        tenant: Tenant = request.getfixturevalue("tenant")
        log = service.running.log()
        assert tenant.api_key not in log
        assert tenant.openai_key not in log
