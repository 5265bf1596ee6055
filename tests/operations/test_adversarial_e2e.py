"""Hostile transports and a misbehaving upstream, end to end.

Each case must end in its documented status with no temp file left (checked by the
autouse fixture) and nothing of the request left upstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e import Service, Tenant
from tests.support import Part, content_type, multipart_body, open_post, read_reply
from vectorgate.testing import samples
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

SERVICE_SETTINGS = {"upstream_timeout_s": "1", "upstream_max_retries": "2"}


@pytest.fixture
def store(fake: FakeOpenAI, tenant: Tenant) -> str:
    return fake.create_vector_store(tenant.openai_key)


def flowise_url(tenant: Tenant, store: str) -> str:
    return f"/api/v1/openai-assistants-vector-store/{store}?credential={tenant.credential_id}"


def raw_request(
    service: Service,
    tenant: Tenant,
    store: str,
    length: int,
    body: bytes,
    *,
    close_early: bool = False,
) -> bytes:
    with open_post(
        service.running.base_url, flowise_url(tenant, store), tenant.api_key, length
    ) as sock:
        sock.sendall(body)
        return b"" if close_early else read_reply(sock)


def parts() -> list[Part]:
    return [Part("a.pdf", samples.pdf_bytes(30_000), "application/pdf")]


def upload(client: httpx.Client, tenant: Tenant, store: str) -> httpx.Response:
    """The Flowise upload of `parts()`, sent plainly."""
    return client.post(
        flowise_url(tenant, store),
        content=multipart_body(parts()),
        headers={**tenant.headers, "Content-Type": content_type()},
    )


def test_a_chunked_body_is_accepted(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    def chunks() -> Iterator[bytes]:
        body = multipart_body(parts())
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = client.post(
        flowise_url(tenant, store),
        content=chunks(),  # no Content-Length: Transfer-Encoding: chunked
        headers={**tenant.headers, "Content-Type": content_type()},
    )
    assert response.status_code == 200, response.text
    assert len(fake.files_for(tenant.openai_key)) == 1


def test_a_content_length_shorter_than_the_body_is_a_malformed_body(
    service: Service, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    body = multipart_body(parts())
    reply = raw_request(service, tenant, store, len(body) - 50, body)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert fake.files_for(tenant.openai_key) == []


def test_a_content_length_longer_than_the_body_leaves_nothing(
    service: Service, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    body = multipart_body(parts())
    raw_request(service, tenant, store, len(body) + 10_000, body, close_early=True)
    time.sleep(0.5)
    assert fake.files_for(tenant.openai_key) == []


def test_huge_part_headers_are_400(service: Service, tenant: Tenant, store: str) -> None:
    body = (
        f"--vgtestboundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; "
        f'name="files"; filename="a.pdf"\r\nX-Junk: {"j" * 100_000}\r\n\r\n%PDF-'
    ).encode()
    reply = raw_request(service, tenant, store, len(body), body)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_a_slow_upstream_past_its_timeout_is_502_and_compensated(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    fake.inject("POST", "/vector_stores/[^/]+/file_batches", delay=3, times=-1)
    response = upload(client, tenant, store)
    assert response.status_code == 502, response.text
    assert "timed out" in response.json()["message"]
    assert fake.files_for(tenant.openai_key) == []


def test_a_429_storm_on_uploads_is_502_after_the_retries(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    fake.inject("POST", "/files", status=429, retry_after=0.05, times=-1)
    response = upload(client, tenant, store)
    assert response.status_code == 502, response.text
    assert "429" in response.json()["message"]
    uploads = [r for r in fake.requests if r[:2] == ("POST", "/files")]
    assert len(uploads) == 3  # the first try and two retries
    assert fake.files_for(tenant.openai_key) == []


def test_batch_poll_errors_are_502_and_compensated(
    client: httpx.Client, tenant: Tenant, store: str, fake: FakeOpenAI
) -> None:
    fake.inject("GET", "/vector_stores/[^/]+/file_batches/[^/]+", status=500, times=-1)
    response = upload(client, tenant, store)
    assert response.status_code == 502, response.text
    assert "poll the file batch" in response.json()["message"]
    assert fake.files_for(tenant.openai_key) == []
    assert fake.vector_store_files(store) == []
