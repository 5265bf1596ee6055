from __future__ import annotations

import asyncio
import codecs
import datetime
import io
import re
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont

from tests.uploads import workbooks
from tests.uploads.zips import zip_directory_only
from vectorgate.errors import AppError, ErrorCode
from vectorgate.testing.samples import docx_bytes, xlsx_bytes
from vectorgate.uploads import convert, filetypes, ooxml, xlsx
from vectorgate.uploads.convert import UpstreamForm, needs_conversion, to_upstream_form
from vectorgate.uploads.filetypes import CSV, KINDS, XLSX, FileKind, check_content
from vectorgate.uploads.work import ContentWork


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def upload(tmp_path: Path, content: bytes) -> Path:
    # Staged uploads are not named after the client's file (openpyxl cares about names).
    path = tmp_path / "001.upload"
    path.write_bytes(content)
    return path


def rewrite_member(package: bytes, member: str, change: Callable[[bytes], bytes]) -> bytes:
    """`package` with `member`'s bytes replaced by `change(old_bytes)`."""
    source = zipfile.ZipFile(io.BytesIO(package))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, change(data) if info.filename == member else data)
    return buffer.getvalue()


# --- kinds that go up unchanged --------------------------------------------------------


@pytest.mark.parametrize(
    "kind", [kind for kind in KINDS if kind not in (CSV, XLSX)], ids=lambda kind: kind.name
)
def test_kinds_other_than_csv_and_xlsx_go_up_unchanged(
    tmp_path: Path, workdir: Path, kind: FileKind
) -> None:
    path = upload(tmp_path, b"content")
    assert to_upstream_form(path, "name.ext", kind, workdir) == UpstreamForm(
        path, "name.ext", kind.mime_type
    )
    assert list(workdir.iterdir()) == []
    assert not needs_conversion(kind)  # so the request skips the worker for it


def test_csv_and_xlsx_need_conversion() -> None:
    assert needs_conversion(CSV)
    assert needs_conversion(XLSX)


# --- CSV ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_utf8_csv_goes_up_as_the_same_file_named_as_text(
    tmp_path: Path, workdir: Path, bom: bytes
) -> None:
    path = upload(tmp_path, bom + "name,city\r\nAnn,Zürich\r\n".encode())
    form = to_upstream_form(path, "people.csv", CSV, workdir)
    assert form == UpstreamForm(path, "people.csv.txt", "text/plain")
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_csv_is_transcoded_to_utf8(tmp_path: Path, workdir: Path, encoding: str) -> None:
    bom = codecs.BOM_UTF16_LE if encoding == "utf-16-le" else codecs.BOM_UTF16_BE
    text = "name,city\r\nAnn,Zürich 😀\nBo,東京\r\n"
    path = upload(tmp_path, bom + text.encode(encoding))
    form = to_upstream_form(path, "people.csv", CSV, workdir)
    assert form.path.parent == workdir
    assert form.filename == "people.csv.txt"
    assert form.mime_type == "text/plain"
    assert form.path.read_bytes() == text.encode()  # no BOM, line endings as they were


# --- XLSX --------------------------------------------------------------------------------

WORKBOOK: dict[str, list[list[object]]] = {
    "People": [
        ["Name", "Note", "Count"],
        ["Ann", "a|b", 3],
        ["Bob", None, 2.5],
        [],
        ["Multi\nline\r\ncell", True, None, "extra"],
        [None, "middle only"],
    ],
    "Empty": [],
    "Numbers & dates": [
        [None],
        ["when", "amount"],
        [datetime.datetime(2024, 1, 2, 3, 4, 5), -0.125],
        [False, 1_000_000],
    ],
}

WORKBOOK_MARKDOWN = """\
## People

| Name | Note | Count |
| --- | --- | --- |
| Ann | a\\|b | 3 |
| Bob |  | 2.5 |
| Multi<br>line<br>cell | TRUE |  | extra |
|  | middle only |  |

## Empty

_(empty sheet)_

## Numbers & dates

| when | amount |
| --- | --- |
| 2024-01-02 03:04:05 | -0.125 |
| FALSE | 1000000 |
"""


