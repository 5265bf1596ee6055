"""The streaming base64 JSON intake, fed directly: JSON and base64 rules, limits, memory.

The property tests are differential: a generated body (random key order, whitespace,
escapes, line-broken base64, data URLs, unknown keys with nested values) must give the
same files as `json.loads` + `base64.b64decode` of the same bytes, however it is cut
into chunks; a content string made of pieces of every kind (escapes, whitespace, bad
characters) must decode the same or fail with the matching code; a damaged body must
give an AppError and nothing else, or, when accepted, what `json.loads` gives.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import string
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vectorgate.errors import AppError
from vectorgate.testing import samples
from vectorgate.uploads.base64_json import (
    MAX_IGNORED_BYTES,
    MAX_IGNORED_TOKENS,
    STEPS_PER_SLICE,
    receive_base64_json,
)
from vectorgate.uploads.filenames import clean_filename
from vectorgate.uploads.staging import StagedFile

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024
HYPOTHESIS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# --- feeding ----------------------------------------------------------------------


async def chunked(body: bytes, cuts: Iterable[int] = ()) -> AsyncIterator[bytes]:
    """`body` cut at the given offsets."""
    start = 0
    for cut in sorted(set(cuts)):
        if start < cut < len(body):
            yield body[start:cut]
            start = cut
    yield body[start:]


async def receive(
    body: bytes,
    workdir: Path,
    *,
    cuts: Iterable[int] = (),
    max_files: int = 10,
    max_body_bytes: int = 200 * MiB,
) -> list[StagedFile]:
    return await receive_base64_json(
        chunked(body, cuts), workdir, max_files=max_files, max_body_bytes=max_body_bytes
    )


async def receive_in(
    body: bytes, *, cuts: Iterable[int] = (), max_files: int = 10
) -> list[tuple[str, bytes]]:
    """Names and contents received, in a temp dir of its own (for hypothesis tests)."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = await receive(body, Path(tmp), cuts=cuts, max_files=max_files)
        return [(s.filename, s.path.read_bytes()) for s in staged]


async def refusal(
    body: bytes, workdir: Path, *, cuts: Iterable[int] = (), max_body_bytes: int = 200 * MiB
) -> AppError:
    workdir.mkdir(parents=True, exist_ok=True)
    with pytest.raises(AppError) as caught:
        await receive(body, workdir, cuts=cuts, max_body_bytes=max_body_bytes)
    return caught.value


def every_cut(body: bytes) -> range:
    return range(1, len(body))


# --- the reference: json.loads + base64.b64decode ---------------------------------


def oracle(body: bytes) -> list[tuple[str, bytes]]:
    """What the intake must produce for `body`, computed the slow, obvious way.

    `strict=False` lets raw control characters into strings: the intake tolerates raw
    tabs and line breaks inside `content` (and explicit tests show it refuses them
    elsewhere).
    """
    document = json.loads(body.decode("utf-8-sig"), strict=False)
    return [
        (clean_filename(entry["filename"]), reference_decode(entry["content"]))
        for entry in document["files"]
    ]


def reference_decode(content: str) -> bytes:
    text = re.sub(r"[ \t\n\r]", "", content)
    if text[:5].lower() == "data:":
        head, comma, text = text.partition(",")
        if not comma or not head.lower().endswith(";base64"):
            raise ValueError("not a base64 data URL")
    if len(text) % 4:  # b64decode lets an extra '=' pass: "QUJD=" gives b"ABC"
        raise ValueError("not a whole number of quanta")
    data = text.rstrip("=")
    if len(text) - len(data) > 2:  # and a whole quantum of it: "QUJD====" gives b"ABC"
        raise ValueError("more than two '=' of padding")
    return base64.b64decode(text.encode("ascii"), validate=True)


def is_json(body: bytes) -> bool:
    """Valid JSON, but for raw control characters in strings (see `oracle`)."""
    try:
        json.loads(body.decode("utf-8-sig"), strict=False)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        return False
    return True


# --- writing bodies with random, valid JSON spellings ------------------------------

WHITESPACE = ["", "", " ", "\n", "\t", "\r\n", "  \n  "]
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
SHORT_ESCAPES["\t"] = "\\t"


def u_escape(code: int, rnd: random.Random) -> str:
    text = f"\\u{code:04x}"
    return text.upper().replace("\\U", "\\u") if rnd.random() < 0.5 else text


def json_char(ch: str, rnd: random.Random) -> str:
    """`ch` as it may appear in a JSON string, picked at random among the valid ways."""
    code = ord(ch)
    ways = []
    if ch not in '"\\' and code >= 0x20:
        ways.append(ch)
    if ch in SHORT_ESCAPES:
        ways.append(SHORT_ESCAPES[ch])
    if ch == "/":
        ways.append("\\/")
    if code < 0x10000:
        ways.append(u_escape(code, rnd))
    else:
        code -= 0x10000
        ways.append(u_escape(0xD800 + (code >> 10), rnd) + u_escape(0xDC00 + (code & 0x3FF), rnd))
    return rnd.choice(ways)


def json_string(text: str, rnd: random.Random | None = None) -> str:
    if rnd is None:
        return json.dumps(text, ensure_ascii=False)
    return '"' + "".join(json_char(ch, rnd) for ch in text) + '"'


