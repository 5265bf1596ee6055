"""Streaming intake of the base64 JSON upload body (SPEC 3.2).

The body is `{"files": [{"filename": ..., "content": "<base64>", "mime_type": ...}]}`
and can be ~700 MB, so it is never held whole, nor is any `content` string: an
incremental JSON parser consumes the body chunk by chunk as the server receives it,
and each `content` string is base64-decoded straight into its own temp file while it
streams. Memory stays at a few MiB whatever the body size.

How the parser is built
-----------------------
It is a recursive-descent parser written as a generator. It reads the current chunk
(`buf` from `pos`) and, when that runs out, `yield`s; `feed()` resumes it with the next
chunk, prefixed by whatever small piece was left unconsumed (an escape cut by the chunk
boundary: a few bytes). So the grammar reads top-down (document -> `files` array ->
entry -> key/value) with every suspension point hidden in a `yield from`, instead of a
state table. The states are where the generator is suspended: between tokens, inside a
string, inside a content string (with its carry), inside a skipped value.

Nothing is stepped through a character at a time in Python:

- Tokens between values (braces, commas, colons, whitespace) are a few per entry.
- Other strings (keys, filename, mime_type) are matched in bulk by one possessive regex
  for valid JSON string text, checked as UTF-8 with an incremental decoder, and the few
  kept ones are unescaped by `json.loads`, which gives them JSON's exact meaning.
- A value under an unknown key is skipped by finding its end (a regex jumps to the next
  bracket or quote; strings are matched as above and not kept); its text with strings
  emptied is then checked by `json.loads`.
- `content` strings are the body; per chunk they cost a handful of C-level passes:

  1. Scan: `bytes.find` (memchr speed) locates the closing quote and the first
     backslash of what is left of the chunk.
  2. Unescape: if every escape in the run is the same one (all `\\n`, or `\\r\\n`, or
     `\\/` as PHP writes, or `\\u002B` as .NET writes...), one `bytes.replace` (or a
     `translate`) removes them all, and a `count`/`find` proves that was sound. A run
     written entirely as `\\u00XX` escapes is decoded by slicing out the hex digits for
     `bytes.fromhex`. Else a regex finds the first escape that is not of an ASCII
     character and the run up to it is unescaped with one `replace` per common kind
     present, or, with any rarer kind, by json's C string scanner in one pass. Anything
     else (`\\"`, `\\u00e9`, an escape cut by the chunk end) is decoded on its own, then
     the bulk path resumes. So no content costs a Python call per escape: a chunk keeps
     the event loop for a few milliseconds at most (`bench/intake_cpu.py`).
  3. Decode: a `data:<mime>;base64,` head is stripped first. Then the text is cut at a
     multiple of 4 characters; the rest (< 4 characters, the carry) waits for the next
     run. Aligned blocks go through `pybase64.b64decode(validate=True)`, which refuses
     any byte outside the alphabet, so a control character, a quote or non-ASCII text is
     caught there rather than by a per-character check; only when a block fails is
     whitespace looked for (`translate`) and the block retried. An `=` ends the data: a
     block that ends in padding must be the last. Decoded bytes go to a buffered file.

  When the text does not decode, the rest of the string is read as a plain JSON string
  (so a bad escape, a control character or invalid UTF-8 is still reported as invalid
  JSON), and INVALID_BASE64 is raised when the entry's object closes, naming the file by
  its filename even when that came after the content.

Limits are checked at the earliest byte that decides them: the body size with every
chunk; the number of files when an entry starts; the filename when it ends; the kind
(415) as soon as both filename and MIME type are known; the decoded size with every
block, against the kind's limit if the kind is already known, else against the largest
any kind allows (and the kind's own limit when the entry closes); content (415) in a
thread right after each entry closes.

Where the spec is silent
------------------------
- Unknown keys, at the top level and in entries, are ignored; their values may be any
  JSON (nested up to 512 levels, at most 1 MiB in all besides their strings, which are
  not limited) and are checked but not stored. Duplicate `files`, `filename`, `content`
  or `mime_type` keys are a 400; duplicate unknown keys are not tracked.
- `filename`, `mime_type` and keys may be at most 64 KiB each as written (400 beyond).
- A leading UTF-8 byte order mark is skipped (RFC 8259 allows it; so does `json.loads`).
- Whitespace inside `content` may be spaces, `\\n` `\\r` `\\t` escapes (or `\\u`
  escapes of those), and raw tabs and line breaks, which JSON forbids in strings but
  the spec's own curl example produces. Other raw control characters are invalid JSON,
  and raw line breaks in any other string too.
- Non-ASCII characters inside `content` are INVALID_BASE64, or invalid JSON if they are
  not valid UTF-8.
- A `data:` head must end in `;base64,` (case-insensitive) within 1,024 characters; any
  MIME type in it is ignored (the entry's `mime_type` decides).
- An unpaired surrogate escape in `mime_type` is a 400 (it could not be echoed back in
  an error body); in `filename`, `clean_filename` refuses it.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, TypeVar

import pybase64

from vectorgate.errors import AppError, ErrorCode, bad_request, body_too_large
from vectorgate.uploads import staging
from vectorgate.uploads.filenames import clean_filename
from vectorgate.uploads.filetypes import (
    MAX_FILE_BYTES,
    FileKind,
    MiB,
    check_content,
    check_size,
    kind_for,
)
from vectorgate.uploads.options import OPTION_NAMES, validate_option
from vectorgate.uploads.staging import FileOptions, Reserve, StagedFile

FILES_KEY = "files"
_FIELDS = ("filename", "content", "mime_type")

# Writes go to the page cache in large pieces: fewer syscalls.
_WRITE_BUFFER = MiB
# Longest filename, MIME type or key, in bytes as written in the body.
MAX_STRING_BYTES = 64 * 1024
# Most that values under unknown keys may hold besides the text of their strings, all
# together. Each is kept (strings emptied) until it ends, to be checked by `json.loads`;
# finding where it ends costs Python time per bracket, which this bounds too.
MAX_IGNORED_BYTES = MiB
# Most unknown keys, and strings and brackets inside their values, all together. Each
# costs the parser a Python step (2-20 us, against ~1 ms per MiB of content), so it is
# the number of them, not their bytes, that can keep a core busy (a body of 16 MiB of
# `"k":1,` took 40 s). Legitimate extras, such as SPEC 11's `attributes` on every
# file, take about 500.
MAX_IGNORED_TOKENS = 2048
# The parser hands the event loop back after this many such steps within one chunk, so
# no chunk keeps it for more than a few milliseconds.
STEPS_PER_SLICE = 128
# Deepest nesting of a value under an unknown key.
MAX_DEPTH = 512
# Longest `data:<mime>;base64,` head of a content string.
_MAX_DATA_URL_HEAD = 1024

_T = TypeVar("_T")
# A parsing step: suspends (yields None) whenever it needs the next chunk.
_Steps = Generator[object, None, _T]
# What a step yields to hand the event loop back mid-chunk (it yields None for more input).
_PAUSE = object()

_QUOTE, _BACKSLASH, _COMMA, _COLON = b'"\\,:'
_LBRACE, _RBRACE, _LBRACKET, _RBRACKET = b"{}[]"

_WHITESPACE = re.compile(rb"[ \t\n\r]*")
# The longest valid stretch of a JSON string's body: characters other than '"', '\\'
# and controls, and complete escapes. Possessive, so it never backtracks.
_STRING_BODY = re.compile(rb'(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+')
# Inside `content` only, raw tabs and line breaks are tolerated too, though JSON has no
# control characters in strings: the spec's own curl example pastes the output of GNU
# `base64`, wrapped at 76 columns, into the JSON string.
_CONTENT_WHITESPACE = b" \t\n\r"
_CONTENT_BODY = re.compile(
    rb'(?:[^"\\\x00-\x08\x0b\x0c\x0e-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+'
)
# An escape cut off by the end of the chunk.
_PARTIAL_ESCAPE = re.compile(rb"\\(?:u[0-9a-fA-F]{0,3})?\Z")
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_HEX_DIGITS = b"0123456789abcdefABCDEF"
# Decodes a run of content in one pass; raw tabs and line breaks may be in it.
_LENIENT_JSON = json.JSONDecoder(strict=False)


def _ascii_escapes() -> dict[bytes, bytes]:
    """Every `\\u` escape of an ASCII character (hex digits all lower or all upper
    case: after `00`, at most one is a letter) and the short escapes \\n \\r \\t \\/, with
    what each stands for inside content: JSON whitespace is dropped, the others are
    themselves (so `\\u0022` gives '"', which base64 decoding then refuses). Left out:
    \\" \\\\ \\b \\f, which never belong in base64 and are decoded one by one."""
    escapes = {b"\\n": b"", b"\\r": b"", b"\\t": b"", b"\\/": b"/"}
    for code in range(0x80):
        for digits in (f"{code:04x}", f"{code:04X}"):
            escapes[b"\\u" + digits.encode()] = b"" if code in b" \t\n\r" else bytes([code])
    return escapes


