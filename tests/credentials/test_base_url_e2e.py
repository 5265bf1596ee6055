"""A credential with its own base URL (SPEC 12): every call for its stores goes there.

The second upstream is a fake answering in Llama Stack's dialect, so this also runs the
base64 upload and the status poller over an OpenAI-compatible API that is not OpenAI.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e import Service, Tenant, assert_error, running_service
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def llama_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def llama(llama_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    llama_server.reset()
    llama_server.dialect = "llama_stack"
    yield llama_server
    llama_server.reset()


@pytest.fixture(scope="module")
def service(
    database_url: str,
    fake_openai: FakeOpenAI,
    llama_server: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    allowed = llama_server.base_url
    with running_service(
        database_url, fake_openai.base_url, tmp_path_factory, upstream_allowed_base_urls=allowed
    ) as running:
        yield running


def add_llama_credential(client: httpx.Client, tenant: Tenant, llama: FakeOpenAI) -> str:
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/credentials",
        json={"name": "llama", "api_key": tenant.openai_key, "base_url": llama.base_url + "/"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["base_url"] == llama.base_url
    credential_id: str = response.json()["id"]
    return credential_id


def wait_final(client: httpx.Client, path: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        status: dict[str, Any] = client.get(path, headers=headers).json()
        if status["processing_status"] in ("completed", "failed"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_uploads_and_status_of_a_credential_with_a_base_url_go_to_that_upstream(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, llama: FakeOpenAI
) -> None:
    credential = add_llama_credential(client, tenant, llama)
    store = llama.create_vector_store(tenant.openai_key)
    org = f"/v1/organizations/{tenant.org_id}"
    registered = client.post(
        f"{org}/vector-stores",
        json={"credential_id": credential, "vector_store_id": store},
        headers=tenant.headers,
    )
    assert registered.status_code == 201, registered.text
    content = base64.b64encode(b"# Notes\nfrom llama\n").decode()
    response = client.post(
        f"{org}/vector-stores/{store}/files/upload-base64",
        json={"files": [{"filename": "n.md", "content": content, "mime_type": "text/markdown"}]},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    record = response.json()["files"][0]
    status = wait_final(
        client, f"{org}/vector-stores/{store}/files/{record['id']}/status", tenant.headers
    )
    assert status["processing_status"] == "completed", status
    assert [f.filename for f in llama.files_for(tenant.openai_key)] == ["n.md"]
    assert llama.vector_store_files(store) == [record["file_id"]]
    assert fake.files_for(tenant.openai_key) == []  # nothing went to the default upstream


def test_a_base_url_outside_the_allowed_list_is_a_400(
    client: httpx.Client, tenant: Tenant, llama: FakeOpenAI
) -> None:
    for base_url in ("https://api.example.com/v1", llama.base_url + "x", "http://[::1]:1/v1"):
        response = client.post(
            f"/v1/organizations/{tenant.org_id}/credentials",
            json={"name": "elsewhere", "api_key": tenant.openai_key, "base_url": base_url},
            headers=tenant.headers,
        )
        assert_error(response, 400, "INVALID_REQUEST")