def json_object(members: list[tuple[str, str]], rnd: random.Random) -> str:
    def ws() -> str:
        return rnd.choice(WHITESPACE)

    inner = f"{ws()},{ws()}".join(f"{key}{ws()}:{ws()}{value}" for key, value in members)
    return "{" + ws() + inner + ws() + "}"


def base64_literal(data: bytes, rnd: random.Random) -> str:
    """`data` as a JSON string of base64 the ways clients send it: line breaks,
    stray whitespace, escaped slashes, other escapes, a data URL head."""
    text = base64.b64encode(data).decode("ascii")
    if rnd.random() < 0.3:
        text = (
            rnd.choice(["data:", "DATA:"])
            + "text/plain;"
            + rnd.choice(["base64,", "Base64,"])
            + text
        )
    line = rnd.choice([None, None, 4, 64, 76, rnd.randint(1, 80)])
    # Escaped, or raw as when a shell pastes `base64` output into the JSON.
    line_break = rnd.choice(["\\n", "\\r\\n", " ", "\\t", "\\u000A", "\n", "\r\n"])
    stray_whitespace = rnd.choice([0.0, 0.0, 0.05])
    # Some encoders escape every '/' (PHP), '+' (.NET) or '=' (Gson).
    always = {
        "/": rnd.choice([None, "\\/", "\\u002F", "\\u002f"]),
        "+": rnd.choice([None, None, "\\u002B", "\\u002b"]),
        "=": rnd.choice([None, None, "\\u003D", "\\u003d"]),
    }
    other_escapes = rnd.choice([0.0, 0.0, 0.02])
    out = []
    for i, ch in enumerate(text):
        if line and i and i % line == 0:
            out.append(line_break)
        if rnd.random() < stray_whitespace:
            out.append(rnd.choice([" ", "\\n", "\\r", "\\t", "\\u0020", "\\u0009"]))
        escaped = always.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif rnd.random() < other_escapes:
            out.append(u_escape(ord(ch), rnd))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# Unknown keys may hold any JSON value; these are nested a little.
junk_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def junk_literal(value: object, rnd: random.Random) -> str:
    return json.dumps(
        value,
        ensure_ascii=rnd.random() < 0.5,
        indent=rnd.choice([None, None, 0, 2]),
        separators=rnd.choice([None, (",", ":"), (" , ", " : ")]),
    )


TYPES = [
    (".txt", "text/plain"),
    (".TXT", "text/plain"),
    (".md", "text/markdown"),
    (".md", "text/plain"),
    (".csv", "text/csv"),
    (".pdf", "application/pdf"),
]
# Characters a kept filename may hold (clean_filename refuses controls and bidi marks).
name_chars = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Cs"),
    exclude_characters="\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)
text_contents = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=200
).map(str.encode)
pdf_contents = st.binary(max_size=400).map(lambda tail: b"%PDF-1.7\n" + tail)


@dataclass(frozen=True)
class Upload:
    filename: str
    mime_type: str
    content: bytes


@st.composite
def uploads(draw: st.DrawFn) -> Upload:
    extension, mime_type = draw(st.sampled_from(TYPES))
    stem = draw(st.text(name_chars, max_size=30))
    content = draw(pdf_contents if extension == ".pdf" else text_contents)
    return Upload(stem + extension, mime_type, content)


@st.composite
def bodies(draw: st.DrawFn, max_uploads: int = 3) -> tuple[bytes, list[Upload]]:
    """A valid body in a random spelling, and the uploads it carries."""
    files = draw(st.lists(uploads(), min_size=1, max_size=max_uploads))
    rnd = draw(st.randoms(use_true_random=False))

    def junk_members(known: set[str]) -> list[tuple[str, str]]:
        keys = draw(st.lists(st.text(max_size=8).filter(lambda k: k not in known), max_size=2))
        return [(json_string(k, rnd), junk_literal(draw(junk_values), rnd)) for k in keys]

    entries = []
    for upload in files:
        members = [
            (json_string("filename", rnd), json_string(upload.filename, rnd)),
            (json_string("mime_type", rnd), json_string(upload.mime_type, rnd)),
            (json_string("content", rnd), base64_literal(upload.content, rnd)),
            *junk_members({"filename", "mime_type", "content"}),
        ]
        rnd.shuffle(members)
        entries.append(json_object(members, rnd))
    files_array = "[" + rnd.choice(WHITESPACE) + ",".join(entries) + rnd.choice(WHITESPACE) + "]"
    top = [(json_string("files", rnd), files_array), *junk_members({"files"})]
    rnd.shuffle(top)
    text = rnd.choice(WHITESPACE) + json_object(top, rnd)
    return text.encode("utf-8"), files


def cut_points(body: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(body)), max_size=12)


# --- property tests ---------------------------------------------------------------


@settings(HYPOTHESIS, max_examples=150)
@given(st.data())
async def test_any_spelling_and_any_chunking_gives_what_json_loads_gives(
    data: st.DataObject,
) -> None:
    body, files = data.draw(bodies())
    cuts = data.draw(cut_points(body))
    received = await receive_in(body, cuts=cuts)
    assert received == oracle(body)
    assert received == [(clean_filename(f.filename), f.content) for f in files]


