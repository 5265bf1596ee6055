from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.filenames import clean_filename, parse_content_disposition


def rejected(call: Callable[[], object]) -> AppError:
    with pytest.raises(AppError) as info:
        call()
    assert info.value.status == 400, info.value.message
    assert info.value.code is ErrorCode.INVALID_REQUEST
    return info.value


# --- clean_filename ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "résumé 日本語.pdf",
        "  spaced  name (1) [final] #2 & co.pdf",
        "no-extension",
        "Ünïcödé—ñame…😀.md",
        "a%22b.pdf",
        "C:drive-relative.pdf",
        ".hidden.txt",
        "...pdf",
    ],
)
def test_names_are_kept_exactly(name: str) -> None:
    assert clean_filename(name) == name


def test_decomposed_name_is_composed_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "résumé.pdf")
    assert decomposed != "résumé.pdf"
    assert clean_filename(decomposed) == "résumé.pdf"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("dir/sub/report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\x.pdf", "x.pdf"),
        ("C:\\Users\\me\\My Documents\\a.pdf", "a.pdf"),
        ("/absolute/a.pdf", "a.pdf"),
        ("\\\\server\\share\\a.pdf", "a.pdf"),
        ("mixed/..\\dir/a.pdf", "a.pdf"),
    ],
)
def test_path_parts_are_stripped(raw: str, name: str) -> None:
    assert clean_filename(raw) == name


@pytest.mark.parametrize("raw", ["", "dir/", "a\\", ".", "..", "x/..", "x\\."])
def test_empty_or_dot_names_are_rejected(raw: str) -> None:
    error = rejected(lambda: clean_filename(raw))
    assert error.message.startswith("Invalid filename '")


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\x00", "U+0000"),
        ("\r", "U+000D"),
        ("\n", "U+000A"),
        ("\t", "U+0009"),
        ("\x7f", "U+007F"),
        ("\x85", "U+0085"),
        ("\u202e", "U+202E"),
        ("\u202a", "U+202A"),
        ("\u2066", "U+2066"),
        ("\u2069", "U+2069"),
        ("\u200e", "U+200E"),
        ("\u200f", "U+200F"),
        ("\ud800", "U+D800"),
    ],
)
def test_control_bidi_and_surrogate_characters_are_rejected(char: str, code: str) -> None:
    error = rejected(lambda: clean_filename(f"invoice{char}fdp.exe"))
    assert error.message == (
        f"Invalid filename 'invoice\\u{code[2:].lower()}fdp.exe': "
        f"it contains the forbidden character {code}"
    )


def test_right_to_left_override_disguising_an_extension_is_rejected() -> None:
    rejected(lambda: clean_filename("invoice\u202efdp.exe"))


def test_name_of_255_utf8_bytes_is_accepted_and_256_rejected() -> None:
    name = "é" * 125 + "a.pdf"  # 250 + 5 bytes, 130 characters
    assert len(name.encode()) == 255
    assert clean_filename(name) == name
    error = rejected(lambda: clean_filename("x" + name))
    assert "is 256 bytes long in UTF-8; at most 255" in error.message


def test_length_limit_applies_after_stripping_the_path() -> None:
    assert clean_filename("d" * 300 + "/a.pdf") == "a.pdf"


def test_huge_name_is_not_echoed_whole() -> None:
    name = "a" * 10_000 + ".pdf"
    error = rejected(lambda: clean_filename(name))
    assert len(error.message) < 200
    assert "(10004 characters)" in error.message
    assert len(error.details["filename"]) < 100


@given(st.text())
def test_cleaning_yields_a_safe_single_component_or_a_400(raw: str) -> None:
    try:
        name = clean_filename(raw)
    except AppError as error:
        status = error.status
    else:
        assert name not in ("", ".", "..")
        assert "/" not in name
        assert "\\" not in name
        assert unicodedata.is_normalized("NFC", name)
        assert len(name.encode()) <= 255
        assert clean_filename(name) == name
        return
    assert status == 400


# --- parse_content_disposition -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b'form-data; name="files"; filename="a.pdf"', ("files", "a.pdf")),
        (b"form-data; name=files; filename=a.pdf", ("files", "a.pdf")),
        (b'form-data ; NAME = "files" ; FileName = "a.pdf" ;', ("files", "a.pdf")),
        (b'form-data; name="files"', ("files", None)),
        (b'form-data; name="files"; filename=""', ("files", "")),
        (b"form-data", (None, None)),
        (b'form-data; filename="a.pdf"', (None, "a.pdf")),
        (b'form-data; name="files"; flag; filename="a.pdf"', ("files", "a.pdf")),
    ],
)
def test_name_and_filename_are_read(header: bytes, expected: tuple[str | None, str | None]) -> None:
    assert parse_content_disposition(header) == expected


