"""Hostile workbooks generated on the spot: small ZIPs of XML that no spreadsheet writes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
</Types>"""
_ROOT_RELS = f"""<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="{_RELS}"><Relationship Id="rId1" Target="xl/workbook.xml"
 Type="{_DOC_RELS}/officeDocument"/></Relationships>"""
_WORKBOOK = f"""<?xml version="1.0" encoding="UTF-8"?>
<workbook xmlns="{_MAIN}" xmlns:r="{_DOC_RELS}"><sheets>
<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"""
_WORKBOOK_RELS = f"""<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="{_RELS}">
<Relationship Id="rId1" Type="{_DOC_RELS}/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="{_DOC_RELS}/sharedStrings" Target="sharedStrings.xml"/>
</Relationships>"""


def workbook(rows: Iterable[bytes], shared_strings: Iterable[bytes] = ()) -> bytes:
    """A one-sheet workbook whose <sheetData> is `rows` and <sst> is `shared_strings`.

    Both are written piece by piece into the deflated ZIP, so millions of cells cost
    only their compressed size in memory.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", _CONTENT_TYPES)
        package.writestr("_rels/.rels", _ROOT_RELS)
        package.writestr("xl/workbook.xml", _WORKBOOK)
        package.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with package.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(f'<worksheet xmlns="{_MAIN}"><sheetData>'.encode())
            _write_all(sheet, rows)
            sheet.write(b"</sheetData></worksheet>")
        with package.open("xl/sharedStrings.xml", "w") as strings:
            strings.write(f'<sst xmlns="{_MAIN}">'.encode())
            _write_all(strings, shared_strings)
            strings.write(b"</sst>")
    return buffer.getvalue()


def _write_all(target: io.BufferedIOBase | object, pieces: Iterable[bytes]) -> None:
    batch: list[bytes] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= 1 << 20:
            target.write(b"".join(batch))  # type: ignore[attr-defined]
            batch.clear()
            size = 0
    target.write(b"".join(batch))  # type: ignore[attr-defined]


def far_row() -> bytes:
    """2 KB: a header row, then a row numbered 10^15 (openpyxl pads every row between)."""
    far = 10**15
    return workbook(
        [
            b'<row r="1"><c t="inlineStr"><is><t>top</t></is></c></row>',
            b'<row r="%d"><c r="A%d"><v>1</v></c></row>' % (far, far),
        ]
    )


def empty_cells(cells: int, per_row: int = 16_384) -> bytes:
    """`cells` empty <c/> elements, `per_row` to a row."""
    full, rest = divmod(cells, per_row)
    row = b"<row>" + b"<c/>" * per_row + b"</row>"
    rows = [row] * full + ([b"<row>" + b"<c/>" * rest + b"</row>"] if rest else [])
    return workbook(rows)


def far_cells(rows: int) -> bytes:
    """`rows` rows with one cell at column XFD, each padded with 16,383 empty cells."""
    return workbook(
        f'<row r="{n}"><c r="XFD{n}"><v>1</v></c></row>'.encode() for n in range(1, rows + 1)
    )


def shared_strings(count: int, length: int = 1) -> bytes:
    """`count` distinct shared strings of at least `length` characters; a cell uses one."""
    return workbook(
        [b'<row><c t="s"><v>0</v></c></row>'],
        (f"<si><t>{n:0{length}x}</t></si>".encode() for n in range(count)),
    )


def long_cell(chars: int, *, shared: bool) -> bytes:
    """One cell holding `chars` characters, as a shared or an inline string."""
    text = [b"<t>"] + [b"x" * 65536] * (chars // 65536) + [b"x" * (chars % 65536), b"</t>"]
    if shared:
        return workbook([b'<row><c t="s"><v>0</v></c></row>'], [b"<si>", *text, b"</si>"])
    return workbook([b'<row><c t="inlineStr"><is>', *text, b"</is></c></row>"])
