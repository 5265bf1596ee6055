"""Builders of small valid upload files for tests and benchmarks.

Each passes `vectorgate.uploads.filetypes.check_content` for its kind. The PDF is only
a header and padding (vectorgate never looks further); the DOCX is the smallest complete
WordprocessingML package; the PPTX holds just the parts vectorgate checks.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from openpyxl import Workbook

_PDF_HEAD = b"%PDF-1.4\n%"  # the second line starts a comment that the padding extends
_PDF_TAIL = b"\n%%EOF\n"
_PAD_CHUNK = 1024 * 1024


def pdf_bytes(size: int = 1024) -> bytes:
    """A PDF-looking file of exactly `size` bytes (at least 17)."""
    return _PDF_HEAD + b"x" * _pad_length(size) + _PDF_TAIL


def write_pdf(path: Path, size: int) -> None:
    """Write the same file as `pdf_bytes(size)` to `path`, in chunks, for large sizes."""
    pad = _pad_length(size)
    chunk = b"x" * min(pad, _PAD_CHUNK)
    with path.open("wb") as f:
        f.write(_PDF_HEAD)
        while pad:
            written = f.write(chunk[:pad])
            pad -= written
        f.write(_PDF_TAIL)


def _pad_length(size: int) -> int:
    pad = size - len(_PDF_HEAD) - len(_PDF_TAIL)
    if pad < 0:
        raise ValueError(f"a sample PDF needs at least {len(_PDF_HEAD) + len(_PDF_TAIL)} bytes")
    return pad


_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/{part}" ContentType="{content_type}"/>
</Types>"""

_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="{part}"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>
</Relationships>"""

_DOCUMENT = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body>
</w:document>"""

_PRESENTATION = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<p:presentation xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main">
<p:notesSz cx="6858000" cy="9144000"/>
</p:presentation>"""


def docx_bytes(text: str = "vectorgate sample document") -> bytes:
    """A one-paragraph Word document."""
    return _office_package(
        "word/document.xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        _DOCUMENT.format(text=escape(text)),
    )


def pptx_bytes() -> bytes:
    """A minimal presentation package: content types, relationships, main part."""
    return _office_package(
        "ppt/presentation.xml",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        _PRESENTATION,
    )


def _office_package(part: str, content_type: str, body: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr(
            "[Content_Types].xml", _CONTENT_TYPES.format(part=part, content_type=content_type)
        )
        package.writestr("_rels/.rels", _ROOT_RELS.format(part=part))
        package.writestr(part, body)
    return buffer.getvalue()


def xlsx_bytes(sheets: Mapping[str, Sequence[Sequence[object]]]) -> bytes:
    """A workbook with one sheet per item, in order, each row appended as given."""
    if not sheets:
        raise ValueError("a workbook needs at least one sheet")
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