def test_raw_utf8_filename_is_decoded() -> None:
    header = 'form-data; name="files"; filename="résumé 日本語.pdf"'.encode()
    assert parse_content_disposition(header) == ("files", "résumé 日本語.pdf")


@pytest.mark.parametrize(
    "param",
    [
        b"filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf",
        b"filename*=utf-8'en'r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf",
        b"FILENAME*=\"UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf\"",
    ],
)
def test_rfc5987_filename_is_decoded(param: bytes) -> None:
    header = b'form-data; name="files"; ' + param
    assert parse_content_disposition(header) == ("files", "résumé 日本語.pdf")


def test_rfc5987_latin1_filename_is_decoded() -> None:
    header = b"form-data; name=files; filename*=ISO-8859-1''r%E9sum%E9.pdf"
    assert parse_content_disposition(header) == ("files", "résumé.pdf")


@pytest.mark.parametrize(
    "header",
    [
        b"form-data; name=files; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        b"form-data; name=files; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; filename=\"resume.pdf\"",
    ],
)
def test_rfc5987_filename_wins_over_plain_filename(header: bytes) -> None:
    assert parse_content_disposition(header) == ("files", "résumé.pdf")


@pytest.mark.parametrize(
    ("quoted", "filename"),
    [
        (rb'"say \"hi\".pdf"', 'say "hi".pdf'),
        (rb'"back\\slash.pdf"', "back\\slash.pdf"),
        (rb'"semi;colon.pdf"', "semi;colon.pdf"),
        (rb'"C:\Users\me\a.pdf"', "C:\\Users\\me\\a.pdf"),
        (rb'"a%22b%0Ac.pdf"', "a%22b%0Ac.pdf"),
        (rb'"  spaced  .pdf"', "  spaced  .pdf"),
    ],
)
def test_quoted_filename_escapes(quoted: bytes, filename: str) -> None:
    assert parse_content_disposition(b"form-data; name=files; filename=" + quoted) == (
        "files",
        filename,
    )


def test_windows_path_from_an_old_browser_cleans_to_its_last_part() -> None:
    _, raw = parse_content_disposition(rb'form-data; name=files; filename="C:\docs\a.pdf"')
    assert raw is not None
    assert clean_filename(raw) == "a.pdf"


def test_unknown_extended_parameter_is_ignored() -> None:
    header = b"form-data; name=files; other*=bogus; filename=a.pdf"
    assert parse_content_disposition(header) == ("files", "a.pdf")


def test_header_that_is_not_utf8_is_rejected() -> None:
    error = rejected(lambda: parse_content_disposition(b'form-data; filename="r\xe9sum\xe9.pdf"'))
    assert error.message == "Malformed multipart body: Content-Disposition is not UTF-8"


@pytest.mark.parametrize(
    "header",
    [
        b"form-data; filename*=UTF-8''r%E9sum%E9.pdf",  # latin-1 bytes under utf-8
        b"form-data; filename*=windows-1252''a.pdf",
        b"form-data; filename*=a.pdf",
    ],
)
def test_bad_rfc5987_filename_is_rejected(header: bytes) -> None:
    error = rejected(lambda: parse_content_disposition(header))
    assert error.message.startswith("Malformed multipart body: ")


@pytest.mark.parametrize(
    "header",
    [
        b'form-data; filename="unterminated.pdf',
        b'form-data; filename="a.pdf"junk',
        b"form-data; =x",
    ],
)
def test_unparseable_header_is_rejected(header: bytes) -> None:
    error = rejected(lambda: parse_content_disposition(header))
    assert error.message.startswith("Malformed multipart body: cannot parse Content-Disposition")


@pytest.mark.parametrize(
    "header",
    [
        b"form-data; filename=a" + b" " * 16_000 + b'"',
        b"form-data; a" + b" " * 16_000 + b'"',
        b"form-data; a = " + b" " * 16_000 + b'"',
        b"form-data; " + b"a;" * 8_000,
    ],
)
def test_long_header_is_handled_in_linear_time(header: bytes) -> None:
    # Client input: a backtracking pattern would take seconds on these.
    started = time.perf_counter()
    try:
        parse_content_disposition(header)
    except AppError:
        pass
    assert time.perf_counter() - started < 0.5
