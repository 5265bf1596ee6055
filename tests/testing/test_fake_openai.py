"""The fake OpenAI, driven only through the real `openai` SDK over HTTP.

Every endpoint and fault the service relies on is exercised here so that the SDK's own
request building and response parsing prove the fake is wire-compatible.
"""

from __future__ import annotations

import hashlib
import logging
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from openai.types import (
    FileDeleted,
    FileObject,
    StaticFileChunkingStrategyObjectParam,
    VectorStore,
    VectorStoreDeleted,
)
from openai.types.vector_stores import (
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
)

from vectorgate.testing.fake_openai import BatchSnapshot, FakeOpenAI, StoredFile, key_hint

Json = dict[str, Any]
KEY_A = "sk-test-owner-a-0001"
KEY_B = "sk-test-owner-b-0002"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset()
    return server


def sdk(fake: FakeOpenAI, key: str = KEY_A, **options: Any) -> AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return AsyncOpenAI(api_key=key, base_url=fake.base_url, **options)


@pytest_asyncio.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    async with sdk(fake) as c:
        yield c


async def upload(
    client: AsyncOpenAI, name: str = "notes.txt", data: bytes = b"hello"
) -> FileObject:
    return await client.files.create(file=(name, data, "text/plain"), purpose="assistants")


async def post_multipart(client: AsyncOpenAI, parts: list[tuple[str, bytes]]) -> FileObject:
    """POST /files with a hand-built multipart body (header block, data) per part."""
    boundary = "fake-openai-test-boundary"
    body = b"".join(
        f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n" for headers, data in parts
    )
    body += f"--{boundary}--\r\n".encode()
    # Capitalised so the SDK passes the body through instead of re-encoding it as files.
    content_type = f"Multipart/Form-Data; boundary={boundary}"
    return await client.post(
        "/files",
        cast_to=FileObject,
        content=body,
        options={"headers": {"Content-Type": content_type}},
    )


PURPOSE_PART = ('Content-Disposition: form-data; name="purpose"', b"assistants")


# --------------------------------------------------------------------------- files


