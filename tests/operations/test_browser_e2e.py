"""Browsers as clients: /docs' "Try it out" and a web app on another origin.

Headless Chromium, driven by Playwright, loads the service's own /docs page, authorizes
with an API key, fills the form and presses Execute; the fake OpenAI then holds exactly the
files the browser picked. A page served from another origin uploads with `fetch` through
CORS (preflight included) when that origin is allowed, and the browser blocks it when not.
Needs a Chromium binary: Debian's `chromium` package, or any Chromium named by
VECTORGATE_TEST_CHROMIUM. Without one the tests skip, unless
VECTORGATE_TEST_REQUIRE_BROWSER=1 (set by CI) makes that a failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from pydantic import TypeAdapter

from tests.e2e import Service, Tenant, register_store
from vectorgate.flowise.schemas import OpenAIFile
from vectorgate.testing import samples
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import free_port

pytestmark = pytest.mark.e2e

FLOWISE_OPERATION = "flowise-upload_to_vector_store_api_v1_openai_assistants_vector_store__id__post"
BASE64_OPERATION = (
    "vector_stores-upload_base64_v1_organizations__org_id__vector_stores"
    "__vector_store_id__files_upload_base64_post"
)
TIMEOUT_MS = 30_000

# Two web apps on origins of their own (same host, other ports): only the first is allowed.
ALLOWED_PORT, FOREIGN_PORT = free_port(), free_port()
ALLOWED_ORIGIN = f"http://127.0.0.1:{ALLOWED_PORT}"
FOREIGN_ORIGIN = f"http://127.0.0.1:{FOREIGN_PORT}"
SERVICE_SETTINGS = {"cors_origins": ALLOWED_ORIGIN}


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
def problems() -> list[str]:
    """The page's console errors and failed requests; a test expecting some clears them."""
    return []


@pytest.fixture
def page(browser: Browser, problems: list[str]) -> Iterator[Page]:
    """A fresh browser tab; any console error or failed request fails the test."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
    yield page
    context.close()
    assert problems == []


class _BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = b"<!doctype html><title>a web app</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def web_apps() -> Iterator[None]:
    """Blank pages at ALLOWED_ORIGIN and FOREIGN_ORIGIN, to run `fetch` from."""
    servers = [
        ThreadingHTTPServer(("127.0.0.1", p), _BlankPage) for p in (ALLOWED_PORT, FOREIGN_PORT)
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield
    for server in servers:
        server.shutdown()
        server.server_close()


# Runs in the page: a multipart upload as a web app would send it, with the headers that
# make the browser ask for a preflight first.
FETCH_UPLOAD = """async ([url, apiKey]) => {
    const form = new FormData();
    form.append("files", new File(["from another origin\\n"], "cross.txt", {type: "text/plain"}));
    form.append("files", new File(["# second\\n"], "second.md", {type: "text/markdown"}));
    try {
        const response = await fetch(url, {
            method: "POST",
            body: form,
            headers: {
                "X-API-Key": apiKey, "Idempotency-Key": "browser-1", "X-Request-ID": "web-app-42",
            },
        });
        return {
            status: response.status,
            body: await response.json(),
            requestId: response.headers.get("X-Request-ID"),
        };
    } catch (error) {
        return {blocked: String(error)};
    }
}"""


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
    vector_store = register_store(client, tenant, fake)
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


def upload_from(page: Page, origin: str, service: Service, tenant: Tenant, store: str) -> Any:
    """Open a page at `origin` and run FETCH_UPLOAD there against the Flowise route."""
    page.goto(origin)
    url = (
        f"{service.running.base_url}/api/v1/openai-assistants-vector-store/{store}"
        f"?credential={tenant.credential_id}"
    )
    return page.evaluate(FETCH_UPLOAD, [url, tenant.api_key])


def test_a_web_app_on_an_allowed_origin_uploads_through_cors(
    page: Page, service: Service, tenant: Tenant, fake: FakeOpenAI, web_apps: None
) -> None:
    store = fake.create_vector_store(tenant.openai_key)
    result = upload_from(page, ALLOWED_ORIGIN, service, tenant, store)

    assert result.get("status") == 200, result
    assert [f["filename"] for f in result["body"]] == ["cross.txt", "second.md"]
    assert result["requestId"] == "web-app-42"  # sent, honoured and readable (exposed)
    contents = [fake.file_content(f["id"]) for f in result["body"]]
    assert contents == [b"from another origin\n", b"# second\n"]


def test_the_browser_blocks_an_upload_from_an_origin_not_allowed(
    page: Page,
    service: Service,
    tenant: Tenant,
    fake: FakeOpenAI,
    web_apps: None,
    problems: list[str],
) -> None:
    store = fake.create_vector_store(tenant.openai_key)
    result = upload_from(page, FOREIGN_ORIGIN, service, tenant, store)

    assert "blocked" in result, result
    assert any("CORS policy" in problem for problem in problems), problems
    problems.clear()
    assert fake.files_for(tenant.openai_key) == []  # the preflight failed: no POST was sent