# Inside content, all of these are decoded in bulk.
_ASCII_ESCAPES = _ascii_escapes()
_ASCII_ESCAPE = re.compile(rb"\\(?:[nrt/]|u00[0-7][0-9a-fA-F])")
# Those that encoders put inside base64, removed with one `bytes.replace` per kind:
# whitespace, '/' escaped by PHP (also as \u002F), '+' by .NET (\u002B), '=' by Gson
# (\u003D). Rarer ones go through `_ASCII_ESCAPE.sub`, one Python call each.
_BULK_ESCAPES = {
    escape: _ASCII_ESCAPES[escape]
    for escape in _ASCII_ESCAPES
    if len(escape) == 2
    or escape[2:].lower() in (b"0009", b"000a", b"000d", b"0020", b"002b", b"002f", b"003d")
}
# Inside content: the first backslash that does not start one of _ASCII_ESCAPES (or is
# cut off by the end of the chunk). Every backslash before it starts one that does.
_OTHER_ESCAPE = re.compile(rb"\\(?!(?:[nrt/]|u00[0-7][0-9a-fA-F]))")
# How a run may use a single kind of escape throughout (see _strip_uniform_escapes).
_UNIFORM_ESCAPES = _ASCII_ESCAPES | {b"\\r\\n": b""}
# Where a value under an unknown key may end or change depth: at the top of the value
# a ',' or the parent's closing bracket ends it; strings are skipped on their own.
_SKIP_STOP_TOP = re.compile(rb'["\[\]{},]')
_SKIP_STOP_NESTED = re.compile(rb'["\[\]{}]')
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_NOT_DATA_URL = re.compile(rb"[^\x20-\x7e]")
_SIMPLE_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}
_VALUE_STARTS = frozenset(b'{["-0123456789tfn')