@settings(HYPOTHESIS, max_examples=150)
@given(st.data())
async def test_damaged_bodies_are_refused_with_an_app_error(data: st.DataObject) -> None:
    body, _ = data.draw(bodies(max_uploads=2))
    damaged = bytearray(body)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(body) - 1))
        damaged[position] = data.draw(
            st.sampled_from(b'{}[]:,"\\ \n\x00\x1fu/=A+\x80\xc3\xe2\xff') | st.integers(0, 255)
        )
    damaged_body = bytes(damaged)
    cuts = data.draw(cut_points(damaged_body))
    error: AppError | None = None
    try:
        received = await receive_in(damaged_body, cuts=cuts)
    except AppError as caught:
        error = caught
    if error is not None:
        # A 415 or 413 may come first even when the JSON is broken further on: types
        # and sizes are checked as soon as they are known, before the body has ended.
        assert error.status in (400, 413, 415)
    else:
        # Accepted: then it is valid JSON of the schema, and the files are its files.
        assert is_json(damaged_body)
        assert received == oracle(damaged_body)


# Pieces of content strings: base64, every kind of whitespace and escape, and things
# that are invalid base64 (a backslash, an accent, an emoji) or invalid JSON (a raw
# control character, a bad escape).
CONTENT_PIECES = [
    *["QUJD", "QUI=", "QQ==", "A", "/", "+", "="],
    *[" ", "\\n", "\\r\\n", "\\t", "\\u0020", "\\u000a", "\\u000D", "\n", "\r\n", "\t"],
    *["\\/", "\\u002B", "\\u002b", "\\u002F", "\\u003D", "\\u0041", "\\u007a"],
    *["\\\\", '\\"', "\\b", "\\f", "\\u005c", "\\u0022", "\\u00e9", "é", "\\ud83d\\ude00", "!"],
    *["\x01", "\x0b", "\\x", "\\u12G4", "\\"],
]


@settings(HYPOTHESIS, max_examples=300)
@given(st.lists(st.sampled_from(CONTENT_PIECES), max_size=24), st.data())
async def test_content_strings_decode_like_json_loads_then_b64decode(
    pieces: list[str], data: st.DataObject
) -> None:
    # "JVBERi0x" is "%PDF-1": whatever follows, a decodable content passes as a PDF.
    content = "JVBERi0x" + "".join(pieces)
    member = f'{{"filename": "a.pdf", "mime_type": "application/pdf", "content": "{content}"}}'
    body = f'{{"files": [{member}]}}'.encode()
    raw_controls = {ch for ch in content if ord(ch) < 0x20} - set("\t\n\r")
    try:
        value = json.loads(body, strict=False)["files"][0]["content"]
    except ValueError:
        value = None
    error: AppError | None = None
    try:
        received = await receive_in(body, cuts=data.draw(cut_points(body)))
    except AppError as caught:
        error = caught
    if value is None or raw_controls:
        assert error is not None
        assert (error.status, error.code) == (400, "INVALID_REQUEST")
        return
    try:
        expected = reference_decode(value)
    except ValueError:  # binascii.Error, UnicodeEncodeError
        assert error is not None
        assert (error.status, error.code) == (400, "INVALID_BASE64")
    else:
        assert error is None, error
        assert received == [("a.pdf", expected)]


@pytest.mark.parametrize("content", ["JVBERi0x====", "JVBERi0x\\u003D\\u003D\\u003D\\u003D"])
async def test_a_whole_quantum_of_padding_is_invalid_base64(content: str) -> None:
    """Found by the property above: `b64decode` accepts "JVBERi0x====", the rule does not."""
    member = f'{{"filename": "a.pdf", "mime_type": "application/pdf", "content": "{content}"}}'
    with pytest.raises(AppError) as caught:
        await receive_in(f'{{"files": [{member}]}}'.encode())
    assert (caught.value.status, caught.value.code) == (400, "INVALID_BASE64")


@settings(HYPOTHESIS, max_examples=15)
@given(bodies(max_uploads=1))
async def test_every_truncation_is_a_400(drawn: tuple[bytes, list[Upload]]) -> None:
    body, _ = drawn
    for end in range(len(body)):
        with pytest.raises(AppError) as caught:
            await receive_in(body[:end])
        assert caught.value.status == 400, (end, caught.value)


# A small body using every feature at once, for the exhaustive tests below.
SMALL_BODY = (
    b'\xef\xbb\xbf {"note": [1, -2.5e3, true, null, {"a": "\\u00e9\\"\\\\"}], "files": [\n'
    b'  {"content": "data:text\\/plain;base64,aMOp\\nbGxv\\r\\nIC8\\/\\u0050yA=",'
    b' "mime_type": "text\\/plain", "filename": "d\\u00e9j\\u00E0 \\ud83d\\udcc4 \\"q\\".txt"},\n'
    b'  {"filename": "caf\xc3\xa9.pdf", "x": {"y": [[], {}]}, "mime_type": "application/pdf",'
    b' "content": "' + base64.b64encode(samples.pdf_bytes(40)) + b'"}\n'
    b"]}"
)


