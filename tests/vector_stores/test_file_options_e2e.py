"""Attributes and chunking strategies (SPEC 11.1) on both upload routes, end to end.

The fake OpenAI checks OpenAI's limits with code of its own, so a value vectorgate's
validation let through wrongly would come back as an upstream 400 here.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e import Tenant, assert_error, register_store
from tests.support import BOUNDARY, Part, content_type, multipart_body, part_headers
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

UPSTREAM_DIALECTS = ("openai", "llama_stack")

LEGAL = {"team": "legal", "year": 2024, "public": False}
STATIC = {"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 100}}


@pytest.fixture
def store(client: httpx.Client, fake: FakeOpenAI, tenant: Tenant) -> str:
    return register_store(client, tenant, fake)


def text_entry(name: str, text: str = "some text\n", **options: Any) -> dict[str, Any]:
    return {
        "filename": name,
        "content": base64.b64encode(text.encode()).decode(),
        "mime_type": "text/plain",
        **options,
    }


def upload_base64(
    client: httpx.Client, tenant: Tenant, store: str, body: dict[str, Any]
) -> httpx.Response:
    return client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json=body,
        headers=tenant.headers,
    )


def upload_multipart(
    client: httpx.Client,
    tenant: Tenant,
    store: str,
    parts: list[Part] | Iterator[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    content = multipart_body(parts) if isinstance(parts, list) else parts
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{store}",
        params={"credential": tenant.credential_id},
        content=content,
        headers={"X-API-Key": tenant.api_key, "Content-Type": content_type(), **(headers or {})},
    )


def option_part(name: str, value: object) -> Part:
    return Part(None, json.dumps(value).encode(), field=name)


def upstream_options(fake: FakeOpenAI, store: str) -> list[dict[str, Any]]:
    """(attributes, chunking_strategy) of each file of the store upstream, oldest first."""
    return [fake.vector_store_file(store, file_id) for file_id in fake.vector_store_files(store)]


def record_of(client: httpx.Client, tenant: Tenant, store: str, file_id: str) -> dict[str, Any]:
    listing = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files", headers=tenant.headers
    )
    assert listing.status_code == 200, listing.text
    return next(r for r in listing.json()["data"] if file_id in (r["id"], r["file_id"]))


def test_base64_top_level_options_go_with_every_file(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    body = {"attributes": LEGAL, "files": [text_entry("a.txt"), text_entry("b.txt")]}
    response = upload_base64(client, tenant, store, body)
    assert response.status_code == 200, response.text
    files = response.json()["files"]
    upstream = {f["id"]: f for f in upstream_options(fake, store)}
    for file in files:
        assert file["attributes"] == LEGAL
        shown = upstream[file["file_id"]]["attributes"]
        # Llama Stack shows numbers as floats; the values are the same.
        assert shown == LEGAL


def test_base64_file_options_replace_the_top_level_ones_whole(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    own = {"team": "sales"}
    body = {
        "files": [
            text_entry("a.txt"),
            text_entry("b.txt", attributes=own),
            text_entry("c.txt", chunking_strategy={"type": "auto"}),
        ],
        "attributes": LEGAL,  # after `files`: key order must not matter
        "chunking_strategy": STATIC,
    }
    response = upload_base64(client, tenant, store, body)
    if fake.dialect == "llama_stack":
        # Its batches take no per-file entries: a clear upstream error, nothing left.
        assert "file_ids" in assert_error(response, 502, "UPSTREAM_ERROR")["message"]
        assert fake.files_for(tenant.openai_key) == []
        return
    assert response.status_code == 200, response.text
    files = response.json()["files"]
    assert [f["attributes"] for f in files] == [LEGAL, own, LEGAL]

    upstream = {f["id"]: f for f in upstream_options(fake, store)}
    sent = [upstream[f["file_id"]] for f in files]
    assert [f["attributes"] for f in sent] == [LEGAL, own, LEGAL]
    assert sent[0]["chunking_strategy"]["static"] == STATIC["static"]
    assert sent[1]["chunking_strategy"]["static"] == STATIC["static"]
    assert sent[2]["chunking_strategy"]["static"] != STATIC["static"]  # auto: OpenAI's default

    status = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{files[1]['id']}/status",
        headers=tenant.headers,
    ).json()
    assert status["attributes"] == own
    listed = record_of(client, tenant, store, files[0]["id"])
    assert listed["attributes"] == LEGAL
    assert listed["chunking_strategy"] == STATIC


@pytest.mark.parametrize("options_first", [True, False], ids=["options-first", "files-first"])
def test_multipart_options_apply_to_every_file_wherever_they_are(
    client: httpx.Client,
    fake: FakeOpenAI,
    tenant: Tenant,
    store: str,
    options_first: bool,
) -> None:
    files = [Part("a.txt", b"alpha\n", "text/plain"), Part("b.md", b"# beta\n", "text/markdown")]
    options = [option_part("attributes", LEGAL), option_part("chunking_strategy", STATIC)]
    response = upload_multipart(
        client, tenant, store, options + files if options_first else files + options
    )
    assert response.status_code == 200, response.text
    ids = [f["id"] for f in response.json()]
    upstream = {f["id"]: f for f in upstream_options(fake, store)}
    for file_id in ids:
        assert upstream[file_id]["attributes"] == LEGAL
        assert upstream[file_id]["chunking_strategy"]["static"] == STATIC["static"]
        assert record_of(client, tenant, store, file_id)["attributes"] == LEGAL


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"attributes": {f"k{i}": i for i in range(17)}}, "16"),
        ({"attributes": {"k" * 65: "v"}}, "64"),
        ({"attributes": {"k": "v" * 513}}, "512"),
        ({"attributes": {"k": {"nested": 1}}}, "attributes"),
        ({"attributes": ["team", "legal"]}, "attributes"),
        ({"chunking_strategy": {"type": "static"}}, "chunking_strategy"),
        (
            {
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0},
                }
            },
            "max_chunk_size_tokens",
        ),
        (
            {
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 201},
                }
            },
            "chunk_overlap_tokens",
        ),
        ({"chunking_strategy": {"type": "other"}}, "chunking_strategy"),
    ],
)
def test_invalid_options_are_refused_before_anything_is_uploaded(
    client: httpx.Client,
    fake: FakeOpenAI,
    tenant: Tenant,
    store: str,
    options: dict[str, Any],
    fragment: str,
) -> None:
    on_file = upload_base64(client, tenant, store, {"files": [text_entry("a.txt", **options)]})
    assert fragment in assert_error(on_file, 400, "INVALID_REQUEST")["message"]
    top = upload_base64(client, tenant, store, {"files": [text_entry("a.txt")], **options})
    assert fragment in assert_error(top, 400, "INVALID_REQUEST")["message"]
    [(name, value)] = options.items()
    parts = [option_part(name, value), Part("a.txt", b"alpha\n", "text/plain")]
    flowise = upload_multipart(client, tenant, store, parts)
    assert flowise.status_code == 400, flowise.text
    assert fragment in flowise.json()["message"]
    assert fake.files_for(tenant.openai_key) == []


def test_an_options_part_that_is_not_json_is_refused(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    parts = [Part(None, b"team=legal", field="attributes"), Part("a.txt", b"x\n", "text/plain")]
    response = upload_multipart(client, tenant, store, parts)
    assert response.status_code == 400, response.text
    assert "attributes" in response.json()["message"]
    assert fake.files_for(tenant.openai_key) == []


def test_a_bad_options_part_after_uploading_files_deletes_them_again(
    client: httpx.Client, fake: FakeOpenAI, tenant: Tenant, store: str
) -> None:
    """The file part is uploaded while the body still streams; the refusal that follows
    deletes it upstream: nothing of the request stays."""

    def body() -> Iterator[bytes]:
        file = Part("a.txt", b"alpha\n", "text/plain")
        bad = option_part("attributes", {"k": "v" * 600})
        delimiter = b"--" + BOUNDARY.encode() + b"\r\n"
        # The file part ends where the next part's delimiter is seen.
        yield delimiter + part_headers(file) + b"\r\n" + file.content + b"\r\n"
        yield delimiter + part_headers(bad) + b"\r\n"
        deadline = time.monotonic() + 10
        while not fake.files_for(tenant.openai_key) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.files_for(tenant.openai_key), "the file was not uploaded while streaming"
        yield bad.content + b"\r\n--" + BOUNDARY.encode() + b"--\r\n"

    response = upload_multipart(client, tenant, store, body())
    assert response.status_code == 400, response.text
    assert "512" in response.json()["message"]
    assert fake.files_for(tenant.openai_key) == []
    assert fake.vector_store_files(store) == []