class _InvalidBase64(Exception):
    """The content string is valid JSON so far but not valid base64 (why: the message)."""


class _Base64Sink:
    """Decodes one content string's unescaped text into a file, as it arrives."""

    def __init__(self, path: Path, limit: int, kind: FileKind | None, name: str) -> None:
        self.path = path
        self.limit = limit
        self.kind = kind
        self.name = name
        self.size = 0
        # The text so far while it may still be a `data:...;base64,` head; None once decided.
        self.head: bytes | None = b""
        self.carry = b""  # < 4 characters waiting to complete a quantum
        self.padded = False
        self.file: BinaryIO | None = path.open("wb", buffering=_WRITE_BUFFER)
        # The content's SHA-256, computed as it is decoded (SPEC 11.2): no second read.
        self.sha256 = staging.content_hash()

    def feed(self, text: bytes) -> None:
        """Take the next unescaped run. Raises _InvalidBase64 as soon as the run holds a
        character that cannot be part of valid content, never later: the caller
        re-reads the failed run as plain JSON and relies on all earlier runs being valid.
        """
        if self.head is not None:
            text = self._strip_head(self.head + text.translate(None, _CONTENT_WHITESPACE))
            if self.head is None:
                self._decode(text)
            return
        try:
            self._decode(text)
        except _InvalidBase64:
            # Whitespace is rare, so it is looked for only when decoding fails.
            clean = text.translate(None, _CONTENT_WHITESPACE)
            if len(clean) == len(text):
                raise
            self._decode(clean)

    def _strip_head(self, text: bytes) -> bytes:
        """The content after a `data:...;base64,` head at the start of `text`, if any.

        While it cannot tell yet, it keeps `text` in `self.head` and returns nothing;
        what it keeps is checked to be printable ASCII first (a prefix of "data:" is).
        """
        if not text[:5].lower().startswith(b"data:"[: len(text)]):
            self.head = None  # not a data URL
            return text
        if len(text) < 5:
            self.head = text
            return b""
        comma = text.find(b",", 0, _MAX_DATA_URL_HEAD)
        # The head is dropped, not decoded, so it is checked here (RFC 2397: ASCII).
        bad = _NOT_DATA_URL.search(text, 0, _MAX_DATA_URL_HEAD if comma == -1 else comma)
        if bad is not None:
            raise _InvalidBase64(_not_base64(bad.group()[0]))
        if comma == -1:
            if len(text) >= _MAX_DATA_URL_HEAD:
                raise _InvalidBase64(
                    "it starts with 'data:' but has no ',' where the data URL head should end"
                )
            self.head = text
            return b""
        if not text[:comma].lower().endswith(b";base64"):
            raise _InvalidBase64("it is a data URL, but not a ';base64,' one")
        self.head = None
        return text[comma + 1 :]

    def end(self) -> None:
        """The string closed: decode what is left, check it was complete, close the file."""
        if self.head is not None:
            head, self.head = self.head, None
            if head[:5].lower() == b"data:":
                raise _InvalidBase64("it is a data URL head without data")
            self._decode(head)
        if self.carry:
            raise _InvalidBase64(
                "its length is not a multiple of 4 characters (is the '=' padding missing?)"
            )
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def _decode(self, text: bytes) -> None:
        """Decode `text` after the carry. On _InvalidBase64 nothing has changed."""
        if self.carry:
            text = self.carry + text
        usable = len(text) - len(text) % 4
        carry = text[usable:]
        bad = _NOT_BASE64.search(carry)
        if bad is not None:
            raise _InvalidBase64(_not_base64(bad.group()[0]))
        if not usable:
            self.carry = carry
            return
        block = text if usable == len(text) else memoryview(text)[:usable]
        if self.padded:
            raise _InvalidBase64("it goes on after the '=' padding")
        try:
            data = pybase64.b64decode(block, validate=True)
        except ValueError:
            raise _InvalidBase64(_why_not_base64(bytes(block))) from None
        self.carry = carry
        self.padded = text[usable - 1] == ord("=")
        self.size += len(data)
        if self.kind is not None:
            check_size(self.kind, self.size, self.name)
        elif self.size > self.limit:
            raise AppError(
                413,
                ErrorCode.FILE_TOO_LARGE,
                f"{self.name}: the file is over {self.limit // MiB} MB, the most any file may be",
                details={"filename": self.name, "max_bytes": self.limit},
            )
        assert self.file is not None
        self.file.write(data)
        self.sha256.update(data)


def _why_not_base64(block: bytes) -> str:
    bad = _NOT_BASE64.search(block)
    if bad is None:
        return "'=' padding appears before the end"
    return _not_base64(bad.group()[0])


def _not_base64(byte: int) -> str:
    shown = repr(chr(byte)) if 0x20 <= byte < 0x7F else f"the byte 0x{byte:02x}"
    return f"it contains {shown}, which is not a base64 character"


@dataclass
class _Entry:
    """One object of the `files` array while it is being read."""

    index: int
    seen: set[str] = field(default_factory=set)
    filename: str | None = None
    mime_type: str | None = None
    kind: FileKind | None = None
    sink: _Base64Sink | None = None
    base64_error: str | None = None
    options: FileOptions = field(default_factory=dict)  # the entry's own, validated

    @property
    def where(self) -> str:
        return f"files[{self.index}]"

    @property
    def name(self) -> str:
        """How messages name the file: its filename once known, else its position."""
        return self.filename if self.filename is not None else self.where