def test_xlsx_becomes_one_markdown_table_per_sheet(tmp_path: Path, workdir: Path) -> None:
    path = upload(tmp_path, xlsx_bytes(WORKBOOK))
    form = to_upstream_form(path, "report.xlsx", XLSX, workdir)
    assert form.path.parent == workdir
    assert form.filename == "report.xlsx.md"
    assert form.mime_type == "text/markdown"
    assert form.path.read_text(encoding="utf-8") == WORKBOOK_MARKDOWN


def test_xlsx_with_unicode_sheet_and_cells_is_written_as_utf8(
    tmp_path: Path, workdir: Path
) -> None:
    path = upload(tmp_path, xlsx_bytes({"日本語": [["名前"], ["résumé"]]}))
    form = to_upstream_form(path, "x.xlsx", XLSX, workdir)
    assert form.path.read_bytes() == "## 日本語\n\n| 名前 |\n| --- |\n| résumé |\n".encode()


def test_workbook_declaring_huge_dimensions_converts_quickly(tmp_path: Path, workdir: Path) -> None:
    # A crafted <dimension> would make openpyxl pad 20,000 rows to 16,384 columns
    # (about 30 s); the conversion must not trust it.
    content = rewrite_member(
        xlsx_bytes({"S": [["top"]] + [[]] * 19_998 + [["bottom"]]}),
        "xl/worksheets/sheet1.xml",
        lambda xml: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD20000"', xml),
    )
    path = upload(tmp_path, content)
    started = time.perf_counter()
    form = to_upstream_form(path, "big.xlsx", XLSX, workdir)
    assert time.perf_counter() - started < 3
    assert form.path.read_text() == "## S\n\n| top |\n| --- |\n| bottom |\n"


def test_workbook_from_a_tool_that_writes_no_styles_converts(tmp_path: Path, workdir: Path) -> None:
    content = rewrite_member(
        xlsx_bytes({"S": [["a", 1]]}),
        "xl/styles.xml",
        lambda _: (
            b'<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>'
        ),
    )
    path = upload(tmp_path, content)
    form = to_upstream_form(path, "other-tool.xlsx", XLSX, workdir)
    assert form.path.read_text() == "## S\n\n| a | 1 |\n| --- | --- |\n"


@pytest.mark.parametrize(
    "content",
    [
        rewrite_member(xlsx_bytes({"S": [[1]]}), "xl/workbook.xml", lambda _: b"<not-a-workbook"),
        rewrite_member(xlsx_bytes({"S": [[1]]}), "xl/worksheets/sheet1.xml", lambda _: b"<<<"),
        docx_bytes(),
    ],
    ids=["bad-workbook-xml", "bad-sheet-xml", "not-a-workbook"],
)
def test_corrupt_xlsx_is_rejected_naming_the_file(
    tmp_path: Path, workdir: Path, content: bytes
) -> None:
    path = upload(tmp_path, content)
    with pytest.raises(AppError) as info:
        to_upstream_form(path, "broken.xlsx", XLSX, workdir)
    assert info.value.status == 415
    assert info.value.code is ErrorCode.UNSUPPORTED_FILE_TYPE
    assert info.value.message.startswith("broken.xlsx: the workbook cannot be read (")
    assert info.value.details == {"filename": "broken.xlsx", "mime_type": XLSX.mime_type}


def test_corrupt_xlsx_that_passes_the_content_check_is_still_rejected(
    tmp_path: Path, workdir: Path
) -> None:
    content = rewrite_member(xlsx_bytes({"S": [[1]]}), "xl/workbook.xml", lambda _: b"garbage")
    path = upload(tmp_path, content)
    check_content(path, XLSX, "broken.xlsx")
    with pytest.raises(AppError) as info:
        to_upstream_form(path, "broken.xlsx", XLSX, workdir)
    assert info.value.status == 415


