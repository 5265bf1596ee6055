from __future__ import annotations

import asyncio
import codecs
import datetime
import io
import re
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont
from pydantic import ValidationError

from tests.uploads import workbooks
from tests.uploads.zips import zip_directory_only
from vectorgate.errors import AppError, ErrorCode
from vectorgate.settings import Settings
from vectorgate.testing.samples import docx_bytes, pptx_bytes, xlsx_bytes
from vectorgate.uploads import convert, filetypes, office_text, ooxml, xlsx
from vectorgate.uploads.convert import UpstreamForm, needs_conversion, to_upstream_form
from vectorgate.uploads.filetypes import (
    CSV,
    DOCX,
    HTML,
    JSON,
    KINDS,
    MARKDOWN,
    PPTX,
    PYTHON,
    TEXT,
    XLSX,
    FileKind,
    check_content,
)
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


# --- text in other encodings (SPEC 11.4) -------------------------------------------------

SPREADSHEET_CSV = "Produit;Prix;Note\r\ncafé;3,50 €;naïve\r\nthé;2 €;très “bon”\r\n"
JAPANESE = (
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした"
    "所でニャーニャー泣いていた事だけは記憶している。吾輩はここで始めて人間というものを見た。\n"
)


def test_an_encoding_to_transcode_means_conversion_for_every_kind() -> None:
    for kind in KINDS:
        assert needs_conversion(kind, (), "cp1252")
    assert not needs_conversion(PYTHON, (), None)


def test_windows_1252_csv_goes_up_as_utf8_text(tmp_path: Path, workdir: Path) -> None:
    path = upload(tmp_path, SPREADSHEET_CSV.encode("cp1252"))
    encoding = check_content(path, CSV, "prices.csv")
    form = to_upstream_form(path, "prices.csv", CSV, workdir, encoding=encoding)
    assert form.path.parent == workdir
    assert (form.filename, form.mime_type) == ("prices.csv.txt", "text/plain")
    assert form.path.read_bytes() == SPREADSHEET_CSV.encode()  # CRLF kept, no BOM
    assert path.read_bytes() == SPREADSHEET_CSV.encode("cp1252")  # the original untouched


@pytest.mark.parametrize(
    ("kind", "filename"),
    [(PYTHON, "tool.py"), (HTML, "page.htm"), (TEXT, "notes.txt"), (MARKDOWN, "a.md")],
    ids=lambda value: getattr(value, "name", value),
)
@pytest.mark.parametrize("encoding", ["shift_jis", "utf-16"])
def test_text_in_another_encoding_goes_up_as_utf8_under_its_own_name(
    tmp_path: Path, workdir: Path, kind: FileKind, filename: str, encoding: str
) -> None:
    text = ("# " + JAPANESE) * 3
    path = upload(tmp_path, text.encode(encoding))
    found = check_content(path, kind, filename)
    assert found is not None
    assert needs_conversion(kind, (), found)
    form = to_upstream_form(path, filename, kind, workdir, encoding=found)
    assert form.path.parent == workdir
    assert (form.filename, form.mime_type) == (filename, kind.mime_type)
    assert form.path.read_bytes() == text.encode()


def test_json_converted_to_text_is_transcoded_too(tmp_path: Path, workdir: Path) -> None:
    document = '{"city": "Zürich", "price": "3 €"}'
    path = upload(tmp_path, document.encode("cp1252"))
    encoding = check_content(path, JSON, "data.json")
    assert encoding == "cp1252"
    form = to_upstream_form(path, "data.json", JSON, workdir, ("json",), encoding=encoding)
    assert (form.filename, form.mime_type) == ("data.json.txt", "text/plain")
    assert form.path.read_bytes() == document.encode()


