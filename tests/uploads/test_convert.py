from __future__ import annotations

import codecs
import datetime
import io
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from vectorgate.errors import AppError, ErrorCode
from vectorgate.testing.samples import docx_bytes, xlsx_bytes
from vectorgate.uploads import convert
from vectorgate.uploads.convert import UpstreamForm, to_upstream_form
from vectorgate.uploads.filetypes import CSV, KINDS, XLSX, FileKind, check_content


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


def test_openpyxl_warning_about_a_foreign_workbook_does_not_stop_conversion(
    tmp_path: Path, workdir: Path
) -> None:
    content = rewrite_member(
        xlsx_bytes({"S": [["a", 1]]}),
        "xl/styles.xml",
        lambda _: (
            b'<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>'
        ),
    )
    path = upload(tmp_path, content)
    with pytest.warns(UserWarning, match="no stylesheet"):
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
    monkeypatch.setattr(convert, "XLSX_MAX_UNPACKED_BYTES", unpacked - 1)
    path = upload(tmp_path, content)
    with pytest.raises(AppError) as info:
        to_upstream_form(path, "bomb.xlsx", XLSX, workdir)
    assert info.value.status == 413
    assert info.value.code is ErrorCode.FILE_TOO_LARGE
    assert info.value.message.startswith(f"bomb.xlsx: unpacks to {unpacked} bytes")
    monkeypatch.setattr(convert, "XLSX_MAX_UNPACKED_BYTES", unpacked)
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
