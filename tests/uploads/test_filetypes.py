from __future__ import annotations

import codecs
import io
import pickle
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.uploads.zips import zip_directory_only
from vectorgate.errors import AppError, ErrorCode
from vectorgate.testing.samples import docx_bytes, pdf_bytes, pptx_bytes, write_pdf, xlsx_bytes
from vectorgate.uploads import filetypes
from vectorgate.uploads.filetypes import (
    CHUNK_SIZE,
    CSV,
    DOCX,
    JSON,
    KINDS,
    MARKDOWN,
    MAX_FILE_BYTES,
    PDF,
    PPTX,
    TEXT,
    XLSX,
    FileKind,
    MiB,
    check_content,
    check_size,
    kind_for,
)

WriteFile = Callable[[bytes], Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteFile:
    def write(content: bytes) -> Path:
        path = tmp_path / "upload"
        path.write_bytes(content)
        return path

    return write


def rejected(status: int, call: Callable[[], object]) -> AppError:
    with pytest.raises(AppError) as info:
        call()
    assert info.value.status == status, info.value.message
    return info.value


# --- the table ---------------------------------------------------------------------------


def test_kinds_are_exactly_the_spec_table() -> None:
    table = {(k.name, k.mime_type, k.extensions, k.max_bytes // MiB) for k in KINDS}
    assert table == {
        ("pdf", "application/pdf", (".pdf",), 50),
        ("text", "text/plain", (".txt",), 10),
        ("markdown", "text/markdown", (".md", ".markdown"), 10),
        ("csv", "text/csv", (".csv",), 10),
        ("json", "application/json", (".json",), 10),
        (
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            (".docx",),
            50,
        ),
        (
            "pptx",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            (".pptx",),
            50,
        ),
        (
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            (".xlsx",),
            50,
        ),
    }
    assert MAX_FILE_BYTES == 50 * MiB


# --- kind_for ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "extension"), [(kind, ext) for kind in KINDS for ext in kind.extensions]
)
def test_each_kind_resolves_from_its_mime_type_and_extension(
    kind: FileKind, extension: str
) -> None:
    assert kind_for(f"file{extension}", kind.mime_type, infer_generic=False) is kind


def test_mime_case_and_parameters_and_extension_case_are_ignored() -> None:
    assert kind_for("NOTES.TXT", "Text/Plain; charset=UTF-8", infer_generic=False) is TEXT
    assert kind_for("Report.Pdf", " application/PDF ", infer_generic=False) is PDF


@pytest.mark.parametrize(
    "filename", ["virus.exe", "README", "archive.tar.gz", "notes.txt.", "x.doc"]
)
def test_unknown_or_missing_extension_is_rejected(filename: str) -> None:
    error = rejected(415, lambda: kind_for(filename, "application/pdf", infer_generic=True))
    assert error.code is ErrorCode.UNSUPPORTED_FILE_TYPE
    assert error.message.startswith(f"{filename}: file type not allowed")
    assert ".pdf" in error.message  # tells the client what is allowed
    assert error.details["filename"] == filename


@pytest.mark.parametrize(
    "declared", ["image/png", "application/zip", "text/html", "application/msword"]
)
def test_declared_type_outside_the_table_is_rejected(declared: str) -> None:
    error = rejected(415, lambda: kind_for("document.pdf", declared, infer_generic=True))
    assert error.message == f"document.pdf: declared type {declared} is not allowed"


def test_text_declared_as_pdf_is_rejected() -> None:
    error = rejected(415, lambda: kind_for("notes.txt", "application/pdf", infer_generic=True))
    assert error.message == (
        "notes.txt: declared application/pdf but the extension .txt is for text/plain"
    )
    assert error.details == {
        "filename": "notes.txt",
        "extension": ".txt",
        "mime_type": "application/pdf",
    }


@pytest.mark.parametrize(
    ("filename", "declared"),
    [
        ("slides.pptx", DOCX.mime_type),
        ("book.xlsx", PPTX.mime_type),
        ("data.json", CSV.mime_type),
        ("report.docx", "application/pdf"),
        ("notes.md", "application/json"),
    ],
)
def test_declared_type_and_extension_that_disagree_are_rejected(
    filename: str, declared: str
) -> None:
    rejected(415, lambda: kind_for(filename, declared, infer_generic=True))


@pytest.mark.parametrize(
    ("filename", "declared", "kind"),
    [
        ("notes.md", "text/x-markdown", MARKDOWN),
        ("notes.markdown", "text/x-markdown", MARKDOWN),
        ("data.csv", "application/csv", CSV),
        ("data.csv", "text/x-csv", CSV),
        ("data.csv", "application/vnd.ms-excel", CSV),
        ("data.json", "text/json", JSON),
        ("data.json", "application/x-json", JSON),
        ("paper.pdf", "application/x-pdf", PDF),
    ],
)
def test_aliases_that_clients_send_are_accepted(
    filename: str, declared: str, kind: FileKind
) -> None:
    assert kind_for(filename, declared, infer_generic=False) is kind


def test_ms_excel_alias_is_accepted_only_for_csv() -> None:
    rejected(415, lambda: kind_for("book.xlsx", "application/vnd.ms-excel", infer_generic=True))


@pytest.mark.parametrize(
    ("filename", "kind"),
    [("notes.md", MARKDOWN), ("notes.markdown", MARKDOWN), ("data.csv", CSV), ("data.json", JSON)],
)
def test_text_plain_is_accepted_for_text_based_kinds(filename: str, kind: FileKind) -> None:
    assert kind_for(filename, "text/plain; charset=utf-8", infer_generic=False) is kind


@pytest.mark.parametrize("filename", ["paper.pdf", "report.docx", "book.xlsx"])
def test_text_plain_is_rejected_for_binary_kinds(filename: str) -> None:
    rejected(415, lambda: kind_for(filename, "text/plain", infer_generic=True))


@pytest.mark.parametrize(
    "declared", [None, "", "  ", "application/octet-stream", "Application/Octet-Stream; x=1"]
)
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_generic_type_is_inferred_from_the_extension_on_multipart(
    declared: str | None, kind: FileKind
) -> None:
    assert kind_for(f"file{kind.extensions[0]}", declared, infer_generic=True) is kind


@pytest.mark.parametrize("declared", [None, "", "application/octet-stream"])
def test_generic_type_is_rejected_when_inference_is_off(declared: str | None) -> None:
    error = rejected(415, lambda: kind_for("document.pdf", declared, infer_generic=False))
    assert "send the file's type (application/pdf)" in error.message


def test_generic_type_does_not_rescue_an_unknown_extension() -> None:
    rejected(415, lambda: kind_for("setup.exe", "application/octet-stream", infer_generic=True))


# --- check_size --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_size_of_exactly_the_limit_is_accepted(kind: FileKind) -> None:
    check_size(kind, kind.max_bytes, "file")


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_one_byte_over_the_limit_is_too_large(kind: FileKind) -> None:
    error = rejected(413, lambda: check_size(kind, kind.max_bytes + 1, "big.file"))
    assert error.code is ErrorCode.FILE_TOO_LARGE
    assert error.message.startswith("big.file: ")
    assert error.details == {
        "filename": "big.file",
        "max_bytes": kind.max_bytes,
        "size": kind.max_bytes + 1,
    }


# --- check_content -----------------------------------------------------------------------

GOOD_CONTENT: dict[FileKind, bytes] = {
    PDF: pdf_bytes(),
    TEXT: "plain text, naïve café ☕\n".encode(),
    MARKDOWN: b"# Title\n\n- item\n",
    CSV: b"name,count\r\nann,3\r\n",
    JSON: b'{"a": [1, 2.5, null, "\xc3\xa9"]}',
    DOCX: docx_bytes(),
    PPTX: pptx_bytes(),
    XLSX: xlsx_bytes({"Sheet": [["a", 1]]}),
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_every_kind_is_accepted_with_good_content(write: WriteFile, kind: FileKind) -> None:
    check_content(write(GOOD_CONTENT[kind]), kind, "file")


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_empty_file_is_a_bad_request_for_every_kind(write: WriteFile, kind: FileKind) -> None:
    error = rejected(400, lambda: check_content(write(b""), kind, "empty.bin"))
    assert error.message == "empty.bin: file is empty"


@pytest.mark.parametrize("kind", [TEXT, MARKDOWN, CSV, JSON], ids=lambda kind: kind.name)
@pytest.mark.parametrize(
    "bom", [codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE], ids=["utf8", "le", "be"]
)
def test_text_file_holding_only_a_bom_is_empty(
    write: WriteFile, kind: FileKind, bom: bytes
) -> None:
    error = rejected(400, lambda: check_content(write(bom), kind, "bom.csv"))
    assert error.message == "bom.csv: file is empty"


def test_pdf_of_exactly_the_limit_is_accepted_and_one_byte_more_is_too_large(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.pdf"
    write_pdf(path, PDF.max_bytes)
    assert path.stat().st_size == PDF.max_bytes
    check_content(path, PDF, "big.pdf")
    write_pdf(path, PDF.max_bytes + 1)
    rejected(413, lambda: check_content(path, PDF, "big.pdf"))


def test_text_of_exactly_the_limit_is_accepted_and_one_byte_more_is_too_large(
    write: WriteFile,
) -> None:
    content = ("a" * (TEXT.max_bytes - 3) + "☕").encode()
    check_content(write(content), TEXT, "big.txt")
    rejected(413, lambda: check_content(write(content + b"\n"), TEXT, "big.txt"))


def test_sample_pdf_builders_make_exactly_the_requested_size(tmp_path: Path) -> None:
    path = tmp_path / "sample.pdf"
    write_pdf(path, 3 * MiB + 5)
    assert path.read_bytes() == pdf_bytes(3 * MiB + 5)
    assert len(pdf_bytes(17)) == 17
    with pytest.raises(ValueError, match="at least 17 bytes"):
        pdf_bytes(16)


@pytest.mark.parametrize(
    "content", [b"plain text", b" %PDF-1.4 leading space", docx_bytes(), b"%PDF"]
)
def test_pdf_whose_content_is_not_a_pdf_is_rejected(write: WriteFile, content: bytes) -> None:
    error = rejected(415, lambda: check_content(write(content), PDF, "document.pdf"))
    assert error.message == "document.pdf: the content is not a PDF (no %PDF- header)"
    assert error.details == {"filename": "document.pdf", "mime_type": "application/pdf"}


def with_central_directory_patch(package: bytes, field_offset: int, value: bytes) -> bytes:
    """`package` with one field of its first central directory entry overwritten."""
    at = package.index(b"PK\x01\x02") + field_offset
    return package[:at] + value + package[at + len(value) :]


@pytest.mark.parametrize("kind", [DOCX, PPTX, XLSX], ids=lambda kind: kind.name)
@pytest.mark.parametrize(
    "content",
    [
        pdf_bytes(),
        b"PK\x03\x04 truncated zip",
        docx_bytes()[:-30],
        with_central_directory_patch(docx_bytes(), 6, (99).to_bytes(2, "little")),
        # Flag bit 11 says the name is UTF-8; then make its first byte invalid UTF-8.
        with_central_directory_patch(
            with_central_directory_patch(docx_bytes(), 8, (0x800).to_bytes(2, "little")),
            46,
            b"\xff",
        ),
    ],
    ids=["pdf", "truncated-header", "truncated-directory", "zip-version-9.9", "bad-utf8-name"],
)
def test_office_file_that_is_not_a_readable_zip_is_rejected(
    write: WriteFile, kind: FileKind, content: bytes
) -> None:
    error = rejected(415, lambda: check_content(write(content), kind, "file"))
    assert error.message == (
        f"file: the content is not a {kind.name.upper()} package (not a readable ZIP file)"
    )


@pytest.mark.parametrize(
    ("kind", "content", "missing"),
    [
        (DOCX, pptx_bytes(), "word/document.xml"),
        (PPTX, xlsx_bytes({"S": [[1]]}), "ppt/presentation.xml"),
        (XLSX, docx_bytes(), "xl/workbook.xml"),
    ],
    ids=["pptx-as-docx", "xlsx-as-pptx", "docx-as-xlsx"],
)
def test_office_package_without_its_main_part_is_rejected(
    write: WriteFile, kind: FileKind, content: bytes, missing: str
) -> None:
    error = rejected(415, lambda: check_content(write(content), kind, "file"))
    assert error.message.endswith(f"(no {missing})")


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        for name, data in members.items():
            package.writestr(name, data)
    return buffer.getvalue()


def test_office_package_without_content_types_is_rejected(write: WriteFile) -> None:
    content = zip_of({"word/document.xml": b"<w:document/>"})
    error = rejected(415, lambda: check_content(write(content), DOCX, "report.docx"))
    assert (
        error.message == "report.docx: the content is not a DOCX package (no [Content_Types].xml)"
    )


def test_office_check_reads_only_the_zip_directory(write: WriteFile) -> None:
    # A member whose data is garbage would fail if inflated; the check never inflates.
    content = bytearray(docx_bytes())
    data_at = content.index(b"word/document.xml") + len("word/document.xml")
    content[data_at : data_at + 20] = b"\xff" * 20
    path = write(bytes(content))
    with zipfile.ZipFile(path) as package, pytest.raises((zipfile.BadZipFile, zlib.error)):
        package.read("word/document.xml")
    check_content(path, DOCX, "report.docx")


@pytest.mark.parametrize("kind", [TEXT, MARKDOWN, CSV, JSON], ids=lambda kind: kind.name)
def test_text_with_a_nul_character_is_rejected(write: WriteFile, kind: FileKind) -> None:
    error = rejected(415, lambda: check_content(write(b'"a\x00b"'), kind, "file"))
    assert error.message == "file: the content contains a NUL character, so it is not text"


@pytest.mark.parametrize("kind", [TEXT, MARKDOWN, CSV, JSON], ids=lambda kind: kind.name)
@pytest.mark.parametrize(
    "content",
    [b'"caf\xe9"', b'"\xc3"', b'"\xed\xa0\x80"', b'"\xf8\x88\x80\x80\x80"', docx_bytes()],
    ids=["latin-1", "truncated", "surrogate", "five-byte", "binary"],
)
def test_text_that_is_not_utf8_is_rejected(
    write: WriteFile, kind: FileKind, content: bytes
) -> None:
    error = rejected(415, lambda: check_content(write(content), kind, "file"))
    assert error.message.startswith("file: the content ")


def test_invalid_utf8_message_gives_the_byte_offset(write: WriteFile) -> None:
    error = rejected(415, lambda: check_content(write(b"caf\xe9 au lait"), TEXT, "menu.txt"))
    assert error.message == "menu.txt: the content is not valid UTF-8 text (bad byte at offset 3)"


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
@pytest.mark.parametrize("kind", [TEXT, MARKDOWN, CSV, JSON], ids=lambda kind: kind.name)
def test_utf8_with_or_without_bom_is_accepted(write: WriteFile, kind: FileKind, bom: bytes) -> None:
    check_content(write(bom + '{"k": "日本語"}'.encode()), kind, "file")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("kind", [TEXT, MARKDOWN, CSV, JSON], ids=lambda kind: kind.name)
def test_utf16_with_bom_is_accepted(write: WriteFile, kind: FileKind, encoding: str) -> None:
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    check_content(write(bom + '{"k": "日本語 😀"}'.encode(encoding)), kind, "file")


def test_utf16_without_bom_is_rejected(write: WriteFile) -> None:
    # Without a BOM it is read as UTF-8, and ASCII in UTF-16 is full of NUL bytes.
    rejected(415, lambda: check_content(write("hello".encode("utf-16-le")), TEXT, "file"))


@pytest.mark.parametrize(
    "content",
    [
        codecs.BOM_UTF16_LE + "hello".encode("utf-16-le") + b"h",  # odd length
        codecs.BOM_UTF16_LE + "\ud800".encode("utf-16-le", "surrogatepass") + b"a\x00",
    ],
    ids=["odd-length", "lone-surrogate"],
)
def test_broken_utf16_is_rejected(write: WriteFile, content: bytes) -> None:
    error = rejected(415, lambda: check_content(write(content), TEXT, "file"))
    assert "not valid UTF-16 text" in error.message


@pytest.mark.parametrize(
    ("char", "bytes_before_boundary"),
    [(char, n) for char in ("é", "日", "😀") for n in range(1, len(char.encode()))],
)
def test_valid_multibyte_character_across_the_chunk_boundary_is_accepted(
    write: WriteFile, char: str, bytes_before_boundary: int
) -> None:
    content = b"a" * (CHUNK_SIZE - bytes_before_boundary) + char.encode() + b"z"
    check_content(write(content), TEXT, "file")


@pytest.mark.parametrize("bytes_before_boundary", [1, 2, 3])
def test_invalid_multibyte_sequence_across_the_chunk_boundary_is_rejected(
    write: WriteFile, bytes_before_boundary: int
) -> None:
    # "😀" cut short: its first bytes before the boundary, then a byte that cannot continue it.
    lead = "😀".encode()[:bytes_before_boundary]
    content = b"a" * (CHUNK_SIZE - bytes_before_boundary) + lead + b"z"
    error = rejected(415, lambda: check_content(write(content), TEXT, "file"))
    offset = CHUNK_SIZE - bytes_before_boundary
    assert (
        error.message == f"file: the content is not valid UTF-8 text (bad byte at offset {offset})"
    )


def test_utf16_surrogate_pair_across_the_chunk_boundary_is_accepted(write: WriteFile) -> None:
    # BOM (2) + ASCII, so that the 4 bytes of the pair start 2 bytes before the boundary.
    content = codecs.BOM_UTF16_LE + "a".encode("utf-16-le") * ((CHUNK_SIZE - 4) // 2)
    content += "😀z".encode("utf-16-le")
    assert len(content) - 6 == CHUNK_SIZE - 2
    check_content(write(content), TEXT, "file")


def test_nul_after_the_first_chunk_is_rejected(write: WriteFile) -> None:
    content = b"a" * (CHUNK_SIZE + 10) + b"\x00"
    rejected(415, lambda: check_content(write(content), TEXT, "file"))


@pytest.mark.parametrize(
    "content",
    [b"{", b"{'a': 1}", b"[1, 2,]", b"   ", b'{"a": 1} trailing'],
)
def test_json_that_does_not_parse_is_rejected(write: WriteFile, content: bytes) -> None:
    error = rejected(415, lambda: check_content(write(content), JSON, "data.json"))
    assert error.message.startswith("data.json: the content is not valid JSON (")


def test_json_parse_error_says_what_is_wrong(write: WriteFile) -> None:
    error = rejected(415, lambda: check_content(write(b'{\n"a": 1,\n}'), JSON, "data.json"))
    assert error.message == (
        "data.json: the content is not valid JSON "
        "(parse error: invalid object key (must be a string))"
    )


def test_json_checked_only_as_json_not_as_other_text_kinds(write: WriteFile) -> None:
    check_content(write(b"{not json"), TEXT, "notes.txt")
    check_content(write(b"{not json"), CSV, "data.csv")


def test_json_spread_over_several_chunks_is_parsed_whole(write: WriteFile) -> None:
    content = b'{"k": "' + b"x" * (2 * CHUNK_SIZE) + b'"}'
    check_content(write(content), JSON, "data.json")


def test_json_with_a_long_integer_is_accepted_up_to_python_s_digit_limit(
    write: WriteFile,
) -> None:
    check_content(write(b"[" + b"7" * 4300 + b", 1." + b"7" * 5000 + b"]"), JSON, "data.json")
    error = rejected(415, lambda: check_content(write(b"[" + b"7" * 4301 + b"]"), JSON, "n.json"))
    assert error.message == (
        "n.json: the JSON holds a number too long to check (over 4,300 digits)"
    )


@pytest.mark.parametrize(
    "content",
    [b"NaN", b"[1, NaN]", b'{"a": Infinity}', b"[-Infinity]"],
)
def test_json_constants_that_are_not_json_are_rejected(write: WriteFile, content: bytes) -> None:
    error = rejected(415, lambda: check_content(write(content), JSON, "data.json"))
    assert error.message.startswith("data.json: the content is not valid JSON (")


def test_utf16_json_is_checked_as_json(write: WriteFile) -> None:
    check_content(write(codecs.BOM_UTF16_LE + '{"a": "é"}'.encode("utf-16-le")), JSON, "d.json")
    content = codecs.BOM_UTF16_BE + '{"a": NaN}'.encode("utf-16-be")
    rejected(415, lambda: check_content(write(content), JSON, "d.json"))


def test_json_of_many_small_strings_is_checked_in_flat_memory(write: WriteFile) -> None:
    # 2 MiB, as tracemalloc slows the parse tenfold; the e2e test runs the full 10 MiB.
    content = b"[" + b",".join([b'"ab"'] * (2 * MiB // 5)) + b"]"
    path = write(content)
    tracemalloc.start()
    try:
        check_content(path, JSON, "many.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A chunk read and its decoded text in flight; json.loads took 24 MB for this file.
    assert peak < 4 * MiB


def test_json_nested_as_deep_as_allowed_is_accepted(write: WriteFile) -> None:
    depth = filetypes.MAX_JSON_DEPTH
    check_content(write(b"[" * depth + b"]" * depth), JSON, "deep.json")
    error = rejected(
        415, lambda: check_content(write(b"[" * (depth + 1) + b"]" * (depth + 1)), JSON, "d.json")
    )
    assert error.message == "d.json: the JSON is nested too deeply to check"


def test_json_nested_deeper_than_the_parser_can_go_is_rejected(write: WriteFile) -> None:
    content = b"[" * 100_000 + b"]" * 100_000
    error = rejected(415, lambda: check_content(write(content), JSON, "deep.json"))
    assert error.message == "deep.json: the JSON is nested too deeply to check"


# --- ZIP directories ----------------------------------------------------------------------


@pytest.mark.parametrize("zip64", [False, True], ids=["zip32", "zip64"])
def test_zip_directory_with_more_entries_than_an_office_file_has_is_refused_unread(
    write: WriteFile, zip64: bool
) -> None:
    limit = filetypes.MAX_ZIP_ENTRIES
    check_content(write(zip_directory_only(limit, zip64=zip64)), DOCX, "ok.docx")
    path = write(zip_directory_only(limit + 1, zip64=zip64))
    error = rejected(415, lambda: check_content(path, DOCX, "many.docx"))
    assert error.message == (
        f"many.docx: the content is not a DOCX package (its ZIP directory lists {limit + 1} "
        f"entries; an Office file has at most {limit})"
    )


def test_zip_directory_of_900k_entries_is_refused_quickly_in_little_memory(
    write: WriteFile,
) -> None:
    path = write(zip_directory_only(900_000))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        rejected(415, lambda: check_content(path, DOCX, "huge.docx"))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5  # zipfile took ~7 s
    assert peak < MiB  # and 514 MiB


def test_zip_directory_larger_than_allowed_is_refused(
    write: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = zip_directory_only(100)
    directory_bytes = len(content) - 22
    monkeypatch.setattr(filetypes, "MAX_ZIP_DIRECTORY_BYTES", directory_bytes - 1)
    error = rejected(415, lambda: check_content(write(content), DOCX, "big.docx"))
    assert f"its ZIP directory is {directory_bytes} bytes" in error.message
    monkeypatch.setattr(filetypes, "MAX_ZIP_DIRECTORY_BYTES", directory_bytes)
    check_content(write(content), DOCX, "big.docx")


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_kind_sent_to_a_worker_process_is_the_same_object(kind: FileKind) -> None:
    assert pickle.loads(pickle.dumps(kind)) is kind


def test_only_small_files_are_cheap_to_check() -> None:
    assert filetypes.cheap_to_check(TEXT, 64 * 1024)
    assert not filetypes.cheap_to_check(TEXT, 64 * 1024 + 1)
    assert filetypes.cheap_to_check(JSON, 4 * 1024)
    assert not filetypes.cheap_to_check(JSON, 4 * 1024 + 1)
    assert not filetypes.cheap_to_check(DOCX, 4 * 1024 + 1)