def test_transcoding_streams_a_10_mb_file_in_chunks(tmp_path: Path, workdir: Path) -> None:
    line = "café;€;naïve\n"
    text = line * (10 * filetypes.MiB // len(line))
    path = upload(tmp_path, text.encode("cp1252"))
    tracemalloc.start()
    try:
        form = to_upstream_form(path, "big.csv", CSV, workdir, encoding="cp1252")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert form.path.read_bytes() == text.encode()
    assert peak < 16 * filetypes.MiB  # a few chunks, not the 10 MB decoded whole


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


# --- DOCX, PPTX and JSON as text (VECTORGATE_CONVERT_TO_TEXT) -------------------------------

TO_TEXT = frozenset({"docx", "pptx", "json"})

_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_MC = 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
_P = 'xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"'
_A = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
_R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def office_package(parts: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        for name, content in parts.items():
            package.writestr(name, content)
    return buffer.getvalue()


def document(body: str, *, prolog: str = "") -> bytes:
    """A Word document whose body is `body` (WordprocessingML, `w:` and `mc:` prefixes)."""
    return office_package(
        {
            "_rels/.rels": (
                f'<Relationships><Relationship Id="rId1" Type="{_REL}/officeDocument" '
                'Target="word/document.xml"/></Relationships>'
            ),
            "word/document.xml": (
                f"{prolog}<w:document {_W} {_MC}><w:body>{body}</w:body></w:document>"
            ),
        }
    )


def paragraph(*runs: str, style: str | None = None) -> str:
    properties = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{properties}{''.join(f'<w:r>{run}</w:r>' for run in runs)}</w:p>"


def text(value: str) -> str:
    return f'<w:t xml:space="preserve">{value}</w:t>'


def table(*rows: list[str]) -> str:
    return (
        "<w:tbl>"
        + "".join(
            "<w:tr>" + "".join(f"<w:tc>{cell}</w:tc>" for cell in row) + "</w:tr>" for row in rows
        )
        + "</w:tbl>"
    )


def presentation(slides: dict[str, str], order: list[str], *, prolog: str = "") -> bytes:
    """A presentation of `slides` (part name -> slide body), listed in `order`."""
    relationships = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL}/slide" Target="slides/{name}"/>'
        for n, name in enumerate(slides, 2)
    )
    ids = {name: f"rId{n}" for n, name in enumerate(slides, 2)}
    listed = "".join(
        f'<p:sldId id="{256 + n}" r:id="{ids[name]}"/>' for n, name in enumerate(order)
    )
    parts: dict[str, str | bytes] = {
        "_rels/.rels": (
            f'<Relationships><Relationship Id="rId1" Type="{_REL}/officeDocument" '
            'Target="ppt/presentation.xml"/></Relationships>'
        ),
        "ppt/presentation.xml": (
            f"<p:presentation {_P} {_R}><p:sldIdLst>{listed}</p:sldIdLst></p:presentation>"
        ),
        "ppt/_rels/presentation.xml.rels": f"<Relationships>{relationships}</Relationships>",
    }
    for name, body in slides.items():
        parts[f"ppt/slides/{name}"] = (
            f"{prolog}<p:sld {_P} {_A}><p:cSld><p:spTree><p:sp><p:txBody>{body}"
            "</p:txBody></p:sp></p:spTree></p:cSld></p:sld>"
        )
    return office_package(parts)


def slide_paragraph(*runs: str) -> str:
    return "<a:p>" + "".join(f"<a:r><a:t>{run}</a:t></a:r>" for run in runs) + "</a:p>"


DOCUMENT_BODY = "".join(
    [
        paragraph(text("Quarterly report"), style="Title"),
        paragraph(text("Scope"), style="Heading2"),
        paragraph(text("Level six"), style="Heading6"),
        # Tab stops in the paragraph's properties are not tabs in its text.
        '<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>'
        "<w:r><w:t>name</w:t><w:tab/><w:t>value</w:t><w:br/><w:t>second line</w:t></w:r></w:p>",
        "<w:p/>",  # empty paragraphs write nothing
        paragraph(text("   ")),
        table(
            [paragraph(text("Name")), paragraph(text("Note"))],
            [paragraph(text("Ann")) + paragraph(text("Lee")), paragraph(text("a|b"))],
            [paragraph(text("solo"))],
        ),
        paragraph(text("Not a heading"), style="Heading7"),
        paragraph(text("runs "), text("join")),
    ]
)

DOCUMENT_MARKDOWN = """\
# Quarterly report

## Scope

###### Level six

name\tvalue
second line

| Name | Note |
| --- | --- |
| Ann<br>Lee | a\\|b |
| solo |  |

Not a heading

runs join
"""


def test_docx_becomes_markdown_with_headings_tables_tabs_and_breaks(
    tmp_path: Path, workdir: Path
) -> None:
    path = upload(tmp_path, document(DOCUMENT_BODY))
    form = to_upstream_form(path, "report.docx", DOCX, workdir, TO_TEXT)
    assert form.path.parent == workdir
    assert form.filename == "report.docx.md"
    assert form.mime_type == "text/markdown"
    assert form.path.read_text(encoding="utf-8") == DOCUMENT_MARKDOWN


