"""Allowed upload types (SPEC 3.4) and the checks that a file is what it claims to be.

A file's kind comes from its declared MIME type and its extension, which must agree;
`check_size` and `check_content` then hold the bytes to that kind's rules.
"""

from __future__ import annotations

import codecs
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vectorgate.errors import AppError, ErrorCode, bad_request

MiB = 1024 * 1024

# Text content is decoded in chunks of this size, never read whole.
CHUNK_SIZE = MiB


@dataclass(frozen=True, slots=True)
class FileKind:
    name: str
    mime_type: str
    extensions: tuple[str, ...]
    max_bytes: int


PDF = FileKind("pdf", "application/pdf", (".pdf",), 50 * MiB)
TEXT = FileKind("text", "text/plain", (".txt",), 10 * MiB)
MARKDOWN = FileKind("markdown", "text/markdown", (".md", ".markdown"), 10 * MiB)
CSV = FileKind("csv", "text/csv", (".csv",), 10 * MiB)
JSON = FileKind("json", "application/json", (".json",), 10 * MiB)
DOCX = FileKind(
    "docx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    (".docx",),
    50 * MiB,
)
PPTX = FileKind(
    "pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    (".pptx",),
    50 * MiB,
)
XLSX = FileKind(
    "xlsx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    (".xlsx",),
    50 * MiB,
)

KINDS: tuple[FileKind, ...] = (PDF, TEXT, MARKDOWN, CSV, JSON, DOCX, PPTX, XLSX)
MAX_FILE_BYTES = max(kind.max_bytes for kind in KINDS)

# Non-canonical MIME types that real clients send. `application/vnd.ms-excel` is what
# Windows reports for .csv; naming CSV here means it is accepted only for a .csv name.
MIME_ALIASES: dict[str, FileKind] = {
    "text/x-markdown": MARKDOWN,
    "application/csv": CSV,
    "text/x-csv": CSV,
    "application/vnd.ms-excel": CSV,
    "text/json": JSON,
    "application/x-json": JSON,
    "application/x-pdf": PDF,
}

# Browsers and curl often declare text/plain for these; the extension then decides.
TEXT_PLAIN_ALSO_FOR: frozenset[FileKind] = frozenset({MARKDOWN, CSV, JSON})

GENERIC_MIME = "application/octet-stream"

_BY_MIME = {kind.mime_type: kind for kind in KINDS} | MIME_ALIASES
_BY_EXTENSION = {ext: kind for kind in KINDS for ext in kind.extensions}
_ALLOWED_EXTENSIONS = ", ".join(_BY_EXTENSION)

# The part each Office package must hold besides [Content_Types].xml.
_OFFICE_MAIN_PARTS = {
    DOCX: "word/document.xml",
    PPTX: "ppt/presentation.xml",
    XLSX: "xl/workbook.xml",
}


def kind_for(filename: str, declared_mime: str | None, *, infer_generic: bool) -> FileKind:
    """Resolve the kind of `filename` declared as `declared_mime`, or raise 415.

    With `infer_generic` (multipart route) a missing, empty or `application/octet-stream`
    type resolves from the extension alone; without it (base64 route) those are a 415.
    """
    _, dot, suffix = filename.rpartition(".")
    extension = f".{suffix.lower()}" if dot else ""
    by_extension = _BY_EXTENSION.get(extension)
    mime = (declared_mime or "").split(";", 1)[0].strip().lower()
    details: dict[str, object] = {
        "filename": filename,
        "extension": extension,
        "mime_type": declared_mime,
    }

    if by_extension is None:
        what = f"extension {extension}" if extension else "no extension"
        raise _unsupported(
            f"{filename}: file type not allowed ({what}); allowed extensions: "
            f"{_ALLOWED_EXTENSIONS}",
            details,
        )
    if mime in ("", GENERIC_MIME):
        if infer_generic:
            return by_extension
        declared = f"declared {mime}" if mime else "no MIME type declared"
        raise _unsupported(
            f"{filename}: {declared}; send the file's type ({by_extension.mime_type})", details
        )
    by_mime = _BY_MIME.get(mime)
    if by_mime is None:
        raise _unsupported(f"{filename}: declared type {mime} is not allowed", details)
    if by_mime is TEXT and by_extension in TEXT_PLAIN_ALSO_FOR:
        return by_extension
    if by_mime is not by_extension:
        raise _unsupported(
            f"{filename}: declared {mime} but the extension {extension} is for "
            f"{by_extension.mime_type}",
            details,
        )
    return by_mime


