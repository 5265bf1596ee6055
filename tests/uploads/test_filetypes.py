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
    CPP,
    CSHARP,
    CSS,
    CSV,
    DOCX,
    GO,
    HTML,
    JAVA,
    JAVASCRIPT,
    JSON,
    KINDS,
    MARKDOWN,
    MAX_FILE_BYTES,
    PDF,
    PHP,
    PPTX,
    PYTHON,
    RUBY,
    SHELL,
    SOURCE_KINDS,
    TEX,
    TEXT,
    TEXT_KINDS,
    TYPESCRIPT,
    XLSX,
    C,
    FileKind,
    MiB,
    NotCheap,
    cheap_to_check,
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
        # SPEC 11.4
        ("html", "text/html", (".html", ".htm"), 10),
        ("css", "text/css", (".css",), 10),
        ("javascript", "text/javascript", (".js", ".mjs"), 10),
        ("typescript", "application/typescript", (".ts",), 10),
        ("python", "text/x-python", (".py",), 10),
        ("java", "text/x-java", (".java",), 10),
        ("c", "text/x-c", (".c", ".h"), 10),
        ("cpp", "text/x-c++", (".cpp", ".hpp", ".cc"), 10),
        ("csharp", "text/x-csharp", (".cs",), 10),
        ("go", "text/x-golang", (".go",), 10),
        ("ruby", "text/x-ruby", (".rb",), 10),
        ("php", "text/x-php", (".php",), 10),
        ("shell", "application/x-sh", (".sh",), 10),
        ("tex", "text/x-tex", (".tex",), 10),
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
    "declared", ["image/png", "application/zip", "text/xml", "application/msword"]
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
    HTML: "<!doctype html>\n<p>naïve café</p>\n".encode(),
    CSS: b"body { margin: 0; }\n",
    JAVASCRIPT: b"export const x = () => 1;\n",
    TYPESCRIPT: b"const n: number = 1;\n",
    PYTHON: "def f():\n\treturn 'é'\n".encode(),
    JAVA: b"class A { }\n",
    C: b"int main(void) { return 0; }\n",
    CPP: b"#include <vector>\n",
    CSHARP: b"class A { }\n",
    GO: b"package main\n",
    RUBY: b"puts 'hi'\n",
    PHP: b"<?php echo 1;\n",
    SHELL: b"#!/bin/sh\necho hi\n",
    TEX: b"\\documentclass{article}\n\f\n",
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
    "broken",
    [b"\xe9t\xe9", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"],
    ids=["latin-1", "truncated", "surrogate", "five-byte"],
)
def test_broken_utf8_after_utf8_characters_is_rejected(
    write: WriteFile, kind: FileKind, broken: bytes
) -> None:
    # UTF-8 characters before the bad byte say the file is UTF-8: it is not read as
    # Windows-1252 (which would turn each of them into mojibake).
    content = '"naïve '.encode() + broken + b'"'
    error = rejected(415, lambda: check_content(write(content), kind, "file"))
    assert error.message == "file: the content is not valid UTF-8 text (bad byte at offset 8)"


@pytest.mark.parametrize("kind", [TEXT, MARKDOWN, CSV, JSON], ids=lambda kind: kind.name)
def test_binary_declared_as_text_is_rejected(write: WriteFile, kind: FileKind) -> None:
    error = rejected(415, lambda: check_content(write(docx_bytes()), kind, "file"))
    assert error.code is ErrorCode.UNSUPPORTED_FILE_TYPE
    # Its first bytes happen to be UTF-8 or not, which decides the message; 415 either way.
    assert error.message.startswith(
        ("file: the text is not UTF-8 and its encoding", "file: the content is not valid UTF-8")
    )


def test_invalid_utf8_message_gives_the_byte_offset(write: WriteFile) -> None:
    content = "crème caf".encode() + b"\xe9 au lait"
    error = rejected(415, lambda: check_content(write(content), TEXT, "menu.txt"))
    assert error.message == "menu.txt: the content is not valid UTF-8 text (bad byte at offset 10)"


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
    # The "é" first makes it UTF-8 text (else it would be read as Windows-1252).
    lead = "😀".encode()[:bytes_before_boundary]
    content = "é".encode() + b"a" * (CHUNK_SIZE - bytes_before_boundary - 2) + lead + b"z"
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


# --- SPEC 11.4: more text types ------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "declared", "kind"),
    [
        ("app.js", "application/javascript", JAVASCRIPT),
        ("mod.mjs", "text/javascript", JAVASCRIPT),
        ("app.ts", "text/x-typescript", TYPESCRIPT),
        ("tool.py", "text/x-script.python", PYTHON),
        ("run.sh", "text/x-sh", SHELL),
        ("page.htm", "text/html; charset=windows-1252", HTML),
        ("lib.h", "text/x-c", C),
        ("lib.hpp", "text/x-c++", CPP),
        ("lib.cc", "text/x-c++", CPP),
    ],
)
def test_source_kinds_accept_each_of_their_mime_types(
    filename: str, declared: str, kind: FileKind
) -> None:
    assert kind_for(filename, declared, infer_generic=False) is kind