async def test_the_small_body_is_what_json_loads_says(tmp_path: Path) -> None:
    staged = await receive(SMALL_BODY, tmp_path)
    assert [(s.filename, s.path.read_bytes()) for s in staged] == oracle(SMALL_BODY)
    assert staged[0].filename == 'déjà 📄 "q".txt'
    assert staged[0].path.read_bytes() == "héllo /?? ".encode()
    assert [s.path.name for s in staged] == ["000.txt", "001.pdf"]
    assert [s.kind.name for s in staged] == ["text", "pdf"]
    assert [s.size for s in staged] == [s.path.stat().st_size for s in staged]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000.txt", "001.pdf"]


async def test_a_cut_at_every_byte_gives_the_same_files(tmp_path: Path) -> None:
    expected = oracle(SMALL_BODY)
    for cut in every_cut(SMALL_BODY):
        workdir = tmp_path / str(cut)
        workdir.mkdir()
        staged = await receive(SMALL_BODY, workdir, cuts=[cut])
        assert [(s.filename, s.path.read_bytes()) for s in staged] == expected, cut


async def test_one_byte_chunks_give_the_same_files(tmp_path: Path) -> None:
    staged = await receive(SMALL_BODY, tmp_path, cuts=every_cut(SMALL_BODY))
    assert [(s.filename, s.path.read_bytes()) for s in staged] == oracle(SMALL_BODY)


async def test_every_truncation_of_the_small_body_is_a_400(tmp_path: Path) -> None:
    for end in range(len(SMALL_BODY)):
        error = await refusal(SMALL_BODY[:end], tmp_path / str(end))
        assert error.status == 400, (end, error)


# --- explicit cases ---------------------------------------------------------------


def body_of(*entries: str | dict[str, object]) -> bytes:
    return json.dumps(
        {"files": [json.loads(e) if isinstance(e, str) else e for e in entries]}
    ).encode()


def entry(
    filename: str,
    content: bytes | str,
    mime_type: str = "text/plain",
    *,
    content_first: bool = False,
) -> dict[str, object]:
    """One entry, its content last unless `content_first` (then the kind is unknown while
    the content streams)."""
    if isinstance(content, bytes):
        content = base64.b64encode(content).decode()
    if content_first:
        return {"content": content, "filename": filename, "mime_type": mime_type}
    return {"filename": filename, "mime_type": mime_type, "content": content}


async def test_keys_in_reverse_order(tmp_path: Path) -> None:
    body = b'{"files": [{"mime_type": "text/plain", "content": "aGk=", "filename": "a.txt"}]}'
    [staged] = await receive(body, tmp_path)
    assert (staged.filename, staged.path.read_bytes(), staged.kind.name) == ("a.txt", b"hi", "text")


async def test_escaped_slashes_in_base64(tmp_path: Path) -> None:
    content = samples.pdf_bytes(3000) + bytes(range(256)) * 4
    text = base64.b64encode(content).decode()
    assert "/" in text
    body = body_of(entry("a.pdf", text.replace("/", "\\/"), "application/pdf")).replace(
        b"\\\\/", b"\\/"
    )
    assert b"\\/" in body
    [staged] = await receive(body, tmp_path, cuts=range(0, len(body), 100))
    assert staged.path.read_bytes() == content


async def test_data_url_head_is_stripped(tmp_path: Path) -> None:
    text = "data:text/plain;charset=utf-8;base64," + base64.b64encode(b"hello").decode()
    [staged] = await receive(body_of(entry("a.txt", text)), tmp_path)
    assert staged.path.read_bytes() == b"hello"


async def test_data_url_that_is_not_base64_is_invalid_base64(tmp_path: Path) -> None:
    error = await refusal(body_of(entry("a.txt", "data:text/plain,hello")), tmp_path)
    assert (error.status, error.code) == (400, "INVALID_BASE64")


async def test_line_breaks_and_whitespace_escapes_are_tolerated(tmp_path: Path) -> None:
    content = b"line based base64 " * 50
    text = base64.encodebytes(content).decode().replace("\n", "\r\n")
    text = text[:10] + " \t " + text[10:] + "\n"
    [staged] = await receive(body_of(entry("a.txt", text)), tmp_path)
    assert staged.path.read_bytes() == content


async def test_u_escapes_inside_base64_are_decoded(tmp_path: Path) -> None:
    body = b'{"files": [{"filename": "a.txt", "mime_type": "text/plain", "content": "\\u0061Gk="}]}'
    [staged] = await receive(body, tmp_path)
    assert staged.path.read_bytes() == b"hi"


@pytest.mark.parametrize(
    ("name", "escape"),
    [
        ("PHP", {"/": "\\/"}),
        (".NET", {"+": "\\u002B"}),
        ("Gson", {"=": "\\u003d"}),
        ("all three", {"/": "\\u002f", "+": "\\u002b", "=": "\\u003D"}),
        ("every character", {c: f"\\u{ord(c):04x}" for c in string.printable}),
        ("every character, upper case", {c: f"\\u{ord(c):04X}" for c in string.printable}),
        ("mixed kinds", {"/": "\\/", "A": "\\u0041", "b": "\\u0062", "7": "\\u0037\\n"}),
    ],
)
async def test_escapes_that_encoders_write_inside_base64(
    tmp_path: Path, name: str, escape: dict[str, str]
) -> None:
    content = samples.pdf_bytes(5001) + bytes(range(256)) * 64
    text = base64.b64encode(content).decode()
    assert {"/", "+", "="} <= set(text)
    escaped = "".join(escape.get(ch, ch) for ch in text)
    body = b'{"files": [{"filename": "a.pdf", "mime_type": "application/pdf", "content": "%s"}]}'
    body %= escaped.encode()
    for cuts in ((), range(0, len(body), 1000), range(0, len(body), 7)):
        workdir = tmp_path / str(len(list(cuts)))
        workdir.mkdir()
        [staged] = await receive(body, workdir, cuts=cuts)
        assert staged.path.read_bytes() == content, name


