"""The streaming multipart intake, fed directly: chunk boundaries, limits, malformed bodies."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from tests.support import Part, content_type, multipart_body
from vectorgate.errors import AppError
from vectorgate.testing import samples
from vectorgate.uploads.multipart import MAX_OTHER_PART_BYTES, MAX_OTHER_PARTS, receive_multipart
from vectorgate.uploads.staging import StagedFile

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024


async def chunked(body: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes]:
    start = 0
    for size in sizes:
        yield body[start : start + size]
        start += size
    if start < len(body):
        yield body[start:]


async def receive(
    body: bytes, workdir: Path, *, chunk: int = 65536, max_files: int = 10, ctype: str | None = None
) -> list[StagedFile]:
    sizes = [chunk] * (len(body) // chunk + 1)
    return [
        staged
        async for staged in receive_multipart(
            chunked(body, sizes),
            ctype or content_type(),
            workdir,
            max_files=max_files,
            max_body_bytes=200 * MiB,
        )
    ]


PARTS = [
    Part("a.pdf", samples.pdf_bytes(3000), "application/pdf"),
    Part(None, b"ignored form field", field="note"),
    Part("résumé.txt", "héllo\r\n--not a boundary\r\n".encode() * 20, None),
]


async def test_every_split_point_gives_the_same_files(tmp_path: Path) -> None:
    body = multipart_body(PARTS)
    expected = [PARTS[0].content, PARTS[2].content]
    for split in range(1, len(body), 97):
        workdir = tmp_path / f"s{split}"
        workdir.mkdir()
        staged = [
            s
            async for s in receive_multipart(
                chunked(body, [split, 1, 7]),
                content_type(),
                workdir,
                max_files=10,
                max_body_bytes=MiB,
            )
        ]
        assert [s.path.read_bytes() for s in staged] == expected
        assert [s.filename for s in staged] == ["a.pdf", "résumé.txt"]
        assert [s.kind.name for s in staged] == ["pdf", "text"]


async def test_oversized_file_is_refused_before_the_rest_is_read(tmp_path: Path) -> None:
    body = multipart_body([Part("big.txt", b"x" * (10 * MiB + 1), "text/plain")])
    consumed = 0

    async def counting() -> AsyncIterator[bytes]:
        nonlocal consumed
        for start in range(0, len(body), MiB // 4):
            consumed += MiB // 4
            yield body[start : start + MiB // 4]

    with pytest.raises(AppError) as caught:
        async for _ in receive_multipart(
            counting(), content_type(), tmp_path, max_files=10, max_body_bytes=200 * MiB
        ):
            pass
    assert caught.value.status == 413
    assert consumed <= 10 * MiB + MiB // 2
    # Nothing past the limit was written.
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 10 * MiB


async def test_too_many_files_is_refused_at_the_first_extra_part(tmp_path: Path) -> None:
    body = multipart_body([Part(f"{i}.txt", b"hi", "text/plain") for i in range(3)])
    with pytest.raises(AppError) as caught:
        await receive(body, tmp_path, max_files=2)
    assert (caught.value.status, caught.value.code) == (400, "TOO_MANY_FILES")


async def test_declared_type_is_checked_before_any_byte_is_written(tmp_path: Path) -> None:
    body = multipart_body([Part("a.exe", b"MZ" * 100, "application/x-msdownload")])
    with pytest.raises(AppError) as caught:
        await receive(body, tmp_path)
    assert caught.value.status == 415
    assert list(tmp_path.iterdir()) == []


async def test_body_over_the_request_limit_is_413(tmp_path: Path) -> None:
    body = multipart_body([Part("a.txt", b"x" * 5000, "text/plain")])
    with pytest.raises(AppError) as caught:
        async for _ in receive_multipart(
            chunked(body, [1000] * 10), content_type(), tmp_path, max_files=10, max_body_bytes=2000
        ):
            pass
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", b"{}"),
        ("multipart/form-data", b"--x\r\n"),
        (content_type(), b"garbage without any boundary"),
        (content_type(), multipart_body(PARTS)[:-40]),
        (content_type(), b""),
    ],
)
async def test_malformed_bodies_are_400(tmp_path: Path, ctype: str, body: bytes) -> None:
    with pytest.raises(AppError) as caught:
        await receive(body, tmp_path, ctype=ctype)
    assert caught.value.status == 400


async def test_a_files_part_without_filename_is_400(tmp_path: Path) -> None:
    with pytest.raises(AppError) as caught:
        await receive(multipart_body([Part(None, b"x")]), tmp_path)
    assert caught.value.status == 400
    assert "no filename" in caught.value.message


async def test_content_is_checked_when_the_part_ends(tmp_path: Path) -> None:
    body = multipart_body([Part("fake.pdf", b"hello", "application/pdf")])
    with pytest.raises(AppError) as caught:
        await receive(body, tmp_path)
    assert caught.value.status == 415


async def test_a_few_small_form_fields_beside_the_files_are_accepted(tmp_path: Path) -> None:
    fields = [Part(None, b'{"author": "' + b"a" * 500 + b'"}', field="note")] * 16
    body = multipart_body([*fields, PARTS[0], Part(None, b'{"type": "auto"}', field="chunking")])
    staged = await receive(body, tmp_path)
    assert [s.filename for s in staged] == ["a.pdf"]


async def test_options_parts_are_read_wherever_they_are(tmp_path: Path) -> None:
    attributes = Part(None, b'{"team": "legal"}', field="attributes")
    chunking = Part(None, b'{"type": "auto"}', field="chunking_strategy")
    options: dict[str, object] = {}
    body = multipart_body([attributes, PARTS[0], chunking])
    staged = [
        s
        async for s in receive_multipart(
            chunked(body, [7] * (len(body) // 7 + 1)),
            content_type(),
            tmp_path,
            max_files=10,
            max_body_bytes=MiB,
            options=options,
        )
    ]
    assert options == {"attributes": {"team": "legal"}, "chunking_strategy": {"type": "auto"}}
    assert staged[0].sha256 == hashlib.sha256(PARTS[0].content).hexdigest()


async def test_an_option_given_twice_is_refused(tmp_path: Path) -> None:
    attributes = Part(None, b'{"team": "legal"}', field="attributes")
    body = multipart_body([attributes, PARTS[0], attributes])
    with pytest.raises(AppError) as caught:
        await receive(body, tmp_path)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")
    assert "more than once" in caught.value.message


async def test_too_many_form_fields_are_refused_at_the_first_extra_one(tmp_path: Path) -> None:
    field = Part(None, b"y", field="x")
    body = multipart_body([field] * (MAX_OTHER_PARTS + 1) + [PARTS[0]] + [field] * 100_000)
    consumed = 0

    async def counting() -> AsyncIterator[bytes]:
        nonlocal consumed
        for start in range(0, len(body), 4096):
            consumed += 4096
            yield body[start : start + 4096]

    with pytest.raises(AppError) as caught:
        async for _ in receive_multipart(
            counting(), content_type(), tmp_path, max_files=10, max_body_bytes=200 * MiB
        ):
            pass
    assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")
    assert str(MAX_OTHER_PARTS) in caught.value.message
    assert consumed <= (MAX_OTHER_PARTS + 2) * 100 + 4096


@pytest.mark.parametrize("where", ["value", "headers"])
async def test_form_fields_over_their_byte_budget_are_413(tmp_path: Path, where: str) -> None:
    if where == "value":
        fields = [Part(None, b"v" * (MAX_OTHER_PART_BYTES // 4), field="note")] * 5
    else:  # headers count: without them the fields would be 60 KB under the budget
        fields = [Part(None, b"v", field="n" * 4000)] * 40
        fields.append(Part(None, b"v" * (MAX_OTHER_PART_BYTES - 100_000), field="note"))
    body = multipart_body([*fields, PARTS[0]])
    with pytest.raises(AppError) as caught:
        await receive(body, tmp_path)
    assert (caught.value.status, caught.value.code) == (413, "FILE_TOO_LARGE")
    assert str(MAX_OTHER_PART_BYTES) in caught.value.message
    assert list(tmp_path.iterdir()) == []


async def test_an_empty_option_part_is_no_option(tmp_path: Path) -> None:
    """A form's option field left blank (the /docs page, a browser form) sends nothing."""
    options: dict[str, object] = {}
    body = multipart_body(
        [Part(None, b"", field="attributes"), PARTS[0], Part(None, b" ", field="chunking_strategy")]
    )
    staged = [
        s
        async for s in receive_multipart(
            chunked(body, [len(body)]),
            content_type(),
            tmp_path,
            max_files=10,
            max_body_bytes=MiB,
            options=options,
        )
    ]
    assert [s.filename for s in staged] == ["a.pdf"]
    assert options == {}