@pytest.mark.parametrize("kind", SOURCE_KINDS, ids=lambda kind: kind.name)
def test_text_plain_is_accepted_for_every_source_kind(kind: FileKind) -> None:
    for extension in kind.extensions:
        assert kind_for(f"file{extension}", "text/plain", infer_generic=False) is kind


@pytest.mark.parametrize(
    ("filename", "declared"),
    [
        ("tool.py", "text/x-java"),
        ("lib.c", "text/x-c++"),
        ("app.ts", "text/javascript"),
        ("page.html", "text/markdown"),
        ("notes.txt", "text/x-python"),
        ("run.sh", "application/pdf"),
    ],
)
def test_source_kind_declared_as_another_kind_is_rejected(filename: str, declared: str) -> None:
    error = rejected(415, lambda: kind_for(filename, declared, infer_generic=True))
    assert "but the extension" in error.message


@pytest.mark.parametrize("kind", SOURCE_KINDS, ids=lambda kind: kind.name)
def test_source_kind_with_a_nul_character_is_rejected(write: WriteFile, kind: FileKind) -> None:
    error = rejected(415, lambda: check_content(write(b"x = 1\x00\n"), kind, "file"))
    assert error.message == "file: the content contains a NUL character, so it is not text"


def test_every_text_kind_is_cheap_to_check_when_small_except_json() -> None:
    assert {k for k in KINDS if cheap_to_check(k, 64 * 1024)} == TEXT_KINDS - {JSON}
    assert not cheap_to_check(PYTHON, 64 * 1024 + 1)


# --- SPEC 11.4: encodings ------------------------------------------------------------------

# Realistic lengths: a paragraph or two, as a short document holds.
JAPANESE = (
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした"
    "所でニャーニャー泣いていた事だけは記憶している。吾輩はここで始めて人間というものを見た。\n"
)
SIMPLIFIED_CHINESE = (
    "中华人民共和国是工人阶级领导的、以工农联盟为基础的人民民主专政的社会主义国家。"
    "社会主义制度是中华人民共和国的根本制度。禁止任何组织或者个人破坏社会主义制度。\n"
)
TRADITIONAL_CHINESE = (
    "中華民國基於三民主義，為民有民治民享之民主共和國。人民有言論、講學、著作及出版之自由。"
    "人民有秘密通訊之自由。人民有信仰宗教之自由。人民有集會及結社之自由。\n"
)
KOREAN = (
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 "
    "나온다. 모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다.\n"
)
SPREADSHEET_CSV = "Produit;Prix;Note\r\ncafé;3,50 €;naïve\r\nthé;2 €;très “bon”\r\n"


@pytest.mark.parametrize(
    ("text", "encoding", "codec"),
    [
        (JAPANESE, "shift_jis", "cp932"),
        (JAPANESE, "cp932", "cp932"),
        (SIMPLIFIED_CHINESE, "gb18030", "gb18030"),
        (SIMPLIFIED_CHINESE, "gbk", "gb18030"),
        (TRADITIONAL_CHINESE, "big5", "cp950"),
        (KOREAN, "euc_kr", "cp949"),
    ],
)
@pytest.mark.parametrize("kind", [TEXT, MARKDOWN, PYTHON], ids=lambda kind: kind.name)
def test_east_asian_text_is_detected_and_decodes_in_its_codec(
    write: WriteFile, kind: FileKind, text: str, encoding: str, codec: str
) -> None:
    content = ("# " + text + "\n") * 3
    found = check_content(write(content.encode(encoding)), kind, "file")
    assert found == codec
    assert content.encode(encoding).decode(codec) == content


def test_windows_1252_csv_from_a_spreadsheet_is_accepted_as_windows_1252(
    write: WriteFile,
) -> None:
    path = write(SPREADSHEET_CSV.encode("cp1252"))
    assert check_content(path, CSV, "prices.csv") == "cp1252"


@pytest.mark.parametrize("kind", sorted(TEXT_KINDS, key=lambda k: k.name), ids=lambda k: k.name)
def test_every_text_kind_reads_windows_1252(write: WriteFile, kind: FileKind) -> None:
    content = '"café; € naïve"' if kind is JSON else "café; € naïve\n"
    assert check_content(write(content.encode("cp1252")), kind, "file") == "cp1252"


def test_windows_1252_json_must_still_parse(write: WriteFile) -> None:
    error = rejected(415, lambda: check_content(write('{"a": "café"'.encode("cp1252")), JSON, "x"))
    assert error.message.startswith("x: the content is not valid JSON")


def test_json_in_shift_jis_is_checked_as_json(write: WriteFile) -> None:
    # 0x5C (a backslash in ASCII) is the second byte of ソ: the JSON is read decoded.
    document = '{"text": "' + JAPANESE.strip() + 'ソース"}'
    assert check_content(write(document.encode("cp932")), JSON, "x.json") == "cp932"