def test_docx_reads_text_boxes_once_and_tables_inside_cells_as_text(
    tmp_path: Path, workdir: Path
) -> None:
    boxed = paragraph(text("inside the box"))
    body = (
        "<w:p><w:r><w:t>before</w:t></w:r><w:r><mc:AlternateContent>"
        f"<mc:Choice Requires='wps'><w:drawing><w:txbxContent>{boxed}</w:txbxContent>"
        f"</w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent>{boxed}</w:txbxContent>"
        "</w:pict></mc:Fallback></mc:AlternateContent></w:r><w:r><w:t>after</w:t></w:r></w:p>"
        + table(
            [paragraph(text("outer")), table([paragraph(text("in")), paragraph(text("ner"))])],
        )
        + paragraph(
            text("old style history"),
            style="Heading1",
        ).replace(
            "</w:pPr>",
            '<w:pPrChange><w:pPr><w:pStyle w:val="Normal"/></w:pPr></w:pPrChange></w:pPr>',
        )
    )
    form = to_upstream_form(upload(tmp_path, document(body)), "x.docx", DOCX, workdir, TO_TEXT)
    assert form.path.read_text() == (
        "before\ninside the box\nafter\n\n| outer | in<br>ner |\n| --- | --- |\n\n"
        "# old style history\n"
    )


def test_docx_without_text_says_so(tmp_path: Path, workdir: Path) -> None:
    form = to_upstream_form(upload(tmp_path, docx_bytes("")), "x.docx", DOCX, workdir, TO_TEXT)
    assert form.path.read_text() == "_(empty document)_\n"
    form = to_upstream_form(upload(tmp_path, docx_bytes("plain")), "x.docx", DOCX, workdir, TO_TEXT)
    assert form.path.read_text() == "plain\n"


def test_pptx_slides_follow_the_presentation_order_not_file_names(
    tmp_path: Path, workdir: Path
) -> None:
    content = presentation(
        {
            "slide1.xml": slide_paragraph("Hello", " world")
            + "<a:p/>"
            + "<a:p><a:r><a:t>Line</a:t></a:r><a:br/><a:r><a:t>two</a:t></a:r></a:p>",
            "slide2.xml": slide_paragraph("Listed first"),
            "slide3.xml": "",
        },
        order=["slide2.xml", "slide1.xml", "slide3.xml"],
    )
    form = to_upstream_form(upload(tmp_path, content), "deck.pptx", PPTX, workdir, TO_TEXT)
    assert form.path.parent == workdir
    assert form.filename == "deck.pptx.md"
    assert form.mime_type == "text/markdown"
    assert form.path.read_text(encoding="utf-8") == (
        "## Slide 1\n\nListed first\n\n## Slide 2\n\nHello world\nLine\ntwo\n\n## Slide 3\n\n"
    )


def test_pptx_skips_fallback_content_and_reads_unicode(tmp_path: Path, workdir: Path) -> None:
    body = (
        "<mc:AlternateContent><mc:Choice>"
        + slide_paragraph("Grüße 😀")
        + "</mc:Choice><mc:Fallback>"
        + slide_paragraph("Grüße 😀")
        + "</mc:Fallback></mc:AlternateContent>"
    )
    content = presentation({"slide1.xml": body}, order=["slide1.xml"])
    form = to_upstream_form(upload(tmp_path, content), "x.pptx", PPTX, workdir, TO_TEXT)
    assert form.path.read_bytes() == "## Slide 1\n\nGrüße 😀\n".encode()


def test_presentation_without_slides_says_so(tmp_path: Path, workdir: Path) -> None:
    form = to_upstream_form(upload(tmp_path, pptx_bytes()), "x.pptx", PPTX, workdir, TO_TEXT)
    assert form.path.read_text() == "_(empty presentation)_\n"


def test_json_goes_up_as_the_same_file_named_as_text(tmp_path: Path, workdir: Path) -> None:
    path = upload(tmp_path, b'{"a": [1, 2]}')
    assert to_upstream_form(path, "data.json", JSON, workdir, TO_TEXT) == UpstreamForm(
        path, "data.json.txt", "text/plain"
    )
    assert list(workdir.iterdir()) == []
    assert not needs_conversion(JSON, TO_TEXT)  # no work: the request skips the worker


@pytest.mark.parametrize("kind", [DOCX, PPTX, JSON], ids=lambda kind: kind.name)
def test_without_the_setting_docx_pptx_and_json_go_up_unchanged(
    tmp_path: Path, workdir: Path, kind: FileKind
) -> None:
    path = upload(tmp_path, b"content")
    others = TO_TEXT - {kind.name}
    assert to_upstream_form(path, "name.ext", kind, workdir, others) == UpstreamForm(
        path, "name.ext", kind.mime_type
    )
    assert not needs_conversion(kind, others)