@pytest.mark.parametrize(
    "escape", ['\\"', "\\\\", "\\b", "\\f", "\\u00e9", "\\ud83d\\udcc4", "\\u005c"]
)
async def test_escapes_of_non_base64_characters_are_invalid_base64(
    tmp_path: Path, escape: str
) -> None:
    body = b'{"files": [{"filename": "a.txt", "mime_type": "text/plain", "content": "aG%sk="}]}'
    body %= escape.encode()
    for cut in every_cut(body):
        error = await refusal(body, tmp_path / str(cut), cuts=[cut])
        assert (error.status, error.code) == (400, "INVALID_BASE64"), cut


@pytest.mark.parametrize("bad", ["\\u00e9", "\\u0021", "\\u0020\\u002"])
async def test_a_fully_escaped_run_with_one_bad_escape_says_which(tmp_path: Path, bad: str) -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in base64.b64encode(b"x" * 3000).decode())
    content = escaped[:6000] + bad + escaped[6000:]
    body = body_of(entry("a.txt", "")).replace(b'"content": ""', f'"content": "{content}"'.encode())
    for cuts in ((), range(0, len(body), 1000), [len(body) // 2 + 3]):
        error = await refusal(body, tmp_path / str(len(list(cuts))), cuts=cuts)
        if bad.endswith("002"):  # an escape with three hex digits is not JSON
            assert (error.status, error.code) == (400, "INVALID_REQUEST"), cuts
        else:
            assert (error.status, error.code) == (400, "INVALID_BASE64"), cuts
            assert ("'é'" if bad == "\\u00e9" else "'!'") in error.message


@pytest.mark.parametrize("filename_last", [False, True])
async def test_invalid_base64_names_the_file(tmp_path: Path, filename_last: bool) -> None:
    bad = entry("notes.txt", "aGk!", content_first=filename_last)
    body = body_of(entry("ok.txt", b"fine"), bad)
    error = await refusal(body, tmp_path)
    assert (error.status, error.code) == (400, "INVALID_BASE64")
    assert error.message.startswith("notes.txt: ")
    assert error.details == {"index": 1, "filename": "notes.txt"}


async def test_invalid_base64_without_a_filename_names_the_index(tmp_path: Path) -> None:
    body = b'{"files": [{"content": "a\\"Gk", "mime_type": "text/plain"}]}'
    error = await refusal(body, tmp_path)
    assert (error.status, error.code) == (400, "INVALID_BASE64")
    assert error.message.startswith("files[0]: ")
    assert error.details == {"index": 0}


@pytest.mark.parametrize("content", ["aGk", "aGVsbG8", "aGk=a", "aG=k", "aGk=aGk=", "a==="])
async def test_bad_length_or_padding_is_invalid_base64(tmp_path: Path, content: str) -> None:
    error = await refusal(body_of(entry("a.txt", content)), tmp_path)
    assert (error.status, error.code) == (400, "INVALID_BASE64")


async def test_padding_split_across_chunks_then_more_data_is_invalid(tmp_path: Path) -> None:
    body = body_of(entry("a.txt", "aGk=" + "aGk=" * 3))
    for cut in every_cut(body):
        error = await refusal(body, tmp_path / str(cut), cuts=[cut])
        assert error.code == "INVALID_BASE64"


async def test_raw_line_breaks_in_content_are_tolerated(tmp_path: Path) -> None:
    # What `-d "{... \"content\": \"$(base64 file)\" ...}"` sends: GNU base64 wraps
    # its output at 76 columns, and the shell pastes the raw line breaks into the JSON.
    content = samples.pdf_bytes(3000)
    text = base64.encodebytes(content).replace(b"\n", b"\r\n", 3).replace(b"A", b"A\t", 2)
    body = b'{"files": [{"filename": "a.pdf", "mime_type": "application/pdf", "content": "%s"}]}'
    body %= text
    assert body.count(b"\n") > 10
    [staged] = await receive(body, tmp_path, cuts=range(0, len(body), 50))
    assert staged.path.read_bytes() == content


@pytest.mark.parametrize(
    "body",
    [
        b'{"files": [{"filename": "a.txt", "mime_type": "text/plain", "content": "aGk\x01="}]}',
        b'{"files": [{"filename": "a.txt", "mime_type": "text/plain", "content": "!aGk\x0b="}]}',
        b'{"files": [{"filename": "a\n.txt", "mime_type": "text/plain", "content": "aGk="}]}',
        b'{"files": [{"filename": "a.txt", "mime_type": "text/plain", "content": "aGk=",'
        b' "x\ty": 1}]}',
    ],
)
async def test_other_raw_control_characters_are_invalid_json(tmp_path: Path, body: bytes) -> None:
    for cut in every_cut(body):
        error = await refusal(body, tmp_path / str(cut), cuts=[cut])
        assert (error.status, error.code) == (400, "INVALID_REQUEST")
        assert "control character" in error.message


async def test_non_ascii_content_is_invalid_base64_but_bad_utf8_is_invalid_json(
    tmp_path: Path,
) -> None:
    good_utf8 = body_of(entry("a.txt", "aGké")).replace(b"\\u00e9", "é".encode())
    assert "é".encode() in good_utf8
    error = await refusal(good_utf8, tmp_path / "a", cuts=every_cut(good_utf8))
    assert error.code == "INVALID_BASE64"
    bad_utf8 = good_utf8.replace("é".encode(), b"\xc3(")
    error = await refusal(bad_utf8, tmp_path / "b", cuts=every_cut(bad_utf8))
    assert (error.code, "UTF-8" in error.message) == ("INVALID_REQUEST", True)


async def test_too_many_files_is_refused_before_the_extra_content_is_read(
    tmp_path: Path,
) -> None:
    content = base64.b64encode(b"x" * 30_000).decode()
    body = body_of(*[entry(f"{i}.txt", content) for i in range(11)])
    extra_starts = body.rindex(b'{"filename": "10.txt"')
    consumed = 0

    async def counting() -> AsyncIterator[bytes]:
        nonlocal consumed
        for start in range(0, len(body), 1000):
            consumed = start + 1000
            yield body[start : start + 1000]

    with pytest.raises(AppError) as caught:
        await receive_base64_json(counting(), tmp_path, max_files=10, max_body_bytes=10 * MiB)
    assert (caught.value.status, caught.value.code) == (400, "TOO_MANY_FILES")
    assert consumed <= extra_starts + 1000
    assert caught.value.details == {"max_files": 10}


@pytest.mark.parametrize("content_first", [True, False])
async def test_exactly_the_limit_is_accepted(tmp_path: Path, content_first: bool) -> None:
    body = body_of(entry("big.txt", b"a" * (10 * MiB), content_first=content_first))
    [staged] = await receive(body, tmp_path, cuts=range(0, 20 * MiB, MiB))
    assert staged.size == 10 * MiB


@pytest.mark.parametrize("content_first", [True, False])
async def test_one_byte_over_the_limit_is_413(tmp_path: Path, content_first: bool) -> None:
    body = body_of(entry("big.txt", b"a" * (10 * MiB + 1), content_first=content_first))
    error = await refusal(body, tmp_path, cuts=range(0, 20 * MiB, MiB))
    assert (error.status, error.code) == (413, "FILE_TOO_LARGE")
    assert error.details["filename"] == "big.txt"


async def test_oversized_file_of_known_kind_is_refused_while_streaming(tmp_path: Path) -> None:
    body = body_of(entry("big.txt", b"a" * (12 * MiB)))
    consumed = 0

    async def counting() -> AsyncIterator[bytes]:
        nonlocal consumed
        for start in range(0, len(body), MiB // 4):
            consumed = start + MiB // 4
            yield body[start : start + MiB // 4]

    with pytest.raises(AppError) as caught:
        await receive_base64_json(counting(), tmp_path, max_files=10, max_body_bytes=100 * MiB)
    assert caught.value.status == 413
    assert consumed <= (10 * MiB) * 4 // 3 + MiB  # not the whole 16 MiB body
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 10 * MiB


async def test_file_over_every_limit_is_refused_while_streaming_before_its_name(
    tmp_path: Path,
) -> None:
    body = body_of(
        entry("big.pdf", samples.pdf_bytes(51 * MiB), "application/pdf", content_first=True)
    )
    consumed = 0

    async def counting() -> AsyncIterator[bytes]:
        nonlocal consumed
        for start in range(0, len(body), MiB):
            consumed = start + MiB
            yield body[start : start + MiB]

    with pytest.raises(AppError) as caught:
        await receive_base64_json(counting(), tmp_path, max_files=10, max_body_bytes=100 * MiB)
    assert (caught.value.status, caught.value.code) == (413, "FILE_TOO_LARGE")
    assert caught.value.message.startswith("files[0]: ")
    assert consumed < len(body) - MiB


async def test_body_over_the_request_limit_is_413_at_once(tmp_path: Path) -> None:
    body = body_of(entry("a.txt", b"x" * 5000))
    error = await refusal(body, tmp_path, cuts=range(0, len(body), 1000), max_body_bytes=2000)
    assert (error.status, error.code) == (413, "FILE_TOO_LARGE")
    assert error.details == {"max_body_bytes": 2000}


async def test_text_declared_as_pdf_is_415(tmp_path: Path) -> None:
    error = await refusal(body_of(entry("a.pdf", b"just text", "application/pdf")), tmp_path)
    assert (error.status, error.code) == (415, "UNSUPPORTED_FILE_TYPE")


async def test_type_mismatch_is_415_before_the_content_is_read(tmp_path: Path) -> None:
    body = b'{"files": [{"filename": "a.pdf", "mime_type": "text/plain", "content": "!!!'
    error = await refusal(body, tmp_path)  # the body is cut short: only the type is seen
    assert (error.status, error.code) == (415, "UNSUPPORTED_FILE_TYPE")
    assert list(tmp_path.iterdir()) == []


async def test_generic_or_missing_type_is_415(tmp_path: Path) -> None:
    error = await refusal(body_of(entry("a.txt", b"x", "application/octet-stream")), tmp_path)
    assert error.status == 415
    error = await refusal(body_of(entry("a.txt", b"x", "")), tmp_path)
    assert error.status == 415


async def test_empty_content_is_400(tmp_path: Path) -> None:
    error = await refusal(body_of(entry("a.txt", "")), tmp_path)
    assert error.status == 400
    assert "empty" in error.message


async def test_filenames_keep_json_string_semantics(tmp_path: Path) -> None:
    body = (
        b'{"files": [{"filename": "C:\\\\dir\\\\r\\u00e9sum\\u00e9 \\ud83d\\udcc4 \\"1\\".md",'
        b' "mime_type": "text/markdown", "content": "IyBoaQ=="}]}'
    )
    [staged] = await receive(body, tmp_path)
    assert staged.filename == 'résumé 📄 "1".md'
    assert staged.path.name == "000.md"


@pytest.mark.parametrize(
    "filename", ["\\u0000.txt", "a\\ud83d.txt", "..", "", "a\\u202e.txt", "x" * 300 + ".txt"]
)
async def test_bad_filenames_are_400(tmp_path: Path, filename: str) -> None:
    body = b'{"files": [{"filename": "%s", "content": "aGk=", "mime_type": "text/plain"}]}'
    error = await refusal(body % filename.encode(), tmp_path)
    assert (error.status, error.code) == (400, "INVALID_REQUEST")


async def test_unknown_keys_are_skipped_whatever_they_hold(tmp_path: Path) -> None:
    junk = '{"a": [1, 2.5e-3, -0, true, false, null, "\\u00e9\\n", {"b": [[[]]], "c": {}}]}'
    long = "long " * 100_000
    body = (
        f'{{"meta": {junk}, "files": [{{"extra": {junk}, "filename": "a.txt",'
        f' "size": 123456789012345678901, "content": "aGk=", "mime_type": "text/plain",'
        f' "tags": []}}], "z": "{long}"}}'
    ).encode()
    [staged] = await receive(body, tmp_path, cuts=range(0, len(body), 777))
    assert staged.path.read_bytes() == b"hi"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "The body is empty"),
        (b"  ", "The body is empty"),
        (b"[]", "The body must be a JSON object"),
        (b'"files"', "The body must be a JSON object"),
        (b"{}", "no 'files' array"),
        (b'{"files": {}}', "files must be an array"),
        (b'{"files": "x"}', "files must be an array"),
        (b'{"files": []}', "'files' is empty"),
        (b'{"files": [1]}', "files[0] must be an object"),
        (
            b'{"files": [{"filename": 1, "content": "aGk=", "mime_type": "text/plain"}]}',
            "files[0].filename must be a string",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": null}]}',
            "files[0].mime_type must be a string",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": ["aGk="], "mime_type": "text/plain"}]}',
            "files[0].content must be a string",
        ),
        (
            b'{"files": [{"filename": "a.txt", "mime_type": "text/plain"}]}',
            "files[0] has no 'content'",
        ),
        (
            b'{"files": [{"content": "aGk=", "mime_type": "text/plain"}]}',
            "files[0] has no 'filename'",
        ),
        (b'{"files": [{"filename": "a.txt", "content": "aGk="}]}', "files[0] has no 'mime_type'"),
        (
            b'{"files": [{"filename": "a.txt", "filename": "b.txt", "content": "aGk=",'
            b' "mime_type": "text/plain"}]}',
            "more than one 'filename'",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "text/plain"}],'
            b' "files": []}',
            "more than one 'files'",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "text/plain"}]} x',
            "more after the JSON object",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "text/plain"},]}',
            "expected a value",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "text/\\x"}]}',
            "invalid escape",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "\\u12"}]}',
            "invalid escape",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "text\\ud800"}]}',
            "unpaired surrogate",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "text/plain"}], '
            b'"n": 01}',
            "in the value of an unknown key",
        ),
        (
            b'{"files": [{"filename": "a.txt", "content": "aGk=", "mime_type": "text/plain"}], '
            b'"n": NaN}',
            "in the value of an unknown key",
        ),
        (b'{"n": ' + b"[" * 600 + b"]" * 600 + b', "files": []}', "nest more than"),
        (
            b'{"files": [{"filename": "\xff.txt", "content": "aGk=", "mime_type": "text/plain"}]}',
            "not valid UTF-8",
        ),
        (
            b'{"files": [{"filename": "%s.txt", "content": "aGk=", "mime_type": "text/plain"}]}'
            % (b"a" * 70_000),
            "longer than 65536 bytes",
        ),
    ],
)
async def test_wrong_bodies_say_what_is_wrong(tmp_path: Path, body: bytes, message: str) -> None:
    for cuts in ((), every_cut(body) if len(body) < 2000 else ()):
        error = await refusal(body, tmp_path, cuts=cuts)
        assert (error.status, error.code) == (400, "INVALID_REQUEST")
        assert message in error.message