@pytest.mark.parametrize(
    "content",
    [b"price: 3\x81 each\n", b"caf\xe9 \x8d\n", b"\x8f\x90\x9d"],
    ids=["0x81", "0x8d", "0x8f-0x90-0x9d"],
)
def test_undefined_windows_1252_byte_without_a_confident_detection_is_rejected(
    write: WriteFile, content: bytes
) -> None:
    error = rejected(415, lambda: check_content(write(content), CSV, "x.csv"))
    assert error.code is ErrorCode.UNSUPPORTED_FILE_TYPE
    assert error.message.startswith(
        "x.csv: the text is not UTF-8 and its encoding could not be detected with confidence"
    )
    assert "is not Windows-1252 either" in error.message


@pytest.mark.parametrize("control", [b"\x01", b"\x0b", b"\x1b", b"\x7f"])
def test_windows_1252_text_with_a_control_character_is_rejected(
    write: WriteFile, control: bytes
) -> None:
    error = rejected(415, lambda: check_content(write(b"caf\xe9" + control), TEXT, "x"))
    assert error.message.endswith("so it is not text")


def test_windows_1252_text_keeps_tab_cr_lf_and_form_feed(write: WriteFile) -> None:
    assert check_content(write(b"a\tcaf\xe9\r\n\x0cb"), TEXT, "x") == "cp1252"


def test_windows_1252_text_with_a_nul_is_rejected(write: WriteFile) -> None:
    error = rejected(415, lambda: check_content(write(b"caf\xe9\x00"), TEXT, "x"))
    assert error.message == "x: the content contains a NUL character, so it is not text"


def test_random_bytes_declared_as_text_are_rejected(write: WriteFile) -> None:
    noise = bytes((i * 7919 + 13) % 256 for i in range(64 * 1024))  # every byte value
    rejected(415, lambda: check_content(write(noise), TEXT, "noise.txt"))


def test_utf8_and_utf16_say_whether_to_transcode(write: WriteFile) -> None:
    assert check_content(write("naïve".encode()), TEXT, "x") is None
    assert check_content(write(codecs.BOM_UTF8 + "naïve".encode()), TEXT, "x") is None
    assert check_content(write("naïve".encode("utf-16")), PYTHON, "x") == "utf-16"


def test_utf8_bom_with_a_bad_byte_is_not_read_as_windows_1252(write: WriteFile) -> None:
    error = rejected(415, lambda: check_content(write(codecs.BOM_UTF8 + b"caf\xe9"), TEXT, "x"))
    assert error.message == "x: the content is not valid UTF-8 text (bad byte at offset 6)"


def test_quick_check_hands_text_in_a_legacy_encoding_on(write: WriteFile) -> None:
    path = write(JAPANESE.encode("cp932"))
    with pytest.raises(NotCheap):
        check_content(path, TEXT, "x", quick=True)
    assert check_content(write(b"plain"), TEXT, "x", quick=True) is None


def test_east_asian_text_after_megabytes_of_ascii_is_detected(write: WriteFile) -> None:
    # The detector samples where the text stops being UTF-8, not the file's start.
    content = b"a" * (3 * CHUNK_SIZE + 5) + b"\n" + (JAPANESE * 5).encode("cp932")
    assert check_content(write(content), TEXT, "x") == "cp932"


def test_multibyte_candidate_that_does_not_decode_falls_back_to_windows_1252(
    write: WriteFile,
) -> None:
    # Korean the detector is sure of, then a byte pair no Korean codec has: Windows-1252
    # reads every byte of it, so that is what the file is taken for.
    content = (KOREAN * 3).encode("euc_kr") + b"\xff\x20"
    assert check_content(write(content), TEXT, "x") == "cp1252"


def test_detection_of_a_10_mb_worst_case_stays_in_budget(write: WriteFile) -> None:
    # ASCII up to the end, then Japanese, then a byte neither Shift_JIS nor Windows-1252
    # has: every pass reads (nearly) the whole file before the 415.
    tail = (JAPANESE * 60).encode("cp932")
    content = b"a" * (10 * MiB - len(tail) - 2) + tail + b"\x81 "
    path = write(content)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        rejected(415, lambda: check_content(path, TEXT, "x"))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 5  # ~0.1 s measured; generous for a loaded machine
    assert peak < 8 * MiB  # chunks and one sample, never the whole file


def test_control_character_in_the_detected_encoding_rules_out_that_encoding(
    write: WriteFile,
) -> None:
    # cp932 reads 0x80 as the control U+0080: not Shift_JIS, so Windows-1252 is tried
    # (where 0x80 is the euro sign), which the Japanese text's 0x81 bytes then rule out.
    content = (JAPANESE * 3).encode("cp932") + b"price: 5\x80\n"
    error = rejected(415, lambda: check_content(write(content), TEXT, "x"))
    assert "could not be detected with confidence" in error.message
