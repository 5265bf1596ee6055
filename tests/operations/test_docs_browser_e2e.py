"""/docs in a real browser: Swagger UI's "Try it out" sends uploads that work.

Headless Chromium, driven by Playwright, loads the service's own /docs page, authorizes
with an API key, fills the form and presses Execute; the fake OpenAI then holds exactly the
files the browser picked. Needs a Chromium binary: Debian's `chromium` package, or any
Chromium named by VECTORGATE_TEST_CHROMIUM. Without one the tests skip, unless
VECTORGATE_TEST_REQUIRE_BROWSER=1 (set by CI) makes that a failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from pydantic import TypeAdapter

from tests.e2e import Service, Tenant
from vectorgate.flowise.schemas import OpenAIFile
from vectorgate.testing import samples
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

FLOWISE_OPERATION = "flowise-upload_to_vector_store_api_v1_openai_assistants_vector_store__id__post"
BASE64_OPERATION = (
    "vector_stores-upload_base64_v1_organizations__org_id__vector_stores"
    "__vector_store_id__files_upload_base64_post"
)
TIMEOUT_MS = 30_000


def _chromium() -> str | None:
    configured = os.environ.get("VECTORGATE_TEST_CHROMIUM")
    if configured:
        return configured
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """One Chromium per test: Playwright's sync API holds an event loop in this thread while
    it runs, which must not overlap the set-up of other fixtures (a PostgreSQL database)."""
    executable = _chromium()
    if executable is None:
        reason = "no Chromium: install Debian's `chromium` or set VECTORGATE_TEST_CHROMIUM"
        if os.environ.get("VECTORGATE_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab; any console error or failed request fails the test."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
    yield page
    context.close()
    assert problems == []


def open_docs(page: Page, service: Service, *, api_key: str, scheme: str) -> None:
    """Load /docs and authorize with `api_key` through one of its security schemes."""
    page.goto(f"{service.running.base_url}/docs")
    page.click("button.authorize")
    field = page.locator(f".auth-container:has-text('{scheme}') input[type=text]")
    field.fill(api_key)
    page.locator(f".auth-container:has-text('{scheme}') button.authorize").click()
    page.click("button.btn-done")


def try_it_out(page: Page, operation: str, **parameters: str) -> Locator:
    """Expand an operation, switch it to "Try it out" and fill its parameters."""
    block = page.locator(f"#operations-{operation}")
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    for name, value in parameters.items():
        block.locator(f'tr[data-param-name="{name}"] input').fill(value)
    return block


def execute(block: Locator) -> tuple[int, Any]:
    """Press Execute and read the status and JSON body the page shows."""
    block.locator("button.execute").click()
    row = block.locator(".live-responses-table tr.response")
    status = int(row.locator(".response-col_status").inner_text(timeout=TIMEOUT_MS))
    body = row.locator(".response-col_description pre.microlight").first.inner_text()
    return status, json.loads(body)


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


def test_docs_page_sends_a_multipart_upload_with_several_files(
    page: Page, service: Service, tenant: Tenant, fake: FakeOpenAI, tmp_path: Path
) -> None:
    vector_store = fake.create_vector_store(tenant.openai_key)
    picked = {
        "notes.txt": b"plain text from a browser\n",
        "résumé 日本語.md": "# résumé\n".encode(),
        "report.pdf": samples.pdf_bytes(4096),
    }
    for name, content in picked.items():
        (tmp_path / name).write_bytes(content)

    open_docs(page, service, api_key=tenant.api_key, scheme="APIKeyHeader")
    block = try_it_out(page, FLOWISE_OPERATION, id=vector_store, credential=tenant.credential_id)
    form = block.locator(".opblock-section-request-body")
    for _ in range(len(picked) - 1):
        form.locator("button.json-schema-form-item-add").click()
    inputs = form.locator("input[type=file]")
    for index, name in enumerate(picked):
        inputs.nth(index).set_input_files(tmp_path / name)
    status, body = execute(block)

    assert status == 200, body
    answered = TypeAdapter(list[OpenAIFile]).validate_python(body)
    assert [f.filename for f in answered] == list(picked)
    assert [fake.file_content(f.id) for f in answered] == list(picked.values())
    assert [list(batch.file_ids) for batch in fake.batches] == [[f.id for f in answered]]
    assert sorted(fake.vector_store_files(vector_store)) == sorted(f.id for f in answered)


def test_docs_page_sends_a_base64_upload(
    page: Page, service: Service, tenant: Tenant, fake: FakeOpenAI, client: httpx.Client
) -> None:
    vector_store = fake.create_vector_store(tenant.openai_key)
    registered = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores",
        json={"credential_id": tenant.credential_id, "vector_store_id": vector_store},
        headers=tenant.headers,
    )
    assert registered.status_code == 201, registered.text
    files = [
        {"filename": "a.txt", "content": b64(b"first"), "mime_type": "text/plain"},
        {"filename": "b.md", "content": b64(b"# second"), "mime_type": "text/markdown"},
    ]

    open_docs(page, service, api_key=tenant.api_key, scheme="HTTPBearer")
    block = try_it_out(page, BASE64_OPERATION, org_id=tenant.org_id, vector_store_id=vector_store)
    block.locator("textarea.body-param__text").fill(json.dumps({"files": files}))
    status, body = execute(block)

    assert status == 200, body
    assert [f["filename"] for f in body["files"]] == ["a.txt", "b.md"]
    assert {f["processing_status"] for f in body["files"]} == {"pending"}
    contents = [fake.file_content(f.id) for f in fake.files_for(tenant.openai_key)]
    assert sorted(contents) == [b"# second", b"first"]