def test_docx_and_pptx_need_conversion_when_configured() -> None:
    assert needs_conversion(DOCX, TO_TEXT)
    assert needs_conversion(PPTX, TO_TEXT)
    assert not needs_conversion(DOCX)


def hostile(tmp_path: Path, workdir: Path, content: bytes, kind: FileKind) -> AppError:
    name = f"hostile.{kind.name}"
    with pytest.raises(AppError) as info:
        to_upstream_form(upload(tmp_path, content), name, kind, workdir, TO_TEXT)
    assert info.value.details["filename"] == name
    return info.value


DOCTYPE = '<!DOCTYPE x [<!ENTITY e "boom">]>'


@pytest.mark.parametrize(
    ("kind", "content", "what", "error"),
    [
        (DOCX, document(paragraph(text("&e;")), prolog=DOCTYPE), "document", "DocumentError"),
        (
            PPTX,
            presentation({"s.xml": slide_paragraph("&e;")}, ["s.xml"], prolog=DOCTYPE),
            "presentation",
            "PresentationError",
        ),
    ],
    ids=["docx", "pptx"],
)
def test_doctype_in_a_document_or_slide_is_refused(
    tmp_path: Path, workdir: Path, kind: FileKind, content: bytes, what: str, error: str
) -> None:
    refused = hostile(tmp_path, workdir, content, kind)
    assert refused.status == 415
    assert refused.code is ErrorCode.UNSUPPORTED_FILE_TYPE
    assert refused.message == f"hostile.{kind.name}: the {what} cannot be read ({error})"
    assert refused.details["mime_type"] == kind.mime_type


@pytest.mark.parametrize("kind", [DOCX, PPTX], ids=lambda kind: kind.name)
def test_content_that_is_not_a_package_is_refused(
    tmp_path: Path, workdir: Path, kind: FileKind
) -> None:
    refused = hostile(tmp_path, workdir, b"PK\x03\x04 but no ZIP after all", kind)
    assert refused.status == 415
    assert refused.message.endswith("cannot be read (BadZipFile)")


def test_presentation_whose_main_part_is_not_one_is_refused(tmp_path: Path, workdir: Path) -> None:
    content = rewrite_member(
        presentation({"s.xml": ""}, ["s.xml"]), "ppt/presentation.xml", lambda _: b"<w:document/>"
    )
    refused = hostile(tmp_path, workdir, content, PPTX)
    assert refused.status == 415
    assert refused.message == "hostile.pptx: the presentation cannot be read (PresentationError)"


@pytest.mark.parametrize(
    ("kind", "content", "converted"),
    [
        (DOCX, document(DOCUMENT_BODY), DOCUMENT_MARKDOWN),
        (PPTX, presentation({"s.xml": slide_paragraph("x")}, ["s.xml"]), "## Slide 1\n\nx\n"),
    ],
    ids=["docx", "pptx"],
)
def test_conversion_past_the_output_cap_is_413(
    tmp_path: Path,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: FileKind,
    content: bytes,
    converted: str,
) -> None:
    monkeypatch.setattr(convert, "MAX_CONVERTED_BYTES", len(converted.encode()) - 1)
    refused = hostile(tmp_path, workdir, content, kind)
    assert refused.status == 413
    assert refused.code is ErrorCode.FILE_TOO_LARGE
    assert refused.message.startswith(f"hostile.{kind.name}: converts to more than ")
    monkeypatch.setattr(convert, "MAX_CONVERTED_BYTES", len(converted.encode()))
    form = to_upstream_form(upload(tmp_path, content), "x", kind, workdir, TO_TEXT)
    assert form.path.read_text() == converted


def test_document_with_more_elements_than_allowed_is_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(office_text, "MAX_ELEMENTS", 1000)
    # The document, its body and 998 elements; then one more.
    to_upstream_form(upload(tmp_path, document("<w:p/>" * 998)), "x", DOCX, workdir, TO_TEXT)
    refused = hostile(tmp_path, workdir, document("<w:p/>" * 999), DOCX)
    assert refused.status == 413
    assert refused.message == "hostile.docx: the document has more than 1,000 XML elements"


def test_paragraph_or_row_holding_more_text_than_allowed_is_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(office_text, "MAX_BLOCK_CHARS", 100)
    to_upstream_form(
        upload(tmp_path, document(paragraph(*[text("x" * 10)] * 10))), "x", DOCX, workdir, TO_TEXT
    )
    refused = hostile(
        tmp_path, workdir, document(paragraph(*[text("x" * 10)] * 10, text("y"))), DOCX
    )
    assert refused.message == "hostile.docx: a paragraph holds more than 100 characters of text"
    cells = [paragraph(text("x" * 60))] * 2
    refused = hostile(tmp_path, workdir, document(table(cells)), DOCX)
    assert refused.message == "hostile.docx: a table row holds more than 100 characters of text"


