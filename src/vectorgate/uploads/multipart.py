"""Streaming `multipart/form-data` intake for the Flowise route.

The body is fed chunk by chunk (as the server receives it) to python-multipart's
push parser; each `files` part goes straight into its own file in the request's
staging directory. Every limit is checked the moment it can be: the number of files
and the declared type when a part's headers end, the size with every chunk. So an
oversized or unwanted file is refused without reading or writing the rest of it, and
memory stays flat whatever the file size.

Parser callbacks are synchronous; they record what they saw and `receive_multipart`
does the awaiting (content checks in a thread) between chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from vectorgate.errors import AppError, ErrorCode, bad_request, body_too_large
from vectorgate.uploads import staging
from vectorgate.uploads.filenames import clean_filename, parse_content_disposition
from vectorgate.uploads.filetypes import FileKind, check_content, check_size, kind_for
from vectorgate.uploads.options import OPTION_NAMES, parse_option_text
from vectorgate.uploads.staging import FileOptions, Reserve, StagedFile

FILES_FIELD = "files"
# Writes go to the page cache in large pieces: fewer syscalls, no per-chunk thread hop.
_WRITE_BUFFER = 1024 * 1024
_MAX_PART_HEADER_BYTES = 16 * 1024
# Parts other than `files` are read and dropped. Clients send a few small text fields
# (SPEC 11's `attributes` and `chunking_strategy` are a few KiB at most); each part
# costs the parser a dozen Python calls, so without a bound a body of tiny fields is
# pure CPU (100 MB of them took 28 s). Both caps count every such part, headers included.
MAX_OTHER_PARTS = 64
MAX_OTHER_PART_BYTES = 1024 * 1024


def multipart_boundary(content_type: str | None) -> bytes:
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise bad_request("Expected a multipart/form-data body with one or more 'files' parts")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise bad_request("Malformed multipart body: missing or invalid boundary")
    return boundary


class _Part:
    """The part being received: its headers, and for a file part, where its bytes go."""

    def __init__(self) -> None:
        self.headers: dict[str, bytes] = {}
        self.header_bytes = 0
        self.field = b""
        self.value = b""
        self.file: BinaryIO | None = None
        self.path: Path | None = None
        self.filename = ""
        self.kind: FileKind | None = None
        self.size = 0
        self.sha256 = staging.content_hash()  # of a file part's content, as it arrives
        self.option: str | None = None  # `attributes` or `chunking_strategy` (SPEC 11.1)
        self.option_text = bytearray()


class _MultipartIntake:
    def __init__(
        self, boundary: bytes, workdir: Path, max_files: int, options: FileOptions
    ) -> None:
        self.workdir = workdir
        self.options = options
        self.max_files = max_files
        self.files_seen = 0
        self.other_parts = 0
        self.other_bytes = 0  # headers and data of the parts that are not files
        self.ended = False
        self.completed: list[StagedFile] = []
        self.part = _Part()
        self.parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def feed(self, chunk: bytes) -> list[StagedFile]:
        """Parse one chunk; returns the file parts it completed."""
        try:
            self.parser.write(chunk)
        except MultipartParseError:
            raise bad_request("Malformed multipart body") from None
        done, self.completed = self.completed, []
        return done

    def close(self) -> None:
        if self.part.file is not None:
            self.part.file.close()
            self.part.file = None

    # --- parser callbacks -------------------------------------------------------

    def _on_part_begin(self) -> None:
        self.part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self.part.field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self.part.value += data[start:end]

    def _count_header_bytes(self, n: int) -> None:
        self.part.header_bytes += n
        if self.part.header_bytes > _MAX_PART_HEADER_BYTES:
            raise bad_request("Malformed multipart body: part headers are too large")

    def _on_header_end(self) -> None:
        self.part.headers[self.part.field.decode("latin-1").lower()] = self.part.value
        self.part.field = self.part.value = b""

    def _on_headers_finished(self) -> None:
        part = self.part
        disposition = part.headers.get("content-disposition")
        if disposition is None:
            raise bad_request("Malformed multipart body: a part has no Content-Disposition")
        name, raw_filename = parse_content_disposition(disposition)
        if name != FILES_FIELD:
            # Other form fields are allowed and ignored, within a budget.
            self.other_parts += 1
            if self.other_parts > MAX_OTHER_PARTS:
                raise bad_request(
                    f"Too many form fields besides '{FILES_FIELD}': at most "
                    f"{MAX_OTHER_PARTS} per request",
                    max_other_parts=MAX_OTHER_PARTS,
                )
            self._count_other_bytes(part.header_bytes)
            if name in OPTION_NAMES:
                if name in self.options:
                    raise bad_request(f"'{name}' is given more than once", field=name)
                part.option = name
            return
        self.files_seen += 1
        if self.files_seen > self.max_files:
            raise AppError(
                400,
                ErrorCode.TOO_MANY_FILES,
                f"Too many files: at most {self.max_files} per request",
                details={"max_files": self.max_files},
            )
        if raw_filename is None:
            raise bad_request(f"Part {self.files_seen} of 'files' has no filename")
        part.filename = clean_filename(raw_filename)
        declared = part.headers.get("content-type", b"").decode("latin-1").strip() or None
        part.kind = kind_for(part.filename, declared, infer_generic=True)
        # The staged name keeps the (already validated) extension: readers such as
        # openpyxl go by it.
        suffix = Path(part.filename).suffix.lower()
        part.path = self.workdir / f"{self.files_seen:03d}{suffix}"
        part.file = part.path.open("wb", buffering=_WRITE_BUFFER)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if part.file is None or part.kind is None:
            self._count_other_bytes(end - start)  # a non-file field: not kept
            if part.option is not None:  # ...but for the options, within that budget
                part.option_text += data[start:end]
            return
        part.size += end - start
        check_size(part.kind, part.size, part.filename)
        chunk = memoryview(data)[start:end]
        part.file.write(chunk)
        part.sha256.update(chunk)

    def _count_other_bytes(self, n: int) -> None:
        self.other_bytes += n
        if self.other_bytes > MAX_OTHER_PART_BYTES:
            raise AppError(
                413,
                ErrorCode.FILE_TOO_LARGE,
                f"Form fields besides '{FILES_FIELD}' hold more than {MAX_OTHER_PART_BYTES} "
                "bytes, the most a request may send besides its files",
                details={"max_other_part_bytes": MAX_OTHER_PART_BYTES},
            )

    def _on_part_end(self) -> None:
        part = self.part
        if part.option is not None:
            # Validated when it ends, wherever it is: files before it are uploading by
            # now, and a refusal here deletes them again (see ingest). An empty part (a
            # form's field left blank) is no option.
            if part.option_text.strip():
                self.options[part.option] = parse_option_text(
                    part.option, bytes(part.option_text), part.option
                )
            return
        if part.file is None or part.path is None or part.kind is None:
            return
        part.file.close()
        part.file = None
        self.completed.append(
            StagedFile(
                part.path, part.filename, part.kind, part.size, sha256=part.sha256.hexdigest()
            )
        )

    def _on_end(self) -> None:
        self.ended = True


async def receive_multipart(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    workdir: Path,
    *,
    max_files: int,
    max_body_bytes: int,
    reserve: Reserve | None = None,
    check: Callable[[StagedFile], Awaitable[StagedFile]] | None = None,
    options: FileOptions | None = None,
) -> AsyncIterator[StagedFile]:
    """Yield each `files` part, validated and on disk, as soon as it has fully arrived.

    The `attributes` and `chunking_strategy` parts (SPEC 11.1), anywhere in the body, are
    validated and put into `options` as they end; they apply to every file.

    `reserve` is awaited with the body's size so far before each chunk is parsed (and
    any of it written). `check` runs a file's content check and returns the file to
    yield (with the encoding to transcode it from); the routes pass the bounded
    executor's (see `ingest.content_checker`). Without one the check runs in a plain
    thread.
    """
    intake = _MultipartIntake(
        multipart_boundary(content_type), workdir, max_files, {} if options is None else options
    )
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_body_bytes:
                raise body_too_large(max_body_bytes)
            if reserve is not None:
                await reserve(received)
            for staged in intake.feed(chunk):
                if check is None:
                    encoding = await asyncio.to_thread(
                        check_content, staged.path, staged.kind, staged.filename
                    )
                    yield replace(staged, encoding=encoding)
                else:
                    yield await check(staged)
            if intake.ended:
                break  # anything after the closing boundary is an epilogue: ignored
    finally:
        intake.close()
    if not intake.ended:
        raise bad_request("Malformed multipart body: it ended before the closing boundary")
    if intake.files_seen == 0:
        raise bad_request("No files: send one or more parts named 'files'")