class _Parser:
    def __init__(self, workdir: Path, max_files: int) -> None:
        self.workdir = workdir
        self.max_files = max_files
        self.buf = b""
        self.pos = 0
        self.offset = 0  # body offset of buf[0], for messages
        self.chunks = 0  # how many chunks were fed
        self.eof = False
        self.where = "the body"  # where in the document we are, for messages
        self.ignored = 0  # bytes kept so far by _skip_value
        self.ignored_tokens = 0  # unknown keys, and strings and brackets in their values
        self.paused = False  # stopped mid-chunk to let the event loop run (see proceed())
        self.staged: list[StagedFile] = []
        self.completed: list[StagedFile] = []  # staged since the last feed()
        self.options: FileOptions = {}  # top-level attributes / chunking_strategy
        self._steps = self._document()

    # --- driving ------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[StagedFile]:
        """Parse one chunk; returns the files it completed."""
        if self.pos < len(self.buf):
            self.buf = self.buf[self.pos :] + chunk
        else:
            self.buf = chunk
        self.offset += self.pos
        self.pos = 0
        self.chunks += 1
        return self.proceed()

    def proceed(self) -> list[StagedFile]:
        """Go on with the chunk (after a pause: while `paused`, call again before the next
        `feed`); returns the files completed meanwhile."""
        self._resume()
        done, self.completed = self.completed, []
        return done

    def finish(self) -> list[StagedFile]:
        """The body ended: the document must be complete (call `proceed` while `paused`)."""
        self.eof = True
        return self.proceed()

    def close(self) -> None:
        # Runs the generator's `finally` blocks: the open temp file is closed.
        self._steps.close()

    def _resume(self) -> None:
        try:
            self.paused = next(self._steps) is _PAUSE
        except StopIteration:
            self.paused = False

    def _ignored_token(self) -> _Steps[None]:
        """Count one step spent on ignored input; every STEPS_PER_SLICE, pause."""
        self.ignored_tokens += 1
        if self.ignored_tokens > MAX_IGNORED_TOKENS:
            raise bad_request(
                f"Unknown keys, with the strings and brackets in their values, number more "
                f"than {MAX_IGNORED_TOKENS}; send only filename, content and mime_type",
                max_ignored_tokens=MAX_IGNORED_TOKENS,
            )
        if self.ignored_tokens % STEPS_PER_SLICE == 0:
            yield _PAUSE

    def _wait(self) -> _Steps[None]:
        """Suspend until the next chunk; the body ending here is an error."""
        if self.eof:
            raise self._syntax("the body ends before the JSON document does")
        yield None

    # --- errors -------------------------------------------------------------------

    def _syntax(self, problem: str) -> AppError:
        offset = self.offset + self.pos
        return bad_request(
            f"Invalid JSON body: {problem} (at byte {offset}, in {self.where})",
            offset=offset,
        )

    def _unexpected(self, byte: int) -> AppError:
        return self._syntax(f"unexpected {_show_byte(byte)}")

    def _shape(self, field: str | None, expected: str, byte: int) -> AppError:
        """`field` (None: the body) holds a valid value of the wrong type, or invalid JSON."""
        if byte not in _VALUE_STARTS:
            return self._unexpected(byte)
        if field is None:
            return bad_request(f"The body must be {expected}")
        return bad_request(f"{field} must be {expected}", field=field)

    # --- the document -------------------------------------------------------------

    def _document(self) -> _Steps[None]:
        while len(self.buf) < len(codecs.BOM_UTF8) and not self.eof:
            yield None
        if self.buf.startswith(codecs.BOM_UTF8):
            self.pos = len(codecs.BOM_UTF8)
        self._skip_whitespace()
        if self.eof and self.pos == len(self.buf):
            raise bad_request("The body is empty: expected a JSON object with a 'files' array")
        byte = yield from self._peek()
        if byte != _LBRACE:
            raise self._shape(None, "a JSON object with a 'files' array", byte)
        self.pos += 1
        seen_files = False
        first = True
        while (yield from self._next_member(_RBRACE, first)):
            first = False
            key = yield from self._key()
            if key == FILES_KEY:
                if seen_files:
                    raise bad_request("The body has more than one 'files' key")
                seen_files = True
                yield from self._files()
                self.where = "the body"
            elif key in OPTION_NAMES:
                yield from self._option(key, key, self.options)
            else:
                yield from self._ignored_token()
                yield from self._skip_value()
        if not seen_files:
            raise bad_request("The body has no 'files' array", field=FILES_KEY)
        while True:  # only whitespace may follow
            self._skip_whitespace()
            if self.pos < len(self.buf):
                raise self._syntax("there is more after the JSON object")
            if self.eof:
                return
            yield None

    def _files(self) -> _Steps[None]:
        self.where = FILES_KEY
        byte = yield from self._peek()
        if byte != _LBRACKET:
            raise self._shape(FILES_KEY, "an array of {filename, content, mime_type} objects", byte)
        self.pos += 1
        count = 0
        while (yield from self._next_member(_RBRACKET, count == 0)):
            if count == self.max_files:
                raise AppError(
                    400,
                    ErrorCode.TOO_MANY_FILES,
                    f"Too many files: at most {self.max_files} per request",
                    details={"max_files": self.max_files},
                )
            entry = _Entry(count)
            self.where = entry.where
            byte = yield from self._peek()
            if byte != _LBRACE:
                raise self._shape(entry.where, "an object", byte)
            self.pos += 1
            yield from self._entry(entry)
            self.where = FILES_KEY
            count += 1
        if count == 0:
            raise bad_request("'files' is empty: send at least one file", field=FILES_KEY)

    def _entry(self, entry: _Entry) -> _Steps[None]:
        first = True
        while (yield from self._next_member(_RBRACE, first)):
            first = False
            key = yield from self._key()
            if key in OPTION_NAMES:
                yield from self._option(key, f"{entry.where}.{key}", entry.options)
                self.where = entry.where
                continue
            if key not in _FIELDS:
                yield from self._ignored_token()
                yield from self._skip_value()
                continue
            where = f"{entry.where}.{key}"
            if key in entry.seen:
                raise bad_request(f"{entry.where} has more than one '{key}'", field=where)
            entry.seen.add(key)
            byte = yield from self._peek()
            if byte != _QUOTE:
                raise self._shape(where, "a string", byte)
            self.pos += 1
            self.where = where
            if key == "content":
                yield from self._content(entry)
            else:
                value = yield from self._string(where)
                assert value is not None
                if key == "filename":
                    entry.filename = clean_filename(value)
                else:
                    _check_unicode(value, where)
                    entry.mime_type = value
                if entry.filename is not None and entry.mime_type is not None:
                    entry.kind = kind_for(entry.filename, entry.mime_type, infer_generic=False)
            self.where = entry.where
        self._stage(entry)

    def _stage(self, entry: _Entry) -> None:
        """The entry's object closed: check it is complete and keep its file."""
        if entry.base64_error is not None:
            details: dict[str, object] = {"index": entry.index}
            if entry.filename is not None:
                details["filename"] = entry.filename
            raise AppError(
                400,
                ErrorCode.INVALID_BASE64,
                f"{entry.name}: content is not valid base64: {entry.base64_error}",
                details=details,
            )
        for key in _FIELDS:
            if key not in entry.seen:
                raise bad_request(f"{entry.where} has no '{key}'", field=f"{entry.where}.{key}")
        assert entry.filename is not None
        assert entry.kind is not None
        assert entry.sink is not None
        check_size(entry.kind, entry.sink.size, entry.filename)
        path = self.workdir / f"{entry.index:03d}{Path(entry.filename).suffix.lower()}"
        entry.sink.path.rename(path)
        staged = StagedFile(
            path,
            entry.filename,
            entry.kind,
            entry.sink.size,
            sha256=entry.sink.sha256.hexdigest(),
            options=entry.options,
        )
        self.staged.append(staged)
        self.completed.append(staged)

    # --- content strings ----------------------------------------------------------

    def _content(self, entry: _Entry) -> _Steps[None]:
        """Decode the content string (opening quote consumed) into the entry's temp file."""
        limit = entry.kind.max_bytes if entry.kind is not None else MAX_FILE_BYTES
        path = self.workdir / f"{entry.index:03d}.part"
        sink = entry.sink = _Base64Sink(path, limit, entry.kind, entry.name)
        try:
            yield from self._base64_string(sink)
            return
        except _InvalidBase64 as exc:
            entry.base64_error = str(exc)
        finally:
            sink.close()
        # Still read the rest as a JSON string: the body must be valid JSON, and the
        # filename may follow. `pos` is at the start of the run or escape that failed.
        yield from self._string(None, body=_CONTENT_BODY)

    def _base64_string(self, sink: _Base64Sink) -> _Steps[None]:
        """Feed the content string to `sink` run by run, up to its closing quote
        (consumed). Raises _InvalidBase64 with `pos` at the run or escape at fault."""
        # Where the next '"' is (-1: none in this chunk), found once per chunk: a chunk
        # with many slow escapes must not be searched to its end for each of them.
        quote = -1
        searched_chunk = -1  # the `self.chunks` count when `quote` was found
        uniform_tried = -1  # ... and when the uniform-escapes shortcut was tried
        while True:
            buf, pos = self.buf, self.pos
            if searched_chunk != self.chunks or (quote != -1 and quote < pos):
                quote, searched_chunk = buf.find(b'"', pos), self.chunks
            end = len(buf) if quote == -1 else quote
            # The shortcut costs a pass over the rest of the chunk even when it fails,
            # so it is tried once per chunk, not after every slow escape.
            try_uniform, uniform_tried = uniform_tried != self.chunks, self.chunks
            text, stop = _base64_run(buf, pos, end, try_uniform=try_uniform)
            if stop > pos:
                sink.feed(text)
                self.pos = stop
            if stop == end:
                if quote == -1:
                    yield from self._wait()
                    continue
                # A '"' preceded by a backslash stops the run at that backslash
                # (an escape), so this one closes the string.
                sink.end()
                self.pos = quote + 1
                return
            char = yield from self._escape()
            if char in " \n\r\t":
                continue
            if not char.isascii():
                raise _InvalidBase64(f"it contains {char!r}, which is not a base64 character")
            sink.feed(char.encode("ascii"))

    # --- tokens -------------------------------------------------------------------

    def _skip_whitespace(self) -> None:
        match = _WHITESPACE.match(self.buf, self.pos)
        if match is not None:
            self.pos = match.end()

    def _peek(self) -> _Steps[int]:
        """Skip whitespace; the next byte, not consumed."""
        while True:
            self._skip_whitespace()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            yield from self._wait()

    def _next_member(self, closer: int, first: bool) -> _Steps[bool]:
        """In an open array or object: True at the start of the next member, or False
        once the closing bracket `closer` has been consumed."""
        byte = yield from self._peek()
        if byte == closer and first:
            self.pos += 1
            return False
        if not first:
            if byte == closer:
                self.pos += 1
                return False
            if byte != _COMMA:
                raise self._syntax(f"expected ',' or '{chr(closer)}', found {_show_byte(byte)}")
            self.pos += 1
            byte = yield from self._peek()
        if byte not in _VALUE_STARTS or (closer == _RBRACE and byte != _QUOTE):
            expected = "a string key" if closer == _RBRACE else "a value"
            raise self._syntax(f"expected {expected}, found {_show_byte(byte)}")
        return True

    def _key(self) -> _Steps[str]:
        """An object key and its ':' (at the key's opening quote)."""
        self.pos += 1
        key = yield from self._string("a key")
        assert key is not None
        byte = yield from self._peek()
        if byte != _COLON:
            raise self._syntax(f"expected ':' after a key, found {_show_byte(byte)}")
        self.pos += 1
        return key

    def _string(
        self, kept_as: str | None, *, body: re.Pattern[bytes] = _STRING_BODY
    ) -> _Steps[str | None]:
        """A JSON string (opening quote consumed), checked in bulk: its value if `kept_as`
        names it (for messages; at most MAX_STRING_BYTES as written), else None."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        kept = bytearray() if kept_as is not None else None
        while True:
            buf, pos = self.buf, self.pos
            match = body.match(buf, pos)
            end = match.end() if match is not None else pos
            # Escapes are ASCII, so decoding the text as written checks its UTF-8.
            self._utf8(decoder, buf[pos:end])
            self.pos = end
            if kept is not None:
                kept += buf[pos:end]
                if len(kept) > MAX_STRING_BYTES:
                    raise bad_request(
                        f"{kept_as} is longer than {MAX_STRING_BYTES} bytes", field=kept_as
                    )
            if end < len(buf):
                if buf[end] == _QUOTE:
                    self._utf8(decoder, b"", final=True)
                    self.pos = end + 1
                    # Valid by now; json gives it JSON's exact meaning (surrogate pairs...).
                    return None if kept is None else str(json.loads(b'"' + kept + b'"'))
                if buf[end] != _BACKSLASH:
                    raise self._syntax(f"unescaped control character U+{buf[end]:04X} in a string")
                if _PARTIAL_ESCAPE.match(buf, end) is None:
                    shown = buf[end : end + 6].decode("utf-8", "backslashreplace")
                    raise self._syntax(f"invalid escape {shown!r} in a string")
            yield from self._wait()

    def _skip_short_string(self) -> bool:
        """Skip the string at `pos` if it is whole and valid in this chunk (the usual
        case: no generator for it); False, with nothing consumed, otherwise."""
        start = self.pos + 1
        match = _STRING_BODY.match(self.buf, start)
        end = start if match is None else match.end()
        if end == len(self.buf) or self.buf[end] != _QUOTE:
            return False
        try:
            self.buf[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return False  # `_string` says where
        self.pos = end + 1
        return True

    def _utf8(self, decoder: codecs.IncrementalDecoder, data: bytes, final: bool = False) -> None:
        try:
            decoder.decode(data, final)
        except UnicodeDecodeError:
            raise self._syntax("a string is not valid UTF-8") from None

    def _escape(self) -> _Steps[str]:
        """The character of the escape at `pos` (a backslash), consumed."""
        while len(self.buf) - self.pos < 2:
            yield from self._wait()
        code = self.buf[self.pos + 1]
        if code == ord("u"):
            while len(self.buf) - self.pos < 6:
                yield from self._wait()
            digits = self.buf[self.pos + 2 : self.pos + 6]
            if _HEX4.fullmatch(digits) is None:
                raise self._syntax(f"invalid escape {digits.decode('latin-1')!r} after '\\u'")
            self.pos += 6
            return chr(int(digits, 16))
        char = _SIMPLE_ESCAPES.get(code)
        if char is None:
            raise self._syntax(f"invalid escape: {_show_byte(code)} after a backslash")
        self.pos += 2
        return char

    def _option(self, key: str, where: str, into: FileOptions) -> _Steps[None]:
        """Read and validate `attributes` or `chunking_strategy` (SPEC 11.1) into `into`."""
        if key in into:
            raise bad_request(f"{where} is given more than once", field=where)
        self.where = where
        yield from self._ignored_token()  # within the same budget as unknown keys
        value = yield from self._skip_value(keep=True)
        into[key] = validate_option(key, value, where)

    def _skip_value(self, *, keep: bool = False) -> _Steps[object]:
        """Check and discard one value of any type (at its first byte, after whitespace);
        with `keep`, return it (its strings each at most MAX_STRING_BYTES).

        Only brackets and strings are followed here, to find where the value ends; the
        value's text with its strings emptied is kept meanwhile and `json.loads` checks
        the grammar at the end, at C speed. Strings are checked by `_string` and never
        kept, so a long one costs no memory.
        """
        start = self.offset + self.pos
        text = bytearray()
        depth = 0
        while True:
            buf, pos = self.buf, self.pos
            stop = (_SKIP_STOP_NESTED if depth else _SKIP_STOP_TOP).search(buf, pos)
            end = len(buf) if stop is None else stop.start()
            text += buf[pos:end]
            self.pos = end
            if self.ignored + len(text) > MAX_IGNORED_BYTES:
                raise bad_request(
                    f"Values under unknown keys hold more than {MAX_IGNORED_BYTES} bytes "
                    "besides their strings; send only filename, content and mime_type"
                )
            if stop is None:
                yield from self._wait()
                continue
            byte = buf[end]
            if byte != _COMMA:  # a string or a bracket
                yield from self._ignored_token()
            if byte == _QUOTE and keep:
                self.pos += 1
                value = yield from self._string(self.where)
                text += json.dumps(value).encode()  # valid JSON again, ASCII only
                continue
            if byte == _QUOTE:
                if not self._skip_short_string():
                    self.pos += 1
                    yield from self._string(None)
                text += b'""'
                continue
            if byte == _LBRACE or byte == _LBRACKET:
                if depth == MAX_DEPTH:
                    raise self._syntax(f"values nest more than {MAX_DEPTH} levels deep")
                depth += 1
            elif depth == 0:
                break  # a ',' or the parent's closing bracket: the value ended before it
            elif byte == _RBRACE or byte == _RBRACKET:
                depth -= 1
            text.append(byte)
            self.pos += 1
            if depth == 0:
                break
        self.ignored += len(text)
        try:
            if keep:
                return _KEPT_VALUE.decode(text.decode("utf-8"))
            # Numbers are not converted (int() refuses over 4,300 digits); NaN and
            # Infinity, which json accepts, are not JSON.
            _IGNORED_VALUE.decode(text.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else "not valid JSON"
            raise bad_request(
                f"Invalid JSON body: {problem} in the value of "
                f"{self.where if keep else 'an unknown key'} starting at byte {start} "
                f"(in {self.where})",
                offset=start,
            ) from None
        return None


def _base64_run(buf: bytes, pos: int, end: int, *, try_uniform: bool) -> tuple[bytes, int]:
    """The text of the run of `buf` from `pos` with its escapes replaced (whitespace
    is left to the sink), and where the run stops: at `end`, or at an escape it cannot handle in
    bulk (such as `\\u0041`, or one cut off by the end of the chunk)."""
    backslash = buf.find(b"\\", pos, end)
    if backslash == -1:
        text, stop = buf[pos:end], end
    elif try_uniform and backslash == pos and (hex_run := _unescape_hex_run(buf, pos, end)):
        text, stop = hex_run
    else:
        uniform = None
        if try_uniform:
            uniform = _strip_uniform_escapes(buf[pos:end], buf[backslash : backslash + 6])
        if uniform is not None:
            text, stop = uniform, end
        else:
            other = _OTHER_ESCAPE.search(buf, backslash, end)
            stop = end if other is None else other.start()
            text = _strip_escapes(buf[pos:stop])
    return text, stop


def _unescape_hex_run(buf: bytes, pos: int, end: int) -> tuple[bytes, int] | None:
    """The text of `buf[pos:end]` if, up to its last whole escape, it is made only of
    `\\u00XX` escapes of ASCII characters (content written entirely as escapes), and
    where that stops; None otherwise.

    Slices pick out each position of the 6-byte escapes at C speed: the fixed parts are
    counted, the two hex digits of each are checked and decoded by `bytes.fromhex`.
    Whitespace is dropped (the sink would drop it anyway).
    """
    count = (end - pos) // 6
    if count < 2:
        return None
    stop = pos + 6 * count
    run = buf[pos:stop]
    if (
        run[0::6].count(b"\\") != count
        or run[1::6].count(b"u") != count
        or run[2::6].count(b"0") != count
        or run[3::6].count(b"0") != count
    ):
        return None
    digits = bytearray(2 * count)
    digits[0::2] = run[4::6]
    digits[1::2] = run[5::6]
    if digits.translate(None, _HEX_DIGITS):  # fromhex would skip spaces: not JSON
        return None
    text = bytes.fromhex(digits.decode("ascii"))
    if not text.isascii():
        return None  # the escape-by-escape path names the character
    return text.translate(None, _CONTENT_WHITESPACE), stop


def _strip_uniform_escapes(text: bytes, first: bytes) -> bytes | None:
    """`text` without its escapes if they are all alike, as encoders write them: all
    `\\/`, or all `\\n`, or all `\\r\\n`, or all `\\u002B`... (`first` starts the first
    one). None otherwise, and then nothing is assumed about `text`.

    One pass each, and sound on any input: `count` proves that every backslash is
    followed by '/'; a single `replace` that leaves no backslash proves that every
    backslash began a match, so none was an escaped backslash whose neighbour only
    looks like the rest of an escape.
    """
    if first.startswith(b"\\/"):
        stripped = text.translate(None, b"\\")
        return stripped if text.count(b"\\/") == len(text) - len(stripped) else None
    if first.startswith(b"\\r\\n"):
        escape = first[:4]
    else:
        escape = first if first.startswith(b"\\u") else first[:2]
    replacement = _UNIFORM_ESCAPES.get(escape)
    if replacement is None:
        return None
    stripped = text.replace(escape, replacement)
    return stripped if b"\\" not in stripped else None


def _strip_escapes(text: bytes) -> bytes:
    """`text` with its escapes replaced, which may be any mix of _ASCII_ESCAPES.

    Every backslash in `text` starts one of those (`_OTHER_ESCAPE` stopped the run before
    any other). A `replace` swaps whole escapes of one kind and, as long as no
    replacement is a backslash, cannot join bytes into a new one: so the common kinds go
    one pass each, and the first rare kind hands everything left to a single
    left-to-right `sub` (whose output is not read again).
    """
    while (backslash := text.find(b"\\")) != -1:
        size = 6 if text.startswith(b"\\u", backslash) else 2
        escape = text[backslash : backslash + size]
        replacement = _BULK_ESCAPES.get(escape)
        if replacement is None:
            return _unescape_ascii(text)
        text = text.replace(escape, replacement)
    return text


def _unescape_ascii(text: bytes) -> bytes:
    """`text` with its escapes (any mix of _ASCII_ESCAPES) replaced, in one C-level pass.

    The run is a valid JSON string body (no quote, and only escapes of ASCII characters),
    so json's own string scanner decodes it; whitespace, escaped or raw, is dropped (the
    sink would drop it anyway). A run that is not ASCII as written cannot be base64 and
    takes the slow way, so that the sink names the character at fault.
    """
    try:
        value = str(_LENIENT_JSON.decode('"' + text.decode("ascii") + '"'))
    except UnicodeDecodeError:
        return _ASCII_ESCAPE.sub(_ascii_escape, text)
    return value.encode("ascii").translate(None, _CONTENT_WHITESPACE)


def _ascii_escape(match: re.Match[bytes]) -> bytes:
    return _ASCII_ESCAPES[match.group()]


def _check_unicode(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(
            f"{where} holds an unpaired surrogate (\\ud800-\\udfff) escape", field=where
        ) from None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


# Checks a skipped value (made once: building a decoder per value cost more than using it).
_IGNORED_VALUE = json.JSONDecoder(parse_int=len, parse_float=len, parse_constant=_not_json)
# Reads an option's value (SPEC 11.1): numbers as numbers, still no NaN or Infinity.
_KEPT_VALUE = json.JSONDecoder(parse_constant=_not_json)


def _show_byte(byte: int) -> str:
    return repr(chr(byte)) if 0x20 <= byte < 0x7F else f"byte 0x{byte:02x}"


async def receive_base64_json(
    chunks: AsyncIterator[bytes],
    workdir: Path,
    *,
    max_files: int,
    max_body_bytes: int,
    reserve: Reserve | None = None,
    check: Callable[[StagedFile], Awaitable[StagedFile]] | None = None,
    options: FileOptions | None = None,
) -> list[StagedFile]:
    """Every file of the body, once all of it has been read and found valid (see
    `stream_base64_json`): the first invalid thing raises, and nothing is returned."""
    return [
        file
        async for file in stream_base64_json(
            chunks,
            workdir,
            max_files=max_files,
            max_body_bytes=max_body_bytes,
            reserve=reserve,
            check=check,
            options=options,
        )
    ]


async def stream_base64_json(
    chunks: AsyncIterator[bytes],
    workdir: Path,
    *,
    max_files: int,
    max_body_bytes: int,
    reserve: Reserve | None = None,
    check: Callable[[StagedFile], Awaitable[StagedFile]] | None = None,
    options: FileOptions | None = None,
) -> AsyncIterator[StagedFile]:
    """Yield each file of a base64 JSON upload body, validated and in `workdir`, as soon
    as its entry has closed and its content passed its check, in request order.

    Each file carries its own `attributes` / `chunking_strategy` (validated); the body's
    top-level ones are put into `options` when the body has ended (they may follow
    `files`), so they are read only then.

    `check` runs a file's content check and returns the file to keep (with the encoding
    to transcode it from); the route passes the bounded executor's (see
    `ingest.content_checker`). Without one the check runs in a plain thread.

    The first invalid thing raises an AppError (400, 413 or 415), possibly after files
    were yielded: the caller undoes what it did with them (all or nothing for the
    client; see ingest). Files written stay in `workdir` for the caller to remove with
    it. Every temp file handle is closed on every path. `reserve` is awaited with the
    body's size so far before each chunk is parsed (and any of it written).
    """
    parser = _Parser(workdir, max_files)
    received = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            received += len(chunk)
            if received > max_body_bytes:
                raise body_too_large(max_body_bytes)
            if reserve is not None:
                await reserve(received)
            async for staged in _parsed(parser, chunk):
                if check is None:
                    encoding = await asyncio.to_thread(
                        check_content, staged.path, staged.kind, staged.filename
                    )
                    yield replace(staged, encoding=encoding)
                else:
                    yield await check(staged)
        async for _ in _parsed(parser, None):
            pass  # the body ended: nothing completes here, the document must be whole
    finally:
        parser.close()
    if options is not None:
        options.update(parser.options)


async def _parsed(parser: _Parser, chunk: bytes | None) -> AsyncIterator[StagedFile]:
    """The files `chunk` completes (None: the body has ended), handing the event loop
    back whenever the parser pauses."""
    done = parser.feed(chunk) if chunk is not None else parser.finish()
    while True:
        for staged in done:
            yield staged
        if not parser.paused:
            return
        await asyncio.sleep(0)
        done = parser.proceed()