def check_size(kind: FileKind, size: int, filename: str) -> None:
    """Raise 413 if `size` is over the kind's limit; exactly the limit is allowed."""
    if size > kind.max_bytes:
        raise AppError(
            413,
            ErrorCode.FILE_TOO_LARGE,
            f"{filename}: {size} bytes is over the {kind.max_bytes // MiB} MB limit "
            f"for {kind.name} files",
            details={"filename": filename, "max_bytes": kind.max_bytes, "size": size},
        )


def check_content(path: Path, kind: FileKind, filename: str) -> None:
    """Check that the stored file at `path` really is a `kind` file (blocking I/O).

    An empty file is a 400 for every kind (there is nothing to index); a file over the
    kind's limit is a 413 (the size is re-checked here so this check is safe on its own);
    content that does not match the kind is a 415.
    """
    size = path.stat().st_size
    if size == 0:
        raise bad_request(f"{filename}: file is empty", filename=filename)
    check_size(kind, size, filename)
    if kind is PDF:
        _check_pdf(path, filename)
    elif kind in _OFFICE_MAIN_PARTS:
        _check_office(path, kind, filename)
    else:
        _check_text(path, kind, filename)


def _check_pdf(path: Path, filename: str) -> None:
    with path.open("rb") as f:
        if f.read(5) != b"%PDF-":
            raise _mismatch(filename, PDF, "the content is not a PDF (no %PDF- header)")


def _check_office(path: Path, kind: FileKind, filename: str) -> None:
    main_part = _OFFICE_MAIN_PARTS[kind]
    label = f"a {kind.name.upper()} package"
    try:
        # Opening reads only the central directory; nothing is decompressed.
        with zipfile.ZipFile(path) as package:
            names = set(package.namelist())
    except (zipfile.BadZipFile, NotImplementedError, ValueError):
        # NotImplementedError: an unknown ZIP version; ValueError: a name flagged UTF-8
        # that is not. Neither could be read upstream either.
        raise _mismatch(
            filename, kind, f"the content is not {label} (not a readable ZIP file)"
        ) from None
    if "[Content_Types].xml" not in names:
        raise _mismatch(filename, kind, f"the content is not {label} (no [Content_Types].xml)")
    if main_part not in names:
        raise _mismatch(filename, kind, f"the content is not {label} (no {main_part})")


def _check_text(path: Path, kind: FileKind, filename: str) -> None:
    with path.open("rb") as f:
        chunk = f.read(CHUNK_SIZE)
        encoding, label, bom = _text_encoding(chunk)
        chunk = chunk[len(bom) :]
        decoder = codecs.getincrementaldecoder(encoding)()
        parts: list[str] = []  # kept only for JSON, which must be parsed whole
        offset = len(bom)  # file offset of the current chunk's first byte
        while True:
            final = not chunk
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                position = offset - pending + exc.start
                raise _mismatch(
                    filename,
                    kind,
                    f"the content is not valid {label} text (bad byte at offset {position})",
                ) from None
            if "\x00" in text:
                raise _mismatch(
                    filename, kind, "the content contains a NUL character, so it is not text"
                )
            if kind is JSON:
                parts.append(text)
            if final:
                break
            offset += len(chunk)
            chunk = f.read(CHUNK_SIZE)
    if kind is JSON:
        try:
            # parse_int=str: only validity matters, and int() refuses over 4,300 digits.
            json.loads("".join(parts), parse_int=str)
        except json.JSONDecodeError as exc:
            raise _mismatch(
                filename, kind, f"the content is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
        except RecursionError:
            raise _mismatch(filename, kind, "the JSON is nested too deeply to check") from None


def _text_encoding(head: bytes) -> tuple[str, str, bytes]:
    """(codec, label for messages, BOM) for text starting with `head`."""
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", "UTF-16", codecs.BOM_UTF16_LE
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", "UTF-16", codecs.BOM_UTF16_BE
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", "UTF-8", codecs.BOM_UTF8
    return "utf-8", "UTF-8", b""


def _mismatch(filename: str, kind: FileKind, problem: str) -> AppError:
    return _unsupported(
        f"{filename}: {problem}",
        {"filename": filename, "mime_type": kind.mime_type},
    )


def _unsupported(message: str, details: dict[str, object]) -> AppError:
    return AppError(415, ErrorCode.UNSUPPORTED_FILE_TYPE, message, details=details)
