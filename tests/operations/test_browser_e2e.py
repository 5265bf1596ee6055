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
from dataclasses import dataclass, field
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


@dataclass
class Backend:
    """What the web app's own backend holds: vectorgate's URL and an upload-only API key of
    the organization, for one store. The browser never sees the key."""

    service_url: str = ""
    org_id: str = ""
    api_key: str = ""
    vector_store_id: str = ""
    minted: list[dict[str, Any]] = field(default_factory=list)

    def mint(self) -> dict[str, Any]:
        """The backend's one vectorgate call: a short-lived token for the browser."""
        response = httpx.post(
            f"{self.service_url}/v1/organizations/{self.org_id}/upload-tokens",
            json={"vector_store_id": self.vector_store_id, "expires_in_s": 300, "max_files": 4},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        response.raise_for_status()
        token: dict[str, Any] = response.json()
        self.minted.append(token)
        return {
            "token": token["token"],
            "organization_id": self.org_id,
            "vector_store_id": token["vector_store_id"],
            "credential_id": token["credential_id"],
        }


BACKEND = Backend()


class _WebApp(BaseHTTPRequestHandler):
    """A web app: a blank page, and (its backend) `POST /token` minting an upload token."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._send(b"<!doctype html><title>a web app</title>", "text/html")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/token" or not BACKEND.api_key:
            self.send_error(404)
            return
        self._send(json.dumps(BACKEND.mint()).encode(), "application/json")

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def web_apps() -> Iterator[None]:
    """Web apps at ALLOWED_ORIGIN and FOREIGN_ORIGIN, to run `fetch` from."""
    servers = [ThreadingHTTPServer(("127.0.0.1", p), _WebApp) for p in (ALLOWED_PORT, FOREIGN_PORT)]
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


# Runs in the web app's page: get a token from its own backend, upload three files on the
# Flowise route and one on the base64 route with it, read that file's status until it
# is final, and try a route a token may not use.
TOKEN_FLOW = """async ([service]) => {
    const minted = await (await fetch("/token", {method: "POST"})).json();
    const auth = {"Authorization": `Bearer ${minted.token}`};
    const store = minted.vector_store_id;
    const org = `${service}/v1/organizations/${minted.organization_id}`;

    const form = new FormData();
    form.append("files", new File(["first note\\n"], "one.txt", {type: "text/plain"}));
    form.append("files", new File(["# two\\n"], "two.md", {type: "text/markdown"}));
    form.append("files", new File(["a,b\\n1,2\\n"], "three.csv", {type: "text/csv"}));
    const flowise = await fetch(
        `${service}/api/v1/openai-assistants-vector-store/${store}?credential=${minted.credential_id}`,
        {method: "POST", body: form, headers: auth},
    );

    const base64 = await fetch(`${org}/vector-stores/${store}/files/upload-base64`, {
        method: "POST",
        headers: {...auth, "Content-Type": "application/json"},
        body: JSON.stringify({files: [
            {filename: "four.txt", content: btoa("fourth, as base64\\n"), mime_type: "text/plain"},
        ]}),
    });
    const uploaded = await base64.json();

    let status = null;
    for (let i = 0; i < 200; i++) {
        const response = await fetch(
            `${org}/vector-stores/${store}/files/${uploaded.files[0].id}/status`, {headers: auth},
        );
        status = {code: response.status, body: await response.json()};
        if (!["pending", "processing"].includes(status.body.processing_status)) break;
        await new Promise(resolve => setTimeout(resolve, 50));
    }

    const listing = await fetch(`${org}/vector-stores`, {headers: auth});
    return {
        flowise: {code: flowise.status, body: await flowise.json()},
        base64: {code: base64.status, body: uploaded},
        status,
        listing: {code: listing.status, body: await listing.json()},
    };
}"""


def backend_for_a_new_store(
    service: Service, tenant: Tenant, client: httpx.Client, fake: FakeOpenAI
) -> str:
    """A registered store, and the web app's backend set up with an `upload` key for it."""
    store = register_store(client, tenant, fake)
    key = client.post(
        f"/v1/organizations/{tenant.org_id}/api-keys",
        json={"name": "web app backend", "scopes": ["upload"], "vector_store_ids": [store]},
        headers=tenant.headers,
    )
    assert key.status_code == 201, key.text
    BACKEND.service_url, BACKEND.org_id = service.running.base_url, tenant.org_id
    BACKEND.api_key, BACKEND.vector_store_id = key.json()["key"], store
    BACKEND.minted.clear()
    return store


def test_a_web_app_uploads_with_a_token_from_its_backend_and_reads_the_status(
    page: Page,
    service: Service,
    tenant: Tenant,
    client: httpx.Client,
    fake: FakeOpenAI,
    web_apps: None,
    problems: list[str],
) -> None:
    store = backend_for_a_new_store(service, tenant, client, fake)
    try:
        page.goto(ALLOWED_ORIGIN)
        result = page.evaluate(TOKEN_FLOW, [service.running.base_url])
    finally:
        BACKEND.api_key = ""

    assert result["flowise"]["code"] == 200, result
    flowise_files = result["flowise"]["body"]
    # (the CSV goes upstream as the text it is converted to, and is answered so)
    assert [f["filename"] for f in flowise_files] == ["one.txt", "two.md", "three.csv.txt"]
    assert result["base64"]["code"] == 200, result
    assert result["status"]["code"] == 200, result
    assert result["status"]["body"]["processing_status"] == "completed", result
    # A token uploads and reads its files' status, nothing else.
    assert result["listing"]["code"] == 403, result
    assert result["listing"]["body"]["error"]["code"] == "FORBIDDEN"
    assert problems == [  # the browser's console reports that 403, and nothing else
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ]
    problems.clear()
    # Everything went to the token's store, with the bytes the page sent (the CSV as the
    # text it is converted to).
    uploaded = {f.filename: fake.file_content(f.id) for f in fake.files_for(tenant.openai_key)}
    assert len(uploaded) == 4
    assert uploaded["one.txt"] == b"first note\n"
    assert uploaded["two.md"] == b"# two\n"
    assert uploaded["four.txt"] == b"fourth, as base64\n"
    assert sorted(fake.vector_store_files(store)) == sorted(
        f.id for f in fake.files_for(tenant.openai_key)
    )
    # The page got a token from its backend, and the backend's key never left it.
    assert len(BACKEND.minted) == 1
    assert BACKEND.minted[0]["token"].startswith("vgu_")


# Runs in the web app's page: a token from its backend, two files on the base64 route, then
# an EventSource on their status stream (the token in `access_token`: an EventSource cannot
# send headers) that writes each file's status into the page as it comes, until `done`.
EVENTS = "/files/events?"
LIVE_STATUS = """async ([service]) => {
    const minted = await (await fetch("/token", {method: "POST"})).json();
    const store = minted.vector_store_id;
    const org = `${service}/v1/organizations/${minted.organization_id}`;
    const uploaded = await (await fetch(`${org}/vector-stores/${store}/files/upload-base64`, {
        method: "POST",
        headers: {"Authorization": `Bearer ${minted.token}`, "Content-Type": "application/json"},
        body: JSON.stringify({files: [
            {filename: "live-1.txt", content: btoa("first\\n"), mime_type: "text/plain"},
            {filename: "live-2.txt", content: btoa("second\\n"), mime_type: "text/plain"},
        ]}),
    })).json();

    const list = document.createElement("ul");
    document.body.append(list);
    window.seen = [];
    const ids = uploaded.files.map(file => file.id);
    const query = new URLSearchParams({ids: ids.join(","), access_token: minted.token});
    const source = new EventSource(`${org}/vector-stores/${store}/files/events?${query}`);
    source.addEventListener("file.status", message => {
        const status = JSON.parse(message.data);
        window.seen.push([status.filename, status.processing_status]);
        let item = document.getElementById(status.id);
        if (item === null) {
            item = document.createElement("li");
            item.id = status.id;
            list.append(item);
        }
        item.textContent = `${status.filename}: ${status.processing_status}`;
    });
    source.addEventListener("done", () => {
        source.close();  // or the EventSource would reconnect
        document.body.dataset.stream = "done";
    });
    source.onerror = () => { document.body.dataset.stream = "error"; };
    return ids;
}"""


def test_a_web_app_shows_its_files_status_live_from_the_stream_with_its_token(
    page: Page,
    service: Service,
    tenant: Tenant,
    client: httpx.Client,
    fake: FakeOpenAI,
    web_apps: None,
    problems: list[str],
) -> None:
    backend_for_a_new_store(service, tenant, client, fake)
    streams: list[str] = []  # how the stream's request ended, as the browser tells it
    page.on("requestfinished", lambda r: streams.append("finished") if EVENTS in r.url else None)
    page.on("requestfailed", lambda r: streams.append(str(r.failure)) if EVENTS in r.url else None)
    fake.batch_mode = "stuck"  # OpenAI works on them until the page has shown it
    try:
        page.goto(ALLOWED_ORIGIN)
        ids = page.evaluate(LIVE_STATUS, [service.running.base_url])
        for record_id in ids:
            page.wait_for_function(
                "id => document.getElementById(id)?.textContent.endsWith('processing')",
                arg=record_id,
            )
        assert page.evaluate("document.body.dataset.stream") is None  # still open
        fake.batch_mode = "complete"
        page.wait_for_function("document.body.dataset.stream !== undefined")
        assert page.evaluate("document.body.dataset.stream") == "done"
        shown = page.locator("li").all_text_contents()
        seen = page.evaluate("window.seen")
        while not streams:
            page.wait_for_timeout(50)
    finally:
        BACKEND.api_key = ""

    # The service ends the stream after `done` while the page closes its EventSource on
    # it (as it must, or it would reconnect): whichever comes first, the browser reports
    # the request finished, or aborted by the page. Either is the stream ending well.
    assert streams in (["finished"], ["net::ERR_ABORTED"]), streams
    problems[:] = [p for p in problems if not (EVENTS in p and p.endswith("net::ERR_ABORTED"))]

    assert shown == ["live-1.txt: completed", "live-2.txt: completed"]
    for name in ("live-1.txt", "live-2.txt"):
        statuses = [status for filename, status in seen if filename == name]
        assert statuses[-1] == "completed"
        assert "processing" in statuses
    # The token reached the service in the URL only; it stays out of the log.
    assert BACKEND.minted[0]["token"] not in service.running.log()
