"""SPEC 11.4 end to end: more text types, and text that is not UTF-8 reaches the upstream
as UTF-8.

A spreadsheet's "CSV (semicolon separated)" export on Windows is Windows-1252: the
service detects it, transcodes it and uploads `name.csv.txt` in UTF-8, through both
routes. Source files go up under their own name and type. A file whose encoding cannot
be told is a 415 that leaves nothing upstream (and, as after every e2e test, no temp
file: see tests/e2e.py's `nothing_left_behind`).
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e import Service, assert_error, register_store
from tests.support import Part
from tests.uploads.attacks import assert_flowise_error
from tests.uploads.test_convert_to_text_e2e import base64_upload, flowise_upload
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.uploads.filetypes import CSV, PYTHON

pytestmark = pytest.mark.e2e

# As Excel writes it: semicolons, CRLF, the euro sign and curly quotes of Windows-1252.
SPREADSHEET_CSV = "Produit;Prix;Note\r\ncafé;3,50 €;naïve\r\nthé;2 €;très “bon”\r\n" * 200

PYTHON_SOURCE = 'def greet() -> str:\n    return "grüß dich"\n'

JAPANESE_SOURCE = (
    "# 吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめ\n"
    "# した所でニャーニャー泣いていた事だけは記憶している。吾輩はここで始めて人間を見た。\n"
    'print("こんにちは")\n'
) * 3


def test_windows_1252_csv_through_the_flowise_route_arrives_as_utf8(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    parts = [Part("prices.csv", SPREADSHEET_CSV.encode("cp1252"), "application/vnd.ms-excel")]
    response = flowise_upload(client, tenant, store, parts)

    assert response.status_code == 200, response.text
    [upstream] = fake.files_for(tenant.openai_key)
    assert upstream.filename == "prices.csv.txt"
    assert fake.file_content(upstream.id) == SPREADSHEET_CSV.encode()


def test_windows_1252_csv_through_the_base64_route_arrives_as_utf8(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    content = SPREADSHEET_CSV.encode("cp1252")
    response = base64_upload(client, tenant, store, "prices.csv", content, CSV.mime_type)

    assert response.status_code == 200, response.text
    [answered] = response.json()["files"]
    assert answered["filename"] == "prices.csv"  # our record keeps the client's name
    [upstream] = fake.files_for(tenant.openai_key)
    assert upstream.filename == "prices.csv.txt"
    assert fake.file_content(upstream.id) == SPREADSHEET_CSV.encode()


def test_source_files_declared_as_octet_stream_go_up_under_their_own_name(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    parts = [
        Part("greet.py", PYTHON_SOURCE.encode(), "application/octet-stream"),
        Part("hello.py", JAPANESE_SOURCE.encode("shift_jis"), None),
    ]
    response = flowise_upload(client, tenant, store, parts)

    assert response.status_code == 200, response.text
    assert [item["filename"] for item in response.json()] == ["greet.py", "hello.py"]
    upstream = {f.filename: f for f in fake.files_for(tenant.openai_key)}
    assert fake.file_content(upstream["greet.py"].id) == PYTHON_SOURCE.encode()
    # Shift_JIS detected and transcoded: the same name, the text in UTF-8.
    assert fake.file_content(upstream["hello.py"].id) == JAPANESE_SOURCE.encode()
    assert {f.content_type for f in upstream.values()} == {PYTHON.mime_type}


def test_text_of_unknown_encoding_is_415_on_multipart_and_nothing_stays_upstream(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    parts = [
        # The good file first: it may reach the upstream before the bad one is refused.
        Part("greet.py", PYTHON_SOURCE.encode(), "text/x-python"),
        Part("broken.csv", b"a;b\r\n3\x81;4\x8d\r\n", "text/csv"),
    ]
    response = flowise_upload(client, tenant, store, parts)

    assert_flowise_error(
        response,
        415,
        "broken.csv: the text is not UTF-8 and its encoding could not be detected with confidence",
    )
    assert fake.files_for(tenant.openai_key) == []


def test_binary_declared_as_text_is_415_on_the_base64_route_and_nothing_stays_upstream(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    tenant = service.new_tenant()
    store = register_store(client, tenant, fake)
    noise = bytes((i * 7919 + 13) % 256 for i in range(100_000))
    response = base64_upload(client, tenant, store, "noise.py", noise, PYTHON.mime_type)

    assert_error(response, 415, "UNSUPPORTED_FILE_TYPE")
    assert fake.files_for(tenant.openai_key) == []