def test_slide_listed_many_times_counts_its_xml_each_time(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = presentation({"s.xml": "<a:p/>" * 2000}, ["s.xml"] * 50)
    unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(content)).infolist())
    monkeypatch.setattr(convert, "MAX_UNPACKED_BYTES", unpacked + 10 * 12_000)
    refused = hostile(tmp_path, workdir, content, PPTX)
    assert refused.status == 413
    assert refused.message.startswith("hostile.pptx: the presentation's XML is more than ")


def test_convert_to_text_setting_takes_known_kinds_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTORGATE_CONVERT_TO_TEXT", " DOCX, pptx,json ")
    assert Settings(_env_file=None).convert_to_text == ["docx", "pptx", "json"]
    monkeypatch.setenv("VECTORGATE_CONVERT_TO_TEXT", "")
    assert Settings(_env_file=None).convert_to_text == []
    monkeypatch.setenv("VECTORGATE_CONVERT_TO_TEXT", "docx,pdf,xlsx")
    with pytest.raises(ValidationError, match="cannot convert pdf, xlsx to text"):
        Settings(_env_file=None)


def test_presentation_elements_count_the_slide_list_too(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(office_text, "MAX_ELEMENTS", 1000)
    content = rewrite_member(
        presentation({"s.xml": ""}, ["s.xml"]),
        "ppt/presentation.xml",
        lambda xml: xml.replace(b"</p:presentation>", b"<x/>" * 1000 + b"</p:presentation>"),
    )
    refused = hostile(tmp_path, workdir, content, PPTX)
    assert refused.message == "hostile.pptx: the presentation has more than 1,000 XML elements"


def test_deadline_stops_a_document_conversion_in_its_loop(tmp_path: Path, workdir: Path) -> None:
    path = upload(tmp_path, document("<w:p/>" * 1_000_000))

    async def convert_with_a_short_deadline() -> tuple[float, AppError]:
        work = ContentWork(workers=1, per_organization=1, deadline_s=0.05)
        await work.start()
        started = time.perf_counter()
        try:
            with pytest.raises(AppError) as info:
                await work.run(
                    "org", "slow.docx", to_upstream_form, path, "slow.docx", DOCX, workdir, TO_TEXT
                )
            return time.perf_counter() - started, info.value
        finally:
            work.shutdown()

    elapsed, error = asyncio.run(convert_with_a_short_deadline())
    assert elapsed < 0.5  # the whole conversion takes ~1 s of CPU
    assert error.status == 413
    assert error.message == (
        "slow.docx: checking and converting the file took longer than the 0.05 s allowed per file"
    )


@pytest.mark.parametrize("kind", [DOCX, PPTX], ids=lambda kind: kind.name)
def test_elements_nested_deeper_than_allowed_are_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, kind: FileKind
) -> None:
    monkeypatch.setattr(ooxml, "MAX_DEPTH", 50)

    def nested(levels: int) -> bytes:
        if kind is DOCX:  # within the document and its body
            return document("<w:p>" * levels + "</w:p>" * levels)
        # within the slide, its tree, its shape and the shape's text
        slide = "<a:p>" * levels + "</a:p>" * levels
        return presentation({"s.xml": slide}, ["s.xml"])

    root = 2 if kind is DOCX else 5
    to_upstream_form(upload(tmp_path, nested(50 - root)), "x", kind, workdir, TO_TEXT)
    refused = hostile(tmp_path, workdir, nested(51 - root), kind)
    assert refused.status == 413
    assert refused.message == (
        f"hostile.{kind.name}: the {'document' if kind is DOCX else 'presentation'} "
        "nests XML elements more than 50 deep"
    )


@pytest.mark.parametrize("part", ["xl/worksheets/sheet1.xml", "xl/workbook.xml"])
def test_workbook_parts_nesting_deeper_than_allowed_are_refused(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, part: str
) -> None:
    # A 29 KB workbook nesting 4M elements in a sheet took 437 MiB and 4 s before.
    monkeypatch.setattr(ooxml, "MAX_DEPTH", 50)
    content = rewrite_member(
        workbooks.workbook([b"<row/>"]),
        part,
        lambda xml: re.sub(rb"(</\w+>)$", b"<x>" * 50 + b"</x>" * 50 + rb"\1", xml.rstrip()),
    )
    error = rejected(tmp_path, workdir, content)
    assert error.message == "hostile.xlsx: the workbook nests XML elements more than 50 deep"
    assert error.details["max_depth"] == 50