@pytest.mark.asyncio
async def test_upload_returns_file_object_and_spools_content(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    data = b"some text\n" * 100
    created = await client.files.create(
        file=("notes.txt", data, "text/plain"), purpose="assistants"
    )

    assert isinstance(created, FileObject)
    assert re.fullmatch(r"file-[0-9a-f]{24}", created.id)
    assert (created.object, created.bytes, created.filename) == ("file", len(data), "notes.txt")
    assert (created.purpose, created.status, created.status_details) == (
        "assistants",
        "processed",
        None,
    )
    assert abs(created.created_at - time.time()) < 60
    [stored] = fake.files_for(KEY_A)
    assert isinstance(stored, StoredFile)
    assert stored.id == created.id
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (stored.content_type, stored.purpose, stored.deleted) == (
        "text/plain",
        "assistants",
        False,
    )
    assert stored.path.parent == fake.spool_dir
    assert stored.path.read_bytes() == data
    assert fake.file_content(created.id) == data
    assert fake.files_for(KEY_B) == []


@pytest.mark.asyncio
async def test_retrieve_list_content_and_delete(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    first = await upload(client, "a.txt", b"first")
    second = await upload(client, "b.txt", b"second")

    assert await client.files.retrieve(first.id) == first
    listed = [f async for f in client.files.list(limit=1, order="asc")]  # pages via `after`
    assert [f.id for f in listed] == [first.id, second.id]
    page = await client.files.list()
    assert (page.data[0].id, page.has_more) == (second.id, False)  # newest first by default
    assert (await client.files.content(second.id)).content == b"second"

    deleted = await client.files.delete(first.id)
    assert deleted == FileDeleted(id=first.id, object="file", deleted=True)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.files.retrieve(first.id)
    assert caught.value.body == {
        "message": f"No such File object: {first.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    assert [f.id async for f in client.files.list()] == [second.id]
    assert [f.id for f in fake.files_for(KEY_A)] == [second.id]
    assert [f.deleted for f in fake.files_for(KEY_A, include_deleted=True)] == [True, False]


@pytest.mark.asyncio
async def test_filenames_are_kept_exactly_raw_utf8_and_rfc5987(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    raw_name = "Résumé – 履歴書 v2;final.pdf"
    raw = await client.files.create(file=(raw_name, b"%PDF-1.4"), purpose="assistants")
    extended = await post_multipart(
        client,
        [
            PURPOSE_PART,
            (
                'Content-Disposition: form-data; name="file"; filename="fallback.txt"; '
                "filename*=UTF-8''%C3%BCbersicht%20%E2%82%AC.txt\r\nContent-Type: text/plain",
                b"euro",
            ),
        ],
    )

    assert raw.filename == raw_name
    assert extended.filename == "übersicht €.txt"
    stored = {f.id: f for f in fake.files_for(KEY_A)}
    assert stored[raw.id].filename == raw_name
    assert stored[raw.id].content_type == "application/pdf"  # guessed by the SDK's httpx2
    assert (stored[extended.id].filename, stored[extended.id].content_type) == (
        "übersicht €.txt",
        "text/plain",
    )


@pytest.mark.asyncio
async def test_invalid_uploads_are_rejected_and_leave_no_spool_files(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as no_file:
        await post_multipart(client, [PURPOSE_PART])
    assert no_file.value.status_code == 400
    assert no_file.value.body == {
        "message": "Missing required parameter: 'file'.",
        "type": "invalid_request_error",
        "param": "file",
        "code": None,
    }
    with pytest.raises(openai.BadRequestError, match="'purpose'"):
        await client.files.create(file=("x.txt", b"x"), purpose="nonsense")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="multipart"):
        await client.post("/files", cast_to=FileObject, body={"purpose": "assistants"})

    assert fake.files_for(include_deleted=True) == []
    assert list(fake.spool_dir.iterdir()) == []


@pytest.mark.asyncio
async def test_50_mib_upload_is_streamed_to_the_spool_dir(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    data = bytes(range(256)) * (50 * MIB // 256)

    created = await client.files.create(file=("big.bin", data), purpose="assistants")

    assert created.bytes == 50 * MIB
    [stored] = fake.files_for(KEY_A)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.path.stat().st_size == 50 * MIB


# --------------------------------------------------------------------------- auth


@pytest.mark.asyncio
async def test_bad_missing_and_rejected_keys_get_openai_401(fake: FakeOpenAI) -> None:
    bad_key = "not-a-real-key-123456789"
    async with sdk(fake, bad_key) as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.files.list()
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "message": f"Incorrect API key provided: {key_hint(bad_key)}.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert bad_key not in str(caught.value.body)

    async with sdk(fake) as client:
        with pytest.raises(openai.AuthenticationError, match="didn't provide an API key"):
            await client.files.list(extra_headers={"Authorization": "Basic abc"})

    fake.rejected_keys.add(KEY_B)
    async with sdk(fake, KEY_B) as rejected:
        with pytest.raises(openai.AuthenticationError) as revoked:
            await rejected.vector_stores.create(name="nope")
    assert KEY_B not in str(revoked.value.body)
    assert fake.requests[-1] == ("POST", "/vector_stores", key_hint(KEY_B))


@pytest.mark.asyncio
async def test_objects_are_invisible_to_other_keys(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    file = await upload(client)
    store = await client.vector_stores.create(name="a")
    batch = await client.vector_stores.file_batches.create(store.id, file_ids=[file.id])

    async with sdk(fake, KEY_B) as other:
        for call in (
            other.files.retrieve(file.id),
            other.files.delete(file.id),
            other.files.content(file.id),
            other.vector_stores.retrieve(store.id),
            other.vector_stores.delete(store.id),
            other.vector_stores.files.retrieve(file.id, vector_store_id=store.id),
            other.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id),
            other.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id),
        ):
            with pytest.raises(openai.NotFoundError):
                await call
        own_store = await other.vector_stores.create(name="b")
        with pytest.raises(openai.NotFoundError, match=f"No such File object: {file.id}"):
            await other.vector_stores.file_batches.create(own_store.id, file_ids=[file.id])
        assert [f async for f in other.files.list()] == []

    assert fake.vector_store_files(own_store.id) == []
    assert [f.id for f in fake.files_for(KEY_A)] == [file.id]
    assert (await client.vector_stores.retrieve(store.id)).id == store.id


# --------------------------------------------------------------------------- vector stores


@pytest.mark.asyncio
async def test_vector_store_create_retrieve_delete(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    store = await client.vector_stores.create(name="docs", metadata={"team": "x"})

    assert isinstance(store, VectorStore)
    assert store.id.startswith("vs_")
    assert store.name == "docs"
    assert (store.status, store.usage_bytes, store.metadata) == ("completed", 0, {"team": "x"})
    assert store.file_counts.model_dump() == {
        "cancelled": 0,
        "completed": 0,
        "failed": 0,
        "in_progress": 0,
        "total": 0,
    }
    assert await client.vector_stores.retrieve(store.id) == store
    direct = fake.create_vector_store(KEY_A, name="made-directly")
    assert (await client.vector_stores.retrieve(direct)).name == "made-directly"

    deleted = await client.vector_stores.delete(store.id)
    assert deleted == VectorStoreDeleted(id=store.id, object="vector_store.deleted", deleted=True)
    with pytest.raises(openai.NotFoundError, match="No such vector store"):
        await client.vector_stores.retrieve(store.id)


@pytest.mark.asyncio
async def test_single_file_attach_polls_lists_and_detaches(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    file = await upload(client, data=b"12345")
    store = await client.vector_stores.create(name="docs")

    attached = await client.vector_stores.files.create(store.id, file_id=file.id)
    assert isinstance(attached, VectorStoreFile)
    assert (attached.id, attached.status, attached.vector_store_id) == (
        file.id,
        "in_progress",
        store.id,
    )
    in_progress = client.vector_stores.files.list(store.id, filter="in_progress")
    assert [f.id async for f in in_progress] == [file.id]

    started = time.monotonic()
    done = await client.vector_stores.files.poll(file.id, vector_store_id=store.id)
    assert time.monotonic() - started < 0.9  # paced by openai-poll-after-ms, not the 1 s default
    assert (done.status, done.last_error, done.usage_bytes) == ("completed", None, 5)
    refreshed = await client.vector_stores.retrieve(store.id)
    assert (refreshed.file_counts.completed, refreshed.file_counts.total) == (1, 1)
    assert refreshed.usage_bytes == 5
    assert [f.id async for f in client.vector_stores.files.list(store.id, filter="completed")] == [
        file.id
    ]
    assert fake.vector_store_files(store.id) == [file.id]

    detached = await client.vector_stores.files.delete(file.id, vector_store_id=store.id)
    assert detached == VectorStoreFileDeleted(
        id=file.id, object="vector_store.file.deleted", deleted=True
    )
    assert fake.vector_store_files(store.id) == []
    with pytest.raises(openai.NotFoundError):
        await client.vector_stores.files.retrieve(file.id, vector_store_id=store.id)
    assert (await client.files.retrieve(file.id)).id == file.id  # detaching keeps the file


# --------------------------------------------------------------------------- batches


@pytest.mark.asyncio
async def test_batch_completes_after_polls_with_poll_after_header(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.polls_to_complete = 3
    fake.poll_after_ms = 20
    files = [await upload(client, f"doc{i}.txt", b"x" * (i + 1)) for i in range(3)]
    store = await client.vector_stores.create(name="docs")

    batch = await client.vector_stores.file_batches.create(store.id, file_ids=[f.id for f in files])
    assert isinstance(batch, VectorStoreFileBatch)
    assert batch.id.startswith("vsfb_")
    assert batch.object == "vector_store.files_batch"
    assert (batch.status, batch.vector_store_id) == ("in_progress", store.id)
    assert (batch.file_counts.in_progress, batch.file_counts.total) == (3, 3)
    listed = client.vector_stores.files.list(store.id, filter="in_progress")
    assert {f.id async for f in listed} == {f.id for f in files}

    statuses = []
    for _ in range(3):
        raw = await client.vector_stores.file_batches.with_raw_response.retrieve(
            batch.id, vector_store_id=store.id
        )
        assert raw.headers["openai-poll-after-ms"] == "20"
        statuses.append(raw.parse().status)
    assert statuses == ["in_progress", "in_progress", "completed"]

    final = await client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert final.file_counts.model_dump() == {
        "cancelled": 0,
        "completed": 3,
        "failed": 0,
        "in_progress": 0,
        "total": 3,
    }
    completed = client.vector_stores.file_batches.list_files(
        batch.id, vector_store_id=store.id, filter="completed", limit=2
    )
    assert {f.id async for f in completed} == {f.id for f in files}
    assert (await client.vector_stores.retrieve(store.id)).usage_bytes == 1 + 2 + 3
    assert fake.batches == [
        BatchSnapshot(
            id=batch.id,
            vector_store_id=store.id,
            file_ids=tuple(f.id for f in files),
            status="completed",
            cancel_requested=False,
        )
    ]


@pytest.mark.asyncio
async def test_batch_create_and_poll_accepts_files_objects(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    file = await upload(client)
    store = await client.vector_stores.create(name="docs")

    batch = await client.vector_stores.file_batches.create_and_poll(
        store.id, files=[{"file_id": file.id}]
    )

    assert (batch.status, batch.file_counts.completed) == ("completed", 1)
    assert fake.vector_store_files(store.id) == [file.id]


@pytest.mark.asyncio
async def test_batch_with_unknown_store_or_file_is_404_and_attaches_nothing(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    file = await upload(client)
    store = await client.vector_stores.create(name="docs")

    with pytest.raises(openai.NotFoundError, match="No such vector store"):
        await client.vector_stores.file_batches.create("vs_missing", file_ids=[file.id])
    with pytest.raises(openai.NotFoundError, match="No such File object: file-missing"):
        await client.vector_stores.file_batches.create(store.id, file_ids=[file.id, "file-missing"])
    assert fake.vector_store_files(store.id) == []
    assert fake.batches == []


STATIC_300: StaticFileChunkingStrategyObjectParam = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 150},
}
AUTO_SHOWN = {
    "type": "static",
    "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
}


async def batch_files_json(client: AsyncOpenAI, vs_id: str, batch_id: str) -> dict[str, Json]:
    """The batch's vector-store file objects as sent, by file id."""
    raw = await client.vector_stores.file_batches.with_raw_response.list_files(
        batch_id, vector_store_id=vs_id
    )
    return {f["id"]: f for f in raw.http_response.json()["data"]}


@pytest.mark.asyncio
async def test_batch_file_ids_with_top_level_options_apply_them_to_every_file(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    files = [await upload(client, f"{i}.txt") for i in range(2)]
    store = await client.vector_stores.create(name="docs")
    attributes: dict[str, str | float | bool] = {
        "team": "blue",
        "year": 2026,
        "score": 0.5,
        "draft": False,
    }

    batch = await client.vector_stores.file_batches.create(
        store.id,
        file_ids=[f.id for f in files],
        attributes=attributes,
        chunking_strategy=STATIC_300,
    )

    shown = await batch_files_json(client, store.id, batch.id)
    for f in files:
        assert shown[f.id]["attributes"] == attributes
        assert shown[f.id]["chunking_strategy"] == STATIC_300
        assert fake.vector_store_file(store.id, f.id)["attributes"] == attributes
    one = await client.vector_stores.files.retrieve(files[0].id, vector_store_id=store.id)
    assert isinstance(one, VectorStoreFile)
    assert one.attributes == attributes
    assert one.chunking_strategy is not None
    assert one.chunking_strategy.model_dump() == STATIC_300
    listed = [f async for f in client.vector_stores.files.list(store.id)]
    assert {f.id: f.attributes for f in listed} == {f.id: attributes for f in files}


@pytest.mark.asyncio
async def test_batch_files_entries_carry_their_own_options_and_ignore_top_level_ones(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    a, b, c = [await upload(client, f"{i}.txt") for i in range(3)]
    store = await client.vector_stores.create(name="docs")

    batch = await client.post(
        f"/vector_stores/{store.id}/file_batches",
        cast_to=VectorStoreFileBatch,
        body={
            "files": [
                {"file_id": a.id, "attributes": {"n": 1}, "chunking_strategy": STATIC_300},
                {"file_id": b.id, "attributes": None, "chunking_strategy": {"type": "auto"}},
                {"file_id": c.id},
            ],
            "attributes": {"top": "level"},
            "chunking_strategy": STATIC_300,
        },
    )

    shown = await batch_files_json(client, store.id, batch.id)
    assert (shown[a.id]["attributes"], shown[a.id]["chunking_strategy"]) == ({"n": 1}, STATIC_300)
    assert (shown[b.id]["attributes"], shown[b.id]["chunking_strategy"]) == ({}, AUTO_SHOWN)
    assert (shown[c.id]["attributes"], shown[c.id]["chunking_strategy"]) == ({}, AUTO_SHOWN)
    assert fake.vector_store_file(store.id, c.id)["chunking_strategy"] == AUTO_SHOWN
    with pytest.raises(KeyError):
        fake.vector_store_file(store.id, "file-missing")


@pytest.mark.asyncio
async def test_options_at_their_limits_are_accepted(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    file = await upload(client)
    store = await client.vector_stores.create(name="docs")
    attributes: dict[str, str | float | bool] = {f"k{i}": i for i in range(15)}
    attributes["😀" * 64] = "é" * 512
    chunking: StaticFileChunkingStrategyObjectParam = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 4096, "chunk_overlap_tokens": 2048},
    }

    await client.vector_stores.file_batches.create(
        store.id,
        files=[{"file_id": file.id, "attributes": attributes, "chunking_strategy": chunking}],
    )

    shown = fake.vector_store_file(store.id, file.id)
    assert (shown["attributes"], shown["chunking_strategy"]) == (attributes, chunking)


def static_strategy(size: object, overlap: object) -> Json:
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


INVALID_OPTIONS: list[tuple[str, Json, str]] = [
    ("17 attributes", {"attributes": {f"k{i}": i for i in range(17)}}, "attributes"),
    ("a 65-character key", {"attributes": {"k" * 65: 1}}, "attributes"),
    ("a 513-character string", {"attributes": {"k": "x" * 513}}, "attributes.k"),
    ("a nested object", {"attributes": {"k": {"a": 1}}}, "attributes.k"),
    ("an array value", {"attributes": {"k": [1]}}, "attributes.k"),
    ("a null value", {"attributes": {"k": None}}, "attributes.k"),
    ("attributes not an object", {"attributes": "k=v"}, "attributes"),
    (
        "size 99",
        {"chunking_strategy": static_strategy(99, 0)},
        "chunking_strategy.static.max_chunk_size_tokens",
    ),
    (
        "size 4097",
        {"chunking_strategy": static_strategy(4097, 0)},
        "chunking_strategy.static.max_chunk_size_tokens",
    ),
    (
        "overlap over half",
        {"chunking_strategy": static_strategy(801, 401)},
        "chunking_strategy.static.chunk_overlap_tokens",
    ),
    (
        "overlap below 0",
        {"chunking_strategy": static_strategy(800, -1)},
        "chunking_strategy.static.chunk_overlap_tokens",
    ),
    (
        "size 800.0",
        {"chunking_strategy": static_strategy(800.0, 400)},
        "chunking_strategy.static.max_chunk_size_tokens",
    ),
    (
        "overlap true",
        {"chunking_strategy": static_strategy(800, True)},
        "chunking_strategy.static.chunk_overlap_tokens",
    ),
    ("static missing", {"chunking_strategy": {"type": "static"}}, "chunking_strategy.static"),
    ("unknown type", {"chunking_strategy": {"type": "other"}}, "chunking_strategy.type"),
    ("auto with more", {"chunking_strategy": {"type": "auto", "x": 1}}, "chunking_strategy.x"),
    (
        "static with more",
        {"chunking_strategy": {**static_strategy(800, 400), "x": 1}},
        "chunking_strategy.x",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "options", "param"), INVALID_OPTIONS)
@pytest.mark.parametrize("shape", ["file_ids", "files"])
async def test_options_beyond_openai_limits_are_its_400_and_attach_nothing(
    fake: FakeOpenAI, client: AsyncOpenAI, case: str, options: Json, param: str, shape: str
) -> None:
    good, bad = await upload(client, "good.txt"), await upload(client, "bad.txt")
    store = await client.vector_stores.create(name="docs")
    if shape == "file_ids":
        body: Json = {"file_ids": [good.id, bad.id], **options}
        expected_param = param
    else:
        body = {"files": [{"file_id": good.id}, {"file_id": bad.id, **options}]}
        expected_param = f"files[1].{param}"

    with pytest.raises(openai.BadRequestError) as refused:
        await client.post(
            f"/vector_stores/{store.id}/file_batches", cast_to=VectorStoreFileBatch, body=body
        )

    error = refused.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, case
    assert error["type"] == "invalid_request_error"
    assert error["param"] == expected_param, (case, error)
    assert fake.vector_store_files(store.id) == []
    assert fake.batches == []


@pytest.mark.asyncio
async def test_file_ids_and_files_together_nan_and_empty_files_are_refused(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    file = await upload(client)
    store = await client.vector_stores.create(name="docs")
    path = f"/vector_stores/{store.id}/file_batches"

    with pytest.raises(openai.BadRequestError, match="mutually exclusive"):
        await client.post(
            path,
            cast_to=VectorStoreFileBatch,
            body={"file_ids": [file.id], "files": [{"file_id": file.id}]},
        )
    with pytest.raises(openai.BadRequestError, match="non-empty"):
        await client.post(path, cast_to=VectorStoreFileBatch, body={"files": []})
    with pytest.raises(openai.BadRequestError, match=r"files\[0\]\.file_id"):
        await client.post(path, cast_to=VectorStoreFileBatch, body={"files": [{"id": file.id}]})
    with pytest.raises(openai.BadRequestError, match="finite"):
        await client.post(
            path,
            cast_to=VectorStoreFileBatch,
            content=f'{{"file_ids": ["{file.id}"], "attributes": {{"k": NaN}}}}'.encode(),
            options={"headers": {"Content-Type": "application/json"}},
        )
    assert fake.vector_store_files(store.id) == []


@pytest.mark.asyncio
async def test_single_attach_takes_and_checks_options(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    a, b = await upload(client, "a.txt"), await upload(client, "b.txt")
    store = await client.vector_stores.create(name="docs")

    attached = await client.vector_stores.files.create(
        vector_store_id=store.id,
        file_id=a.id,
        attributes={"k": "v"},
        chunking_strategy=STATIC_300,
    )
    with pytest.raises(openai.BadRequestError):
        await client.vector_stores.files.create(
            vector_store_id=store.id, file_id=b.id, attributes={"k": "x" * 513}
        )

    assert attached.attributes == {"k": "v"}
    assert fake.vector_store_file(store.id, a.id)["chunking_strategy"] == STATIC_300
    assert fake.vector_store_files(store.id) == [a.id]


@pytest.mark.asyncio
async def test_batch_mode_fail_fails_every_file(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.batch_mode = "fail"
    files = [await upload(client, f"{i}.txt") for i in range(2)]
    store = await client.vector_stores.create(name="docs")

    batch = await client.vector_stores.file_batches.create_and_poll(
        store.id, file_ids=[f.id for f in files]
    )

    assert (batch.status, batch.file_counts.failed, batch.file_counts.total) == ("failed", 2, 2)
    failed = [
        f
        async for f in client.vector_stores.file_batches.list_files(
            batch.id, vector_store_id=store.id, filter="failed"
        )
    ]
    assert len(failed) == 2
    assert all(f.last_error is not None and f.last_error.code == "server_error" for f in failed)


@pytest.mark.asyncio
async def test_batch_mode_cancel_cancels_every_file(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.batch_mode = "cancel"
    file = await upload(client)
    store = await client.vector_stores.create(name="docs")

    batch = await client.vector_stores.file_batches.create_and_poll(store.id, file_ids=[file.id])

    assert (batch.status, batch.file_counts.cancelled) == ("cancelled", 1)
    vs_file = await client.vector_stores.files.retrieve(file.id, vector_store_id=store.id)
    assert vs_file.status == "cancelled"


@pytest.mark.asyncio
async def test_files_named_to_fail_fail_while_the_batch_completes(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.fail_files_named("virus.exe", code="unsupported_file", message="Unsupported type.")
    good = await upload(client, "good.txt")
    bad = await upload(client, "virus.exe")
    store = await client.vector_stores.create(name="docs")

    batch = await client.vector_stores.file_batches.create_and_poll(
        store.id, file_ids=[good.id, bad.id]
    )

    assert batch.status == "completed"
    assert (batch.file_counts.completed, batch.file_counts.failed) == (1, 1)
    [failed] = [
        f
        async for f in client.vector_stores.file_batches.list_files(
            batch.id, vector_store_id=store.id, filter="failed"
        )
    ]
    assert failed.id == bad.id
    assert failed.last_error is not None
    assert failed.last_error.model_dump() == {
        "code": "unsupported_file",
        "message": "Unsupported type.",
    }


@pytest.mark.asyncio
async def test_stuck_batch_stays_in_progress_until_cancelled(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.batch_mode = "stuck"
    file = await upload(client)
    store = await client.vector_stores.create(name="docs")
    batch = await client.vector_stores.file_batches.create(store.id, file_ids=[file.id])

    for _ in range(5):
        again = await client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
        assert (again.status, again.file_counts.in_progress) == ("in_progress", 1)

    cancelling = await client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelling.status == "cancelling"  # type: ignore[comparison-overlap]
    assert fake.batches[0].cancel_requested
    cancelled = await client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id)
    assert (cancelled.status, cancelled.file_counts.cancelled) == ("cancelled", 1)
    vs_file = await client.vector_stores.files.retrieve(file.id, vector_store_id=store.id)
    assert vs_file.status == "cancelled"


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_status_fault_with_retry_after_is_honoured_by_sdk_retry(fake: FakeOpenAI) -> None:
    fake.inject("POST", r"/vector_stores", status=429, retry_after=0.3)
    async with sdk(fake) as no_retry:
        with pytest.raises(openai.RateLimitError) as caught:
            await no_retry.vector_stores.create(name="x")
    assert caught.value.response.headers["retry-after"] == "0.3"
    assert "x-should-retry" not in caught.value.response.headers
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "rate_limit_exceeded"

    fake.inject("POST", r"/vector_stores", status=429, retry_after=0.3)
    async with sdk(fake, max_retries=1) as retrying:
        started = time.monotonic()
        store = await retrying.vector_stores.create(name="x")
        assert time.monotonic() - started >= 0.3
        assert (await retrying.vector_stores.retrieve(store.id)).name == "x"
    assert [r[:2] for r in fake.requests].count(("POST", "/vector_stores")) == 3


@pytest.mark.asyncio
async def test_status_fault_skips_action_custom_body_order_and_times(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    body = {"error": {"message": "custom", "type": "server_error", "param": None, "code": "x"}}
    fake.inject("GET", r"/files", status=503)  # different method: must not be consumed
    fake.inject("POST", r"/files", status=500, body=body, times=2)
    fake.inject("POST", r"/f.*", status=400)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            await upload(client)
        assert caught.value.body == body["error"]
    with pytest.raises(openai.BadRequestError, match="Injected fault"):
        await upload(client)
    assert fake.files_for(include_deleted=True) == []
    assert (await upload(client)).bytes == 5

    with pytest.raises(openai.InternalServerError):
        await client.files.list()
    fake.inject("*", r"/vector_stores/[^/]+", status=502, times=-1)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await client.vector_stores.retrieve("vs_anything")


@pytest.mark.asyncio
async def test_delay_fault_slows_a_request_or_times_out_the_sdk(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.inject("GET", r"/files", delay=0.2)
    started = time.monotonic()
    await client.files.list()
    assert time.monotonic() - started >= 0.2

    fake.inject("GET", r"/files", delay=0.5)
    with pytest.raises(openai.APITimeoutError):
        await client.files.list(timeout=0.1)


@pytest.mark.asyncio
async def test_drop_fault_is_a_connection_error(
    fake: FakeOpenAI, client: AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject("GET", r"/files", drop=True)
    with pytest.raises(openai.APIConnectionError):
        await client.files.list()

    fake.inject("POST", r"/files", drop=True)
    async with sdk(fake, max_retries=1) as retrying:
        created = await upload(retrying)
    assert [f.id for f in fake.files_for()] == [created.id]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.asyncio
async def test_upload_faults_apply_after_the_whole_body_is_read(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.upload_read_delay = 0.05  # per started MiB: a 3 MiB upload takes >= 4 * 0.05 s
    fake.inject("POST", r"/files", status=503)
    data = b"z" * (3 * MIB)

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        await upload(client, "big.txt", data)
    assert time.monotonic() - started >= 0.2
    assert fake.files_for(include_deleted=True) == []

    started = time.monotonic()
    created = await upload(client, "big.txt", data)
    assert time.monotonic() - started >= 0.2
    assert created.bytes == len(data)
    assert list(fake.spool_dir.iterdir()) == [fake.files_for()[0].path]


# --------------------------------------------------------------------------- rate limits

RATE_HEADERS = (
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
DURATION = re.compile(r"\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s")


def assert_rate_limited(
    client: AsyncOpenAI, error: openai.RateLimitError, limit: int, remaining: int
) -> float:
    """Check OpenAI's 429 body and headers; return the wait the SDK reads from them."""
    assert error.status_code == 429
    assert error.response.json()["error"]["param"] is None
    assert isinstance(error.body, dict)
    assert (error.body["type"], error.body["code"]) == ("requests", "rate_limit_exceeded")
    headers = error.response.headers
    assert all(name in headers for name in RATE_HEADERS)
    assert headers["x-ratelimit-limit-requests"] == str(limit)
    assert headers["x-ratelimit-remaining-requests"] == str(remaining)
    assert DURATION.fullmatch(headers["x-ratelimit-reset-requests"])
    assert int(headers["retry-after"]) >= 1
    assert int(headers["retry-after"]) * 1000 >= int(headers["retry-after-ms"]) >= 1
    wait = client._parse_retry_after_header(headers)
    assert wait == int(headers["retry-after-ms"]) / 1000
    return wait


@pytest.mark.asyncio
async def test_rate_limits_are_off_by_default_and_reset_restores_them(fake: FakeOpenAI) -> None:
    assert fake.attach_limit_per_store_per_minute is None
    assert fake.uploads_per_key_per_minute is None
    assert (fake.max_files_per_batch, fake.rate_window_s) == (2000, 60.0)

    fake.attach_limit_per_store_per_minute = 1
    fake.uploads_per_key_per_minute = 1
    fake.max_files_per_batch = 1
    fake.rate_window_s = 5.0
    async with sdk(fake) as client:
        file = await upload(client)
        vs = await client.vector_stores.create(name="kb")
        await client.vector_stores.files.create(vs.id, file_id=file.id)
        with pytest.raises(openai.RateLimitError):
            await upload(client)
    assert (len(fake.upload_times(KEY_A)), len(fake.attach_times(vs.id))) == (1, 1)

    fake.reset()
    assert fake.attach_limit_per_store_per_minute is None
    assert fake.uploads_per_key_per_minute is None
    assert (fake.max_files_per_batch, fake.rate_window_s) == (2000, 60.0)
    assert (fake.upload_times(KEY_A), fake.attach_times(vs.id)) == ([], [])
    async with sdk(fake) as client:
        files = [await upload(client, f"{i}.txt") for i in range(3)]
        vs = await client.vector_stores.create(name="kb")
        await client.vector_stores.file_batches.create(vs.id, file_ids=[f.id for f in files])
    assert len(fake.attach_times(vs.id)) == 1  # one write


@pytest.mark.asyncio
async def test_attach_limit_refuses_the_next_attach_in_the_window_and_admits_after_it(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.attach_limit_per_store_per_minute = 3
    fake.rate_window_s = 1.0
    files = [await upload(client, f"{i}.txt") for i in range(6)]
    vs = await client.vector_stores.create(name="kb")
    other = await client.vector_stores.create(name="other")

    # A batch is one write however many files it holds; a single attach is one.
    await client.vector_stores.file_batches.create(vs.id, file_ids=[files[0].id, files[1].id])
    time.sleep(0.5)
    await client.vector_stores.files.create(vs.id, file_id=files[2].id)
    await client.vector_stores.files.create(vs.id, file_id=files[3].id)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.vector_stores.files.create(vs.id, file_id=files[4].id)

    wait = assert_rate_limited(client, caught.value, limit=3, remaining=0)
    assert 0 < wait <= 0.5  # until the batch's write leaves the window
    assert "Used 3, Requested 1" in caught.value.message
    assert fake.vector_store_files(vs.id) == [f.id for f in files[:4]]
    assert len(fake.attach_times(vs.id)) == 3
    # The limit is per vector store.
    await client.vector_stores.files.create(other.id, file_id=files[4].id)

    time.sleep(wait)
    # The batch's write has left the window, the two single ones have not: one slot.
    await client.vector_stores.files.create(vs.id, file_id=files[4].id)
    assert fake.vector_store_files(vs.id) == [f.id for f in files[:5]]
    with pytest.raises(openai.RateLimitError) as again:
        await client.vector_stores.files.create(vs.id, file_id=files[5].id)
    assert_rate_limited(client, again.value, limit=3, remaining=0)
    assert len(fake.attach_times(vs.id)) == 3


@pytest.mark.asyncio
async def test_attach_limit_429_is_retried_by_the_sdk_after_its_retry_after(
    fake: FakeOpenAI,
) -> None:
    fake.attach_limit_per_store_per_minute = 1
    fake.rate_window_s = 0.5
    async with sdk(fake, max_retries=1) as client:
        first, second = await upload(client, "a.txt"), await upload(client, "b.txt")
        vs = await client.vector_stores.create(name="kb")
        await client.vector_stores.files.create(vs.id, file_id=first.id)
        started = time.monotonic()
        await client.vector_stores.files.create(vs.id, file_id=second.id)
    assert time.monotonic() - started >= 0.3
    assert fake.vector_store_files(vs.id) == [first.id, second.id]
    attaches = [r[:2] for r in fake.requests if r[:2] == ("POST", f"/vector_stores/{vs.id}/files")]
    assert len(attaches) == 3


@pytest.mark.asyncio
async def test_a_refused_batch_attaches_nothing(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.attach_limit_per_store_per_minute = 2
    fake.rate_window_s = 30.0
    files = [await upload(client, f"{i}.txt") for i in range(6)]
    vs = await client.vector_stores.create(name="kb")
    await client.vector_stores.file_batches.create(vs.id, file_ids=[files[0].id, files[1].id])
    await client.vector_stores.file_batches.create(vs.id, file_ids=[files[2].id, files[3].id])

    with pytest.raises(openai.RateLimitError) as caught:
        await client.vector_stores.file_batches.create(vs.id, file_ids=[files[4].id, files[5].id])
    assert_rate_limited(client, caught.value, limit=2, remaining=0)
    assert "Used 2, Requested 1" in caught.value.message
    assert "x-should-retry" not in caught.value.response.headers
    assert fake.vector_store_files(vs.id) == [f.id for f in files[:4]]
    assert len(fake.batches) == 2
    assert len(fake.attach_times(vs.id)) == 2

    # A limit of 0 can never pass: the SDK is told not to retry.
    fake.attach_limit_per_store_per_minute = 0
    async with sdk(fake, max_retries=2) as retrying:
        with pytest.raises(openai.RateLimitError) as never:
            await retrying.vector_stores.file_batches.create(vs.id, file_ids=[files[4].id])
    assert never.value.response.headers["x-should-retry"] == "false"
    batch_posts = [
        r for r in fake.requests if r[:2] == ("POST", f"/vector_stores/{vs.id}/file_batches")
    ]
    assert len(batch_posts) == 4
    assert fake.vector_store_files(vs.id) == [f.id for f in files[:4]]


@pytest.mark.asyncio
async def test_max_files_per_batch_is_openai_array_too_long_400(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    files = [await upload(client, f"{i}.txt") for i in range(4)]
    vs = await client.vector_stores.create(name="kb")
    with pytest.raises(openai.BadRequestError) as default_limit:
        await client.vector_stores.file_batches.create(vs.id, file_ids=["file-x"] * 2001)
    assert default_limit.value.body == {
        "message": "Invalid 'file_ids': array too long. Expected an array with maximum "
        "length 2000, but got an array with length 2001 instead.",
        "type": "invalid_request_error",
        "param": "file_ids",
        "code": "array_above_max_length",
    }

    fake.max_files_per_batch = 3
    with pytest.raises(openai.BadRequestError) as by_ids:
        await client.vector_stores.file_batches.create(vs.id, file_ids=[f.id for f in files])
    with pytest.raises(openai.BadRequestError) as by_files:
        await client.vector_stores.file_batches.create(
            vs.id, files=[{"file_id": f.id} for f in files]
        )
    assert isinstance(by_ids.value.body, dict)
    assert isinstance(by_files.value.body, dict)
    assert "maximum length 3, but got an array with length 4" in by_ids.value.body["message"]
    assert (by_ids.value.body["param"], by_files.value.body["param"]) == ("file_ids", "files")
    assert fake.vector_store_files(vs.id) == []
    await client.vector_stores.file_batches.create(vs.id, file_ids=[f.id for f in files[:3]])
    assert len(fake.vector_store_files(vs.id)) == 3


@pytest.mark.asyncio
async def test_upload_limit_per_key_refuses_stores_nothing_and_admits_after_the_window(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.uploads_per_key_per_minute = 2
    fake.rate_window_s = 1.0
    await upload(client, "a.txt")
    time.sleep(0.5)
    await upload(client, "b.txt")
    with pytest.raises(openai.RateLimitError) as caught:
        await upload(client, "c.txt", b"c" * MIB)

    wait = assert_rate_limited(client, caught.value, limit=2, remaining=0)
    assert 0 < wait <= 0.5  # until a.txt's upload leaves the window
    assert [f.filename for f in fake.files_for(include_deleted=True)] == ["a.txt", "b.txt"]
    assert len(list(fake.spool_dir.iterdir())) == 2
    assert len(fake.upload_times(KEY_A)) == 2
    async with sdk(fake, KEY_B) as other_key:
        await upload(other_key, "b-key.txt")

    time.sleep(wait)
    created = await upload(client, "c.txt")
    assert created.filename == "c.txt"
    assert len(fake.upload_times(KEY_A)) == 2  # b.txt's and c.txt's
    with pytest.raises(openai.RateLimitError):
        await upload(client, "d.txt")


@pytest.mark.asyncio
async def test_rate_limit_headers_for_a_minute_window(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.uploads_per_key_per_minute = 1
    fake.rate_window_s = 120.0
    await upload(client)
    with pytest.raises(openai.RateLimitError) as caught:
        await upload(client)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "120"
    assert 119_000 <= int(headers["retry-after-ms"]) <= 120_000
    assert re.fullmatch(r"1m59(\.\d+)?s|2m0s", headers["x-ratelimit-reset-requests"])
    # One upload in the window: the wait and the reset are the same duration.
    assert f"Please try again in {headers['x-ratelimit-reset-requests']}. " in caught.value.message


@pytest.mark.asyncio
async def test_llama_stack_dialect_rate_limits_have_a_detail_body(
    llama: FakeOpenAI, client: AsyncOpenAI
) -> None:
    llama.attach_limit_per_store_per_minute = 1
    llama.max_files_per_batch = 1  # OpenAI's limit only: Llama Stack has none
    files = [await upload(client, f"{i}.txt") for i in range(3)]
    vs = await client.vector_stores.create(name="kb")
    await client.vector_stores.file_batches.create(vs.id, file_ids=[f.id for f in files[:2]])
    with pytest.raises(openai.RateLimitError) as caught:
        await client.vector_stores.file_batches.create(vs.id, file_ids=[files[2].id])
    assert list(caught.value.response.json()) == ["detail"]
    assert "Rate limit reached" in caught.value.response.json()["detail"]
    assert "Used 1, Requested 1" in caught.value.response.json()["detail"]
    assert "x-should-retry" not in caught.value.response.headers
    assert all(name in caught.value.response.headers for name in RATE_HEADERS)
    assert llama.vector_store_files(vs.id) == [files[0].id, files[1].id]


# --------------------------------------------------------------------------- inspection, lifecycle


@pytest.mark.asyncio
async def test_requests_log_and_reset(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    file = await upload(client)
    await client.files.retrieve(file.id)
    assert fake.requests == [
        ("POST", "/files", "sk-...0001"),
        ("GET", f"/files/{file.id}", "sk-...0001"),
    ]
    fake.batch_mode = "stuck"
    fake.inject("GET", r"/files", status=500, times=-1)

    fake.reset()

    assert (fake.requests, fake.files_for(include_deleted=True), fake.batches) == ([], [], [])
    assert (fake.batch_mode, fake.polls_to_complete, fake.poll_after_ms) == ("complete", 2, 50)
    assert [f async for f in client.files.list()] == []  # the fault is gone too
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(file.id)


def test_context_manager_and_spool_dir_ownership(tmp_path: Path) -> None:
    own = FakeOpenAI()
    with pytest.raises(RuntimeError):
        _ = own.spool_dir  # nothing is made on disk before start()
    with own:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", own.base_url)
        own_dir = own.spool_dir
        assert own_dir.is_dir()
    assert not own_dir.exists()
    with pytest.raises(RuntimeError):
        _ = own.base_url

    given = tmp_path / "spool"
    with FakeOpenAI(spool_dir=given) as fake:
        assert fake.spool_dir == given
    assert given.is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _peak_rss_kib(pid: int) -> int | None:
    """The process's peak resident set size (Linux only)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


@pytest.mark.asyncio
async def test_standalone_module_serves_until_interrupted() -> None:
    port = _free_port()
    command = [sys.executable, "-m", "vectorgate.testing.fake_openai", "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        async with AsyncOpenAI(
            api_key=KEY_A, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        ) as client:
            store = await client.vector_stores.create(name="demo")
            assert store.status == "completed"
            peak_before = _peak_rss_kib(proc.pid)
            created = await client.files.create(file=("big.bin", b"\0" * 50 * MIB), purpose="batch")
            assert created.bytes == 50 * MIB
            peak_after = _peak_rss_kib(proc.pid)
            if peak_before is not None and peak_after is not None:
                # the upload went to disk as it arrived, never whole into the server's memory
                assert peak_after - peak_before < 16 * 1024
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr.decode()


# --------------------------------------------------------------------------- Llama Stack


@pytest.fixture
def llama(fake: FakeOpenAI) -> FakeOpenAI:
    fake.dialect = "llama_stack"
    return fake


@pytest.mark.asyncio
async def test_llama_stack_dialect_answers_not_found_as_400_with_its_message(
    llama: FakeOpenAI, client: AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as store:
        await client.vector_stores.retrieve("vs_missing")
    assert store.value.status_code == 400
    assert store.value.body == {"message": "Vector_store 'vs_missing' not found"}
    vs = await client.vector_stores.create(name="kb")
    with pytest.raises(openai.BadRequestError) as file:
        await client.vector_stores.files.retrieve("file-missing", vector_store_id=vs.id)
    assert file.value.body == {"message": "File 'file-missing' not found"}
    with pytest.raises(openai.BadRequestError) as batch:
        await client.vector_stores.file_batches.retrieve("vsfb_missing", vector_store_id=vs.id)
    assert batch.value.body == {"message": "File_batch 'vsfb_missing' not found"}
    # Another key's store is not found either, in the same words.
    async with sdk(llama, KEY_B) as other:
        with pytest.raises(openai.BadRequestError) as foreign:
            await other.vector_stores.retrieve(vs.id)
    assert foreign.value.body == {"message": f"Vector_store '{vs.id}' not found"}


@pytest.mark.asyncio
async def test_llama_stack_dialect_other_errors_have_a_detail_body(llama: FakeOpenAI) -> None:
    llama.inject("GET", "/vector_stores/.*", status=503)
    async with sdk(llama) as client:
        with pytest.raises(openai.InternalServerError) as fault:
            await client.vector_stores.retrieve("vs_x")
        with pytest.raises(openai.BadRequestError) as invalid:
            await client.post("/files", cast_to=FileObject, body={"purpose": "assistants"})
    assert set(fault.value.response.json()) == {"detail"}
    assert set(invalid.value.response.json()) == {"detail"}
    assert "boundary" in invalid.value.response.json()["detail"]


@pytest.mark.asyncio
async def test_llama_stack_dialect_rewrites_names_and_drops_status_fields(
    llama: FakeOpenAI, client: AsyncOpenAI
) -> None:
    raw = await client.files.with_raw_response.create(
        file=("résumé 日本語.pdf", b"%PDF-1.4 x", "application/pdf"), purpose="assistants"
    )
    body = raw.http_response.json()
    assert body["filename"] == "r_sum_____.pdf"
    assert "status" not in body
    assert "status_details" not in body
    assert llama.files_for(KEY_A)[0].filename == "r_sum_____.pdf"
    listed = (await client.files.with_raw_response.list()).http_response.json()["data"]
    assert all("status" not in f for f in listed)


@pytest.mark.asyncio
async def test_llama_stack_dialect_fails_files_without_last_error_or_poll_hint(
    llama: FakeOpenAI, client: AsyncOpenAI
) -> None:
    llama.fail_files_named("bad.txt")
    vs = await client.vector_stores.create(name="kb")
    good, bad = await upload(client, "good.txt"), await upload(client, "bad.txt")
    batch = await client.vector_stores.file_batches.create(vs.id, file_ids=[good.id, bad.id])
    for _ in range(llama.polls_to_complete):
        raw = await client.vector_stores.file_batches.with_raw_response.retrieve(
            batch.id, vector_store_id=vs.id
        )
        assert "openai-poll-after-ms" not in raw.headers
    files = {
        f.id: f
        async for f in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=vs.id)
    }
    assert (files[good.id].status, files[bad.id].status) == ("completed", "failed")
    assert files[bad.id].last_error is None
    one = await client.vector_stores.files.retrieve(bad.id, vector_store_id=vs.id)
    assert (one.status, one.last_error) == ("failed", None)


@pytest.mark.asyncio
async def test_openai_dialect_is_restored_by_reset(llama: FakeOpenAI) -> None:
    llama.reset()
    assert llama.dialect == "openai"
    async with sdk(llama) as client:
        with pytest.raises(openai.NotFoundError):
            await client.vector_stores.retrieve("vs_missing")


@pytest.mark.asyncio
async def test_llama_stack_dialect_batches_take_file_ids_only(
    llama: FakeOpenAI, client: AsyncOpenAI
) -> None:
    file = await upload(client)
    vs = await client.vector_stores.create(name="kb")

    with pytest.raises(openai.BadRequestError) as refused:
        await client.vector_stores.file_batches.create(
            vs.id, files=[{"file_id": file.id, "attributes": {"k": "v"}}]
        )

    assert refused.value.response.json() == {
        "detail": {
            "errors": [{"loc": ["body", "file_ids"], "msg": "Field required", "type": "missing"}]
        }
    }
    assert llama.vector_store_files(vs.id) == []


@pytest.mark.asyncio
async def test_llama_stack_dialect_sanitizes_attributes_and_checks_chunk_size_only(
    llama: FakeOpenAI, client: AsyncOpenAI
) -> None:
    a, b = await upload(client, "a.txt"), await upload(client, "b.txt")
    vs = await client.vector_stores.create(name="kb")
    attributes: dict[str, str | float | bool] = {
        "n": 3,
        "long": "x" * 600,
        "k" * 65: "dropped",
        "ok": True,
    }
    attributes |= {f"extra{i}": i for i in range(20)}

    with pytest.raises(openai.BadRequestError) as refused:
        await client.vector_stores.file_batches.create(
            vs.id,
            file_ids=[a.id],
            chunking_strategy=static_strategy(99, 0),  # type: ignore[arg-type]
        )
    assert refused.value.response.json()["detail"]["errors"][0]["loc"][-1] == (
        "max_chunk_size_tokens"
    )
    over_half = static_strategy(200, 150)
    batch = await client.vector_stores.file_batches.create(
        vs.id,
        file_ids=[a.id],
        attributes=attributes,
        chunking_strategy=over_half,  # type: ignore[arg-type]
    )
    await client.vector_stores.file_batches.create(vs.id, file_ids=[b.id])

    shown = (await batch_files_json(client, vs.id, batch.id))[a.id]
    assert len(shown["attributes"]) == 16
    assert shown["attributes"]["n"] == 3.0
    assert isinstance(shown["attributes"]["n"], float)
    assert shown["attributes"]["long"] == "x" * 512
    assert "k" * 65 not in shown["attributes"]
    assert shown["chunking_strategy"] == over_half
    assert llama.vector_store_file(vs.id, a.id)["attributes"] == shown["attributes"]
    assert llama.vector_store_file(vs.id, b.id)["chunking_strategy"] == {"type": "auto"}
