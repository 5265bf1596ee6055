"""VECTORGATE_CONVERT_TO_TEXT end to end: DOCX, PPTX and JSON reach the upstream as text.

For upstreams that cannot parse them (SPEC 12), the service converts before upload and
the upstream receives `name.docx.md`, `name.pptx.md` and `name.json.txt`; vectorgate's
records keep the client's names. Without the setting a DOCX goes up as it came (see
tests/flowise/test_upload_e2e.py::test_three_files_come_back_in_order_with_names_intact).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.e2e import Service, assert_error, register_store
from tests.support import Part, content_type, multipart_body
from tests.uploads.test_convert import (
    DOCTYPE,
    DOCUMENT_BODY,
    DOCUMENT_MARKDOWN,
    document,
    paragraph,
    presentation,
    slide_paragraph,
    text,
)
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import Tenant
from vectorgate.uploads.filetypes import DOCX, JSON, PPTX

pytestmark = pytest.mark.e2e

SERVICE_SETTINGS = {"convert_to_text": "docx,pptx,json"}

JSON_CONTENT = '{"city": "Zürich", "tags": ["a", "b"]}\n'.encode()


def flowise_upload(
    client: httpx.Client, tenant: Tenant, store: str, parts: list[Part]
) -> httpx.Response:
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{store}",
        params={"credential": tenant.credential_id},
        content=multipart_body(parts),
        headers={"X-API-Key": tenant.api_key, "Content-Type": content_type()},
    )


def base64_upload(
    client: httpx.Client, tenant: Tenant, store: str, filename: str, content: bytes, mime: str
) -> httpx.Response:
    return client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={
            "files": [
                {
                    "filename": filename,
                    "content": base64.b64encode(content).decode(),
                    "mime_type": mime,
                }
            ]
        },
        headers=tenant.headers,
    )


def record(client: httpx.Client, tenant: Tenant, store: str, file_id: str) -> dict[str, Any]:
    response = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{file_id}/status",
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_docx_and_json_through_the_flowise_route_arrive_as_text(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    parts = [
        Part("report.docx", document(DOCUMENT_BODY), DOCX.mime_type),
        Part("data.json", JSON_CONTENT, None),  # no declared type: inferred
    ]
    response = flowise_upload(client, tenant, store, parts)

    assert response.status_code == 200, response.text
    answered = response.json()
    # The Flowise route answers with OpenAI's file objects: the upstream's names.
    assert [item["filename"] for item in answered] == ["report.docx.md", "data.json.txt"]
    upstream = {f.filename: f for f in fake.files_for(tenant.openai_key)}
    assert set(upstream) == {"report.docx.md", "data.json.txt"}
    assert fake.file_content(upstream["report.docx.md"].id) == DOCUMENT_MARKDOWN.encode()
    assert fake.file_content(upstream["data.json.txt"].id) == JSON_CONTENT


def test_pptx_through_the_base64_route_arrives_as_markdown(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    deck = presentation(
        {"slide1.xml": slide_paragraph("Second"), "slide2.xml": slide_paragraph("First")},
        order=["slide2.xml", "slide1.xml"],
    )
    response = base64_upload(client, tenant, store, "deck.pptx", deck, PPTX.mime_type)

    assert response.status_code == 200, response.text
    [answered] = response.json()["files"]
    assert answered["filename"] == "deck.pptx"
    assert answered["mime_type"] == PPTX.mime_type
    [upstream] = fake.files_for(tenant.openai_key)
    assert upstream.filename == "deck.pptx.md"
    assert fake.file_content(upstream.id) == b"## Slide 1\n\nFirst\n\n## Slide 2\n\nSecond\n"
    assert record(client, tenant, store, answered["id"])["filename"] == "deck.pptx"


def test_docx_with_a_doctype_is_415_and_nothing_stays_upstream(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    hostile = document(paragraph(text("&e;")), prolog=DOCTYPE)
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={
            # The hostile file first: the next one is read only once it is converted, so
            # nothing of the request has started uploading when it is refused.
            "files": [
                {
                    "filename": "entity.docx",
                    "content": base64.b64encode(hostile).decode(),
                    "mime_type": DOCX.mime_type,
                },
                {
                    "filename": "fine.json",
                    "content": base64.b64encode(JSON_CONTENT).decode(),
                    "mime_type": JSON.mime_type,
                },
            ]
        },
        headers=tenant.headers,
    )
    body = assert_error(response, 415, "UNSUPPORTED_FILE_TYPE")
    assert body["message"] == "entity.docx: the document cannot be read (DocumentError)"
    assert fake.files_for(tenant.openai_key) == []
