"""Turn validated uploads into what OpenAI file search can index.

File search does not index .csv or .xlsx, so a CSV goes up as plain text and a
workbook as Markdown (one table per sheet). For upstreams that cannot parse them, the
kinds named in `VECTORGATE_CONVERT_TO_TEXT` go up as text too: DOCX and PPTX as
Markdown, JSON as the same bytes named as plain text. Text that is not UTF-8 (SPEC
11.4; `filetypes.check_content` names its encoding) is transcoded to UTF-8 first. Every
other file goes up unchanged.
"""

from __future__ import annotations

import codecs
import os
import tempfile
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.filetypes import (
    CHUNK_SIZE,
    CSV,
    DOCX,
    JSON,
    PPTX,
    XLSX,
    FileKind,
    MiB,
    check_zip_directory,
)
from vectorgate.uploads.office_text import write_document_markdown, write_presentation_markdown
from vectorgate.uploads.work import check_deadline
from vectorgate.uploads.xlsx import write_markdown

# An Office file is a ZIP of XML, so a small file can expand enormously: refuse before
# reading one whose parts add up to more than this, and stop reading XML past it (a
# sheet or slide listed many times is read many times). Real packages compress 5-10x;
# this is 10x the 50 MB upload limit. The other caps are in uploads/xlsx.py and
# uploads/office_text.py.
MAX_UNPACKED_BYTES = 512 * MiB

# One shared string can be referenced by every cell, so even a modest sheet can
# produce unbounded text. File search indexes at most 5M tokens (~20 MB) per file,
# so Markdown past this size could not be used anyway.
MAX_CONVERTED_BYTES = 100 * MiB


@dataclass(frozen=True, slots=True)
class UpstreamForm:
    path: Path
    filename: str
    mime_type: str


_WriteMarkdown = Callable[..., None]

# Office kinds written as Markdown: how, and what the package is called in messages.
_TO_MARKDOWN: dict[FileKind, tuple[_WriteMarkdown, str]] = {
    XLSX: (write_markdown, "workbook"),
    DOCX: (write_document_markdown, "document"),
    PPTX: (write_presentation_markdown, "presentation"),
}


def needs_conversion(
    kind: FileKind, convert_to_text: Collection[str] = (), encoding: str | None = None
) -> bool:
    """Whether `to_upstream_form` does real work for `kind` (else it returns the file).

    `convert_to_text` holds the kind names configured to go up as text (settings);
    `encoding` is the codec of text to transcode (None: it is UTF-8).
    """
    return (
        encoding is not None
        or kind is CSV
        or kind is XLSX
        or (kind in (DOCX, PPTX) and kind.name in convert_to_text)
    )


def to_upstream_form(
    path: Path,
    filename: str,
    kind: FileKind,
    workdir: Path,
    convert_to_text: Collection[str] = (),
    encoding: str | None = None,
) -> UpstreamForm:
    """Return the file to upload for a validated `kind` file (blocking I/O).

    Text in `encoding` (the codec `filetypes.check_content` returned) is first written
    as UTF-8 to a new file. CSV becomes `<filename>.txt` (text/plain; UTF-8 is sent as
    is), XLSX becomes `<filename>.md` (text/markdown). Kinds named in `convert_to_text`:
    DOCX and PPTX become `<filename>.md`, JSON `<filename>.txt` with the same text.
    Other kinds are returned unchanged, under their own name and MIME type. New files
    are written in `workdir`, which the caller removes (even after an error). An
    unreadable package is a 415; one over a cap (see uploads/xlsx.py,
    uploads/office_text.py) is a 413.
    """
    if encoding is None and kind is CSV:
        encoding = _utf16_bom(path)  # a caller that did not pass the check's answer
    if encoding is not None:
        path = _as_utf8(path, encoding, workdir)
    if kind is CSV:
        return UpstreamForm(path, f"{filename}.txt", "text/plain")
    if kind is XLSX or (kind in _TO_MARKDOWN and kind.name in convert_to_text):
        markdown = _new_file(workdir, ".md")
        _office_to_markdown(path, filename, kind, markdown)
        return UpstreamForm(markdown, f"{filename}.md", "text/markdown")
    if kind is JSON and kind.name in convert_to_text:
        return UpstreamForm(path, f"{filename}.txt", "text/plain")
    return UpstreamForm(path, filename, kind.mime_type)


def _new_file(workdir: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=workdir)
    os.close(fd)
    return Path(name)


def _utf16_bom(path: Path) -> str | None:
    with path.open("rb") as f:
        head = f.read(2)
    return "utf-16" if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else None


def _as_utf8(path: Path, encoding: str, workdir: Path) -> Path:
    """A new file in `workdir` holding `path`'s text, read as `encoding`, in UTF-8.

    Streamed a chunk at a time. The utf-16 codec reads the BOM to pick the byte order
    and drops it; no BOM is written. Line ends are kept as they are.
    """
    utf8 = _new_file(workdir, ".txt")
    with (
        path.open(encoding=encoding, newline="") as src,
        utf8.open("w", encoding="utf-8", newline="") as dst,
    ):
        while text := src.read(CHUNK_SIZE):
            check_deadline()
            dst.write(text)
    return utf8


def _office_to_markdown(path: Path, filename: str, kind: FileKind, markdown: Path) -> None:
    """Write the Office file at `path` to `markdown`; whatever cannot be read is a 415."""
    write, what = _TO_MARKDOWN[kind]
    try:
        check_zip_directory(path, kind, filename)
        with zipfile.ZipFile(path) as package, markdown.open("wb") as out:
            _check_unpacked_size(package, filename)
            write(
                package,
                filename,
                out,
                max_output_bytes=MAX_CONVERTED_BYTES,
                max_xml_bytes=MAX_UNPACKED_BYTES,
            )
    except AppError:
        raise  # a budget's 413, or the ZIP directory's 415
    except Exception as exc:
        # zipfile, expat, int() and the date helpers signal bad content with many types.
        raise AppError(
            415,
            ErrorCode.UNSUPPORTED_FILE_TYPE,
            f"{filename}: the {what} cannot be read ({type(exc).__name__})",
            details={"filename": filename, "mime_type": kind.mime_type},
        ) from exc


def _check_unpacked_size(package: zipfile.ZipFile, filename: str) -> None:
    # The central directory's sizes bound what zipfile will inflate for each member.
    unpacked = sum(info.file_size for info in package.infolist())
    if unpacked > MAX_UNPACKED_BYTES:
        raise _too_large(
            filename,
            f"unpacks to {unpacked} bytes; at most {MAX_UNPACKED_BYTES // MiB} MB",
        )


def _too_large(filename: str, problem: str) -> AppError:
    return AppError(
        413, ErrorCode.FILE_TOO_LARGE, f"{filename}: {problem}", details={"filename": filename}
    )