async def test_deep_nesting_under_an_unknown_key_is_accepted_up_to_the_limit(
    tmp_path: Path,
) -> None:
    ok = b'{"n": ' + b'[{"a": ' * 250 + b"1" + b"}]" * 250 + b', "files": [%s]}'
    ok %= json.dumps(entry("a.txt", b"hi")).encode()
    [staged] = await receive(ok, tmp_path)
    assert staged.path.read_bytes() == b"hi"


async def test_unknown_values_are_bounded_but_their_strings_are_not(tmp_path: Path) -> None:
    files = json.dumps([entry("a.txt", b"hi")])
    long_string = f'{{"files": {files}, "note": "{"x" * (5 * MiB)}"}}'
    [staged] = await receive(long_string.encode(), tmp_path, cuts=range(0, 6 * MiB, 65536))
    assert staged.filename == "a.txt"
    many_values = f'{{"note": [{"0," * MiB}0], "files": {files}}}'
    error = await refusal(many_values.encode(), tmp_path / "many")
    assert (error.status, error.code) == (400, "INVALID_REQUEST")
    assert "unknown keys" in error.message


def attributes(i: int) -> dict[str, object]:
    """SPEC 11's largest `attributes` (16 keys) and a static `chunking_strategy`."""
    return {
        "attributes": {f"key{k}": "v" * 512 if k % 2 else k for k in range(16)},
        "chunking_strategy": {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
        },
        **entry(f"{i}.txt", b"hi"),
    }