def test_xlsx_that_unpacks_to_too_much_is_rejected_before_reading(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = xlsx_bytes({"S": [["x" * 100]] * 100})
    unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(content)).infolist())
    monkeypatch.setattr(convert, "MAX_UNPACKED_BYTES", unpacked - 1)
    path = upload(tmp_path, content)
    with pytest.raises(AppError) as info:
        to_upstream_form(path, "bomb.xlsx", XLSX, workdir)
    assert info.value.status == 413
    assert info.value.code is ErrorCode.FILE_TOO_LARGE
    assert info.value.message.startswith(f"bomb.xlsx: unpacks to {unpacked} bytes")
    monkeypatch.setattr(convert, "MAX_UNPACKED_BYTES", unpacked)
    to_upstream_form(path, "bomb.xlsx", XLSX, workdir)


def test_xlsx_that_converts_to_too_much_text_is_rejected(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = upload(tmp_path, xlsx_bytes(WORKBOOK))
    monkeypatch.setattr(convert, "MAX_CONVERTED_BYTES", len(WORKBOOK_MARKDOWN.encode()) - 1)
    with pytest.raises(AppError) as info:
        to_upstream_form(path, "wide.xlsx", XLSX, workdir)
    assert info.value.status == 413
    assert info.value.message.startswith("wide.xlsx: converts to more than ")
    monkeypatch.setattr(convert, "MAX_CONVERTED_BYTES", len(WORKBOOK_MARKDOWN.encode()))
    to_upstream_form(path, "wide.xlsx", XLSX, workdir)


# --- the streaming reader against openpyxl -------------------------------------------------


def openpyxl_markdown(content: bytes) -> str:
    """What the converter wrote when openpyxl read the workbook (the behaviour to keep)."""
    workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    lines: list[str] = []
    for number, sheet in enumerate(workbook.worksheets):
        if number:
            lines.append("\n")
        lines.append(f"## {sheet.title}\n\n")
        sheet.reset_dimensions()
        width = 0
        for row in sheet.iter_rows(values_only=True):
            cells = [xlsx._cell_text(value) for value in row]
            while cells and not cells[-1]:
                cells.pop()
            if not cells:
                continue
            if not width:
                width = len(cells)
                lines.append(f"| {' | '.join(cells)} |\n")
                lines.append(f"| {' | '.join(['---'] * width)} |\n")
            else:
                lines.append(f"| {' | '.join(cells + [''] * (width - len(cells)))} |\n")
        if not width:
            lines.append("_(empty sheet)_\n")
    workbook.close()
    return "".join(lines)


def styled_workbook() -> bytes:
    """Dates, times, durations, custom formats, formulas, rich text: what openpyxl writes."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Styled"
    sheet.append(["date", "time", "duration", "custom", "formula", "percent"])
    sheet.append(
        [
            datetime.date(2020, 2, 29),
            datetime.time(13, 45, 1),
            datetime.timedelta(days=2, hours=3),
            45000.5,
            "=1+1",
            0.25,
        ]
    )
    sheet["D2"].number_format = "yyyy-mm-dd hh:mm"
    sheet["F2"].number_format = "0.00%"
    sheet["B5"] = "gap rows and columns"
    sheet["H6"] = "far right _x000D_ text"
    sheet["A7"] = CellRichText(["plain ", TextBlock(InlineFont(b=True), "bold")])
    sheet["A8"] = 1e-7
    sheet["B8"] = -12345678901234567
    sheet["C8"] = "   spaces kept   "
    workbook.create_sheet("Second").append(["only", None, None, "cells"])
    chart_free = workbook.create_sheet("Third")
    chart_free["C3"] = "late header"
    chart_free["A4"] = "under it"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        xlsx_bytes(WORKBOOK),
        xlsx_bytes({"日本語": [["名前", "|"], ["résumé", "a\r\nb"]]}),
        styled_workbook(),
    ],
    ids=["sample", "unicode", "styled"],
)
def test_streaming_reader_writes_what_openpyxl_read(
    tmp_path: Path, workdir: Path, content: bytes
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl's own, about styles it does not know
        expected = openpyxl_markdown(content)
    form = to_upstream_form(upload(tmp_path, content), "x.xlsx", XLSX, workdir)
    assert form.path.read_text(encoding="utf-8") == expected


def test_inline_strings_and_1904_dates_are_read(tmp_path: Path, workdir: Path) -> None:
    content = rewrite_member(
        workbooks.workbook(
            [
                b'<row><c t="inlineStr"><is><r><t>ru</t></r><r><t>ns</t></r>'
                b'<rPh><t>phonetic</t></rPh></is></c><c t="b"><v>1</v></c>'
                b'<c t="e"><v>#DIV/0!</v></c><c t="str"><v>formula text</v></c></row>'
            ]
        ),
        "xl/workbook.xml",
        lambda xml: xml.replace(b"<sheets>", b'<workbookPr date1904="1"/><sheets>'),
    )
    form = to_upstream_form(upload(tmp_path, content), "x.xlsx", XLSX, workdir)
    assert form.path.read_text() == (
        "## S\n\n| runs | TRUE | #DIV/0! | formula text |\n| --- | --- | --- | --- |\n"
    )


# --- budgets -------------------------------------------------------------------------------


def rejected(tmp_path: Path, workdir: Path, content: bytes, status: int = 413) -> AppError:
    path = upload(tmp_path, content)
    with pytest.raises(AppError) as info:
        to_upstream_form(path, "hostile.xlsx", XLSX, workdir)
    assert info.value.status == status, info.value.message
    assert info.value.details["filename"] == "hostile.xlsx"
    return info.value


def test_row_numbered_ten_to_the_fifteenth_converts_at_once(tmp_path: Path, workdir: Path) -> None:
    # openpyxl padded every row in between: it never finished.
    started = time.perf_counter()
    form = to_upstream_form(upload(tmp_path, workbooks.far_row()), "far.xlsx", XLSX, workdir)
    assert time.perf_counter() - started < 1
    assert form.path.read_text() == "## S\n\n| top |\n| --- |\n| 1 |\n"


def test_workbook_with_more_cells_than_allowed_is_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_CELLS", 1000)
    to_upstream_form(upload(tmp_path, workbooks.empty_cells(1000, 300)), "x.xlsx", XLSX, workdir)
    error = rejected(tmp_path, workdir, workbooks.empty_cells(1001, 300))
    assert error.message == (
        "hostile.xlsx: the workbook has more than 1,000 cells (counting empty cells that pad rows)"
    )
    assert error.details["max_cells"] == 1000


def test_padding_before_a_far_cell_counts_as_cells(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_CELLS", 3 * 16_384 - 1)
    # Each row is one <c> at XFD after 16,383 empty cells.
    to_upstream_form(upload(tmp_path, workbooks.far_cells(2)), "x.xlsx", XLSX, workdir)
    error = rejected(tmp_path, workdir, workbooks.far_cells(3))
    assert "more than 49,151 cells" in error.message


def test_cell_beyond_column_xfd_is_refused(tmp_path: Path, workdir: Path) -> None:
    error = rejected(
        tmp_path, workdir, workbooks.workbook([b'<row><c r="XFE1"><v>1</v></c></row>'])
    )
    assert error.message == (
        "hostile.xlsx: a cell lies beyond column XFD (16,384 columns, Excel's limit)"
    )


def test_workbook_with_more_rows_than_allowed_is_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_ROWS", 100)
    to_upstream_form(upload(tmp_path, workbooks.workbook([b"<row/>"] * 100)), "x", XLSX, workdir)
    error = rejected(tmp_path, workdir, workbooks.workbook([b"<row/>"] * 101))
    assert error.message == "hostile.xlsx: the workbook has more than 100 rows"


def test_workbook_with_more_shared_strings_than_allowed_is_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_SHARED_STRINGS", 50)
    to_upstream_form(upload(tmp_path, workbooks.shared_strings(50)), "x.xlsx", XLSX, workdir)
    error = rejected(tmp_path, workdir, workbooks.shared_strings(51))
    assert error.message == "hostile.xlsx: the workbook has more than 50 shared strings"


def test_shared_strings_holding_more_text_than_allowed_are_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_SHARED_STRING_CHARS", 640)
    to_upstream_form(upload(tmp_path, workbooks.shared_strings(10, 64)), "x", XLSX, workdir)
    error = rejected(tmp_path, workdir, workbooks.shared_strings(11, 64))
    assert error.message == (
        "hostile.xlsx: the workbook's shared strings hold more than 640 characters"
    )


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "inline"])
def test_cell_longer_than_excel_allows_is_refused_without_reading_it_all(
    tmp_path: Path, workdir: Path, shared: bool
) -> None:
    limit = xlsx.MAX_CELL_CHARS
    form = to_upstream_form(
        upload(tmp_path, workbooks.long_cell(limit, shared=shared)), "x", XLSX, workdir
    )
    assert form.path.stat().st_size > limit
    error = rejected(tmp_path, workdir, workbooks.long_cell(limit + 1, shared=shared))
    assert f"more than {limit:,} characters" in error.message


def test_row_holding_more_text_than_allowed_is_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_ROW_CHARS", 100)
    row = b'<row><c t="s"><v>0</v></c>' + b'<c t="s"><v>0</v></c>' * 9 + b"</row>"
    content = workbooks.workbook([row], [b"<si><t>" + b"x" * 10 + b"</t></si>"])
    to_upstream_form(upload(tmp_path, content), "x.xlsx", XLSX, workdir)
    error = rejected(
        tmp_path, workdir, workbooks.workbook([row], [b"<si><t>" + b"x" * 11 + b"</t></si>"])
    )
    assert error.message == "hostile.xlsx: a row holds more than 100 characters of text"


def test_sheet_listed_many_times_counts_its_xml_each_time(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sheets = b"".join(b'<sheet name="S%d" sheetId="%d" r:id="rId1"/>' % (n, n) for n in range(50))
    content = rewrite_member(
        workbooks.workbook([b"<row>" + b"<c/>" * 1000 + b"</row>"]),
        "xl/workbook.xml",
        lambda xml: re.sub(rb"<sheet [^>]*/>", sheets, xml),
    )
    unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(content)).infolist())
    monkeypatch.setattr(convert, "MAX_UNPACKED_BYTES", unpacked + 10 * 4000)
    error = rejected(tmp_path, workdir, content)
    assert error.message.startswith("hostile.xlsx: the workbook's XML is more than ")


def test_xml_token_longer_than_allowed_is_refused(tmp_path: Path, workdir: Path) -> None:
    huge = b'<row><c r="A1" s="' + b"1" * (2 * ooxml.MAX_XML_TOKEN_BYTES) + b'"/></row>'
    error = rejected(tmp_path, workdir, workbooks.workbook([huge]))
    assert "xl/worksheets/sheet1.xml holds an XML token over 1024 KB" in error.message


def test_doctype_is_refused(tmp_path: Path, workdir: Path) -> None:
    content = rewrite_member(
        workbooks.workbook([b'<row><c t="inlineStr"><is><t>&e;</t></is></c></row>']),
        "xl/worksheets/sheet1.xml",
        lambda xml: b'<!DOCTYPE w [<!ENTITY e "x">]>' + xml,
    )
    error = rejected(tmp_path, workdir, content, status=415)
    assert error.message == "hostile.xlsx: the workbook cannot be read (WorkbookError)"


def test_workbook_whose_zip_directory_lists_too_many_entries_is_refused_unread(
    tmp_path: Path, workdir: Path
) -> None:
    content = zip_directory_only(filetypes.MAX_ZIP_ENTRIES + 1, kind="xlsx")
    error = rejected(tmp_path, workdir, content, status=415)
    assert "its ZIP directory lists" in error.message


def test_deadline_stops_a_conversion_in_its_loop(tmp_path: Path, workdir: Path) -> None:
    path = upload(tmp_path, workbooks.empty_cells(1_000_000))

    async def convert_with_a_short_deadline() -> tuple[float, AppError]:
        work = ContentWork(workers=1, per_organization=1, deadline_s=0.05)
        await work.start()
        started = time.perf_counter()
        try:
            with pytest.raises(AppError) as info:
                await work.run(
                    "org", "slow.xlsx", to_upstream_form, path, "slow.xlsx", XLSX, workdir
                )
            return time.perf_counter() - started, info.value
        finally:
            work.shutdown()

    elapsed, error = asyncio.run(convert_with_a_short_deadline())
    assert elapsed < 0.5  # the whole conversion takes ~1 s of CPU
    assert error.status == 413
    assert error.message == (
        "slow.xlsx: checking and converting the file took longer than the 0.05 s allowed per file"
    )
