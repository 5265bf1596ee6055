"""Turn validated uploads into what OpenAI file search can index.

File search does not index .csv or .xlsx, so a CSV goes up as plain text and a
workbook as Markdown (one table per sheet); every other kind goes up unchanged.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.filetypes import CHUNK_SIZE, CSV, XLSX, FileKind, MiB

# A workbook is a ZIP of XML that openpyxl inflates as it reads (and shared strings
# wholly into memory), so a small file can expand enormously: refuse before reading.
# Real workbooks compress 5-10x; this is 10x the 50 MB upload limit.
XLSX_MAX_UNPACKED_BYTES = 512 * MiB

# One shared string can be referenced by every cell, so even a modest sheet can
# produce unbounded text. File search indexes at most 5M tokens (~20 MB) per file,
# so Markdown past this size could not be used anyway.
MAX_CONVERTED_BYTES = 100 * MiB


@dataclass(frozen=True, slots=True)
class UpstreamForm:
    path: Path
    filename: str
    mime_type: str


def to_upstream_form(path: Path, filename: str, kind: FileKind, workdir: Path) -> UpstreamForm:
    """Return the file to upload for a validated `kind` file (blocking I/O).

    CSV becomes `<filename>.txt` (text/plain; UTF-16 is transcoded to UTF-8, UTF-8 is
    sent as is), XLSX becomes `<filename>.md` (text/markdown); other kinds are returned
    unchanged. New files are written in `workdir`, which the caller removes (even after
    an error). An unreadable workbook is a 415; one that unpacks or converts to too much
    is a 413.
    """
    if kind is CSV:
        return UpstreamForm(_csv_as_utf8(path, workdir), f"{filename}.txt", "text/plain")
    if kind is XLSX:
        markdown = _new_file(workdir, ".md")
        _xlsx_to_markdown(path, filename, markdown)
        return UpstreamForm(markdown, f"{filename}.md", "text/markdown")
    return UpstreamForm(path, filename, kind.mime_type)


def _new_file(workdir: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=workdir)
    os.close(fd)
    return Path(name)


def _csv_as_utf8(path: Path, workdir: Path) -> Path:
    with path.open("rb") as f:
        head = f.read(2)
    if head not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return path
    utf8 = _new_file(workdir, ".txt")
    # The utf-16 codec reads the BOM to pick the byte order and drops it.
    with (
        path.open(encoding="utf-16", newline="") as src,
        utf8.open("w", encoding="utf-8", newline="") as dst,
    ):
        shutil.copyfileobj(src, dst, CHUNK_SIZE)
    return utf8


def _xlsx_to_markdown(path: Path, filename: str, markdown: Path) -> None:
    written = 0
    with markdown.open("wb") as out, contextlib.closing(_read_workbook(path, filename)) as lines:
        for line in lines:
            data = line.encode()
            written += len(data)
            if written > MAX_CONVERTED_BYTES:
                raise _too_large(
                    filename, f"converts to more than {MAX_CONVERTED_BYTES // MiB} MB of text"
                )
            out.write(data)


def _read_workbook(path: Path, filename: str) -> Generator[str, None, None]:
    """The workbook's Markdown lines; whatever openpyxl cannot read is a 415."""
    try:
        _check_unpacked_size(path, filename)
        # A file object, not the path: openpyxl refuses paths not ending in .xlsx, and
        # staged uploads are not named after the client's file.
        with path.open("rb") as source:
            workbook = load_workbook(source, read_only=True, data_only=True)
            try:
                yield from _markdown_lines(workbook)
            finally:
                workbook.close()
    except (AppError, Warning):
        raise  # our own 413, or a warning turned into an error: not a corrupt file
    except Exception as exc:
        # openpyxl signals bad content with many types (OSError among them).
        raise AppError(
            415,
            ErrorCode.UNSUPPORTED_FILE_TYPE,
            f"{filename}: the workbook cannot be read ({type(exc).__name__})",
            details={"filename": filename, "mime_type": XLSX.mime_type},
        ) from exc


def _check_unpacked_size(path: Path, filename: str) -> None:
    # The central directory's sizes bound what zipfile will inflate for each member.
    with zipfile.ZipFile(path) as package:
        unpacked = sum(info.file_size for info in package.infolist())
    if unpacked > XLSX_MAX_UNPACKED_BYTES:
        raise _too_large(
            filename,
            f"unpacks to {unpacked} bytes; at most {XLSX_MAX_UNPACKED_BYTES // MiB} MB",
        )


def _markdown_lines(workbook: Any) -> Iterator[str]:
    """Each sheet as `## <title>` and a table whose header is the first non-blank row.

    Blank rows are skipped and trailing empty cells dropped. Shorter rows are padded to
    the header's width; a longer row keeps its extra cells, because the indexer reads
    the text, not the rendered table.
    """
    for number, sheet in enumerate(workbook.worksheets):
        if number:
            yield "\n"
        yield f"## {sheet.title}\n\n"
        # Otherwise rows are padded to the sheet's declared dimensions, which a
        # crafted file can set to 16,384 columns by a million rows.
        sheet.reset_dimensions()
        width = 0
        for row in sheet.iter_rows(values_only=True):
            cells = [_cell_text(value) for value in row]
            while cells and not cells[-1]:
                cells.pop()
            if not cells:
                continue
            if not width:
                width = len(cells)
                yield _table_row(cells)
                yield _table_row(["---"] * width)
            else:
                yield _table_row(cells + [""] * (width - len(cells)))
        if not width:
            yield "_(empty sheet)_\n"


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    text = ("TRUE" if value else "FALSE") if isinstance(value, bool) else str(value)
    return (
        text.replace("|", "\\|").replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")
    )


def _table_row(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |\n"


def _too_large(filename: str, problem: str) -> AppError:
    return AppError(
        413, ErrorCode.FILE_TOO_LARGE, f"{filename}: {problem}", details={"filename": filename}
    )