async def test_per_file_options_on_every_file_fit_the_ignored_budget(tmp_path: Path) -> None:
    top = attributes(-1)
    body = json.dumps(
        {
            "attributes": top["attributes"],
            "chunking_strategy": top["chunking_strategy"],
            "files": [attributes(i) for i in range(10)],
        }
    ).encode()
    staged = await receive(body, tmp_path)
    assert len(staged) == 10


@pytest.mark.parametrize(
    "extra",
    [
        b'"k": 1, ' * (MAX_IGNORED_TOKENS + 1),
        b'"k": [' + b'"", ' * MAX_IGNORED_TOKENS + b'""], ',
        b'"k": [' + b"[], " * (MAX_IGNORED_TOKENS // 2) + b"[]], ",
    ],
    ids=["keys", "strings", "brackets"],
)
async def test_ignored_tokens_over_the_budget_are_400(tmp_path: Path, extra: bytes) -> None:
    body = b"{" + extra + b'"files": [%s]}' % json.dumps(entry("a.txt", b"hi")).encode()
    error = await refusal(body, tmp_path)
    assert (error.status, error.code) == (400, "INVALID_REQUEST")
    assert str(MAX_IGNORED_TOKENS) in error.message


async def test_a_chunk_of_ignored_keys_hands_the_event_loop_back(tmp_path: Path) -> None:
    keys = MAX_IGNORED_TOKENS - 1
    # Refused at its very end, so no file is checked (in a thread) on the way.
    body = b"{" + b'"k": 1, ' * keys + b'"files": []}'
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    async def one_chunk() -> AsyncIterator[bytes]:
        yield body

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    before = turns
    with pytest.raises(AppError) as caught:
        await receive_base64_json(one_chunk(), tmp_path, max_files=10, max_body_bytes=MiB)
    counter.cancel()
    assert "'files' is empty" in caught.value.message
    # One chunk, parsed in one go but for the pauses: each gave the other task a turn.
    assert turns - before >= keys // STEPS_PER_SLICE - 1


async def test_memory_stays_flat_for_a_large_file(tmp_path: Path) -> None:
    block = 768 * 1024  # a multiple of 3, so the base64 of the blocks concatenates
    first = base64.b64encode(samples.pdf_bytes(block))
    rest = base64.b64encode(bytes(range(256)) * (block // 256))
    blocks = 60  # 60 MiB of base64, a 45 MiB PDF

    async def body() -> AsyncIterator[bytes]:
        yield b'{"files": [{"filename": "big.pdf", "mime_type": "application/pdf", "content": "'
        yield first
        for _ in range(blocks - 1):
            yield rest  # the same object each time: no state may hang on its identity
        yield b'"}]}'

    tracemalloc.start()
    try:
        [staged] = await receive_base64_json(
            body(), tmp_path, max_files=10, max_body_bytes=100 * MiB
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert staged.size == blocks * block
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        # 20 strings of 60 KiB: within each string's bound, over the budget together.
        ({"attributes": {f"k{i}": "x" * 60_000 for i in range(20)}}, str(MAX_IGNORED_BYTES)),
        # Deeper than any value may nest.
        ({"chunking_strategy": "NESTED"}, "nest"),
    ],
)
async def test_option_values_share_the_budget_of_unknown_keys(
    tmp_path: Path, options: dict[str, object], fragment: str
) -> None:
    """SPEC 11.1's options are read whole, so they are bounded as unknown keys' values are:
    a body cannot make the parser keep or walk more through them."""
    text = json.dumps(
        {"files": [{"filename": "a.txt", "content": "eA==", "mime_type": "text/plain"}], **options}
    )
    text = text.replace('"NESTED"', "[" * 600 + "]" * 600)
    with pytest.raises(AppError) as caught:
        await receive(text.encode(), tmp_path)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")
    assert fragment in caught.value.message
