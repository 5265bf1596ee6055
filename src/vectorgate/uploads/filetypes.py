"""Allowed upload types (SPEC 3.4, 11.4) and the checks that a file is what it claims to be.

A file's kind comes from its declared MIME type and its extension, which must agree;
`check_size` and `check_content` then hold the bytes to that kind's rules. Text that is
not UTF-8 has its encoding found here (see uploads/encodings.py) and is transcoded
before upload by uploads/convert.py.
"""

from __future__ import annotations

import codecs
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import ijson  # type: ignore[import-untyped]

from vectorgate.errors import AppError, ErrorCode, bad_request
from vectorgate.uploads.encodings import FORBIDDEN_CONTROLS, WINDOWS_1252, detect_multibyte
from vectorgate.uploads.work import check_deadline

# The C backend keeps validation at tens of MB/s with flat memory; the pure-Python ones
# are ~50x slower, which would let a 10 MB file hold a worker for a long time.
if ijson.backend != "yajl2_c":  # pragma: no cover - depends on how ijson was built
    raise ImportError(
        f"ijson's C backend (yajl2_c) is required to check JSON uploads; got {ijson.backend}"
    )

MiB = 1024 * 1024

# Text content is decoded in chunks of this size, never read whole.
CHUNK_SIZE = MiB


@dataclass(frozen=True, slots=True)
class FileKind:
    name: str
    mime_type: str
    extensions: tuple[str, ...]
    max_bytes: int

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # Kinds are compared by identity (`kind is CSV`), so the copy a worker process
        # receives must be the module's own object, not an equal one.
        return (kind_named, (self.name,))


PDF = FileKind("pdf", "application/pdf", (".pdf",), 50 * MiB)
TEXT = FileKind("text", "text/plain", (".txt",), 10 * MiB)
MARKDOWN = FileKind("markdown", "text/markdown", (".md", ".markdown"), 10 * MiB)
CSV = FileKind("csv", "text/csv", (".csv",), 10 * MiB)
JSON = FileKind("json", "application/json", (".json",), 10 * MiB)
DOCX = FileKind(
    "docx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    (".docx",),
    50 * MiB,
)
PPTX = FileKind(
    "pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    (".pptx",),
    50 * MiB,
)
XLSX = FileKind(
    "xlsx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    (".xlsx",),
    50 * MiB,
)

# The text types OpenAI file search indexes besides the ones above (SPEC 11.4), sent as
# they are. The first MIME type is the one they are sent upstream with.
HTML = FileKind("html", "text/html", (".html", ".htm"), 10 * MiB)
CSS = FileKind("css", "text/css", (".css",), 10 * MiB)
JAVASCRIPT = FileKind("javascript", "text/javascript", (".js", ".mjs"), 10 * MiB)
TYPESCRIPT = FileKind("typescript", "application/typescript", (".ts",), 10 * MiB)
PYTHON = FileKind("python", "text/x-python", (".py",), 10 * MiB)
JAVA = FileKind("java", "text/x-java", (".java",), 10 * MiB)
C = FileKind("c", "text/x-c", (".c", ".h"), 10 * MiB)
CPP = FileKind("cpp", "text/x-c++", (".cpp", ".hpp", ".cc"), 10 * MiB)
CSHARP = FileKind("csharp", "text/x-csharp", (".cs",), 10 * MiB)
GO = FileKind("go", "text/x-golang", (".go",), 10 * MiB)
RUBY = FileKind("ruby", "text/x-ruby", (".rb",), 10 * MiB)
PHP = FileKind("php", "text/x-php", (".php",), 10 * MiB)
SHELL = FileKind("shell", "application/x-sh", (".sh",), 10 * MiB)
TEX = FileKind("tex", "text/x-tex", (".tex",), 10 * MiB)

SOURCE_KINDS: tuple[FileKind, ...] = (
    HTML,
    CSS,
    JAVASCRIPT,
    TYPESCRIPT,
    PYTHON,
    JAVA,
    C,
    CPP,
    CSHARP,
    GO,
    RUBY,
    PHP,
    SHELL,
    TEX,
)

KINDS: tuple[FileKind, ...] = (PDF, TEXT, MARKDOWN, CSV, JSON, DOCX, PPTX, XLSX, *SOURCE_KINDS)

# Kinds whose content is text: checked by `_check_text`, transcoded when not UTF-8.
TEXT_KINDS: frozenset[FileKind] = frozenset({TEXT, MARKDOWN, CSV, JSON, *SOURCE_KINDS})
MAX_FILE_BYTES = max(kind.max_bytes for kind in KINDS)


def kind_named(name: str) -> FileKind:
    return next(kind for kind in KINDS if kind.name == name)


# Non-canonical MIME types that real clients send. `application/vnd.ms-excel` is what
# Windows reports for .csv; naming CSV here means it is accepted only for a .csv name.
MIME_ALIASES: dict[str, FileKind] = {
    "text/x-markdown": MARKDOWN,
    "application/csv": CSV,
    "text/x-csv": CSV,
    "application/vnd.ms-excel": CSV,
    "text/json": JSON,
    "application/x-json": JSON,
    "application/x-pdf": PDF,
    # The second MIME types of SPEC 11.4's table.
    "application/javascript": JAVASCRIPT,
    "text/x-typescript": TYPESCRIPT,
    "text/x-script.python": PYTHON,
    "text/x-sh": SHELL,
}

# Browsers and curl often declare text/plain for these; the extension then decides.
TEXT_PLAIN_ALSO_FOR: frozenset[FileKind] = TEXT_KINDS - {TEXT}

GENERIC_MIME = "application/octet-stream"

_BY_MIME = {kind.mime_type: kind for kind in KINDS} | MIME_ALIASES
_BY_EXTENSION = {ext: kind for kind in KINDS for ext in kind.extensions}
_ALLOWED_EXTENSIONS = ", ".join(_BY_EXTENSION)

# A ZIP's central directory is read whole by zipfile, one ZipInfo (~570 bytes) per entry:
# 900k tiny entries cost 514 MiB and ~7 s. Real DOCX/PPTX/XLSX files have tens to a few
# thousand parts, so more entries, or a directory larger than this, is not a real Office
# package (a 415); at the caps zipfile needs ~12 MiB and ~0.1 s.
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_DIRECTORY_BYTES = 4 * MiB

# Depth of JSON nesting accepted, as json.loads could (Python's recursion limit) before.
MAX_JSON_DEPTH = 1_000

# The part each Office package must hold besides [Content_Types].xml.
_OFFICE_MAIN_PARTS = {
    DOCX: "word/document.xml",
    PPTX: "ppt/presentation.xml",
    XLSX: "xl/workbook.xml",
}


def kind_for(filename: str, declared_mime: str | None, *, infer_generic: bool) -> FileKind:
    """Resolve the kind of `filename` declared as `declared_mime`, or raise 415.

    With `infer_generic` (multipart route) a missing, empty or `application/octet-stream`
    type resolves from the extension alone; without it (base64 route) those are a 415.
    """
    _, dot, suffix = filename.rpartition(".")
    extension = f".{suffix.lower()}" if dot else ""
    by_extension = _BY_EXTENSION.get(extension)
    mime = (declared_mime or "").split(";", 1)[0].strip().lower()
    details: dict[str, object] = {
        "filename": filename,
        "extension": extension,
        "mime_type": declared_mime,
    }

    if by_extension is None:
        what = f"extension {extension}" if extension else "no extension"
        raise _unsupported(
            f"{filename}: file type not allowed ({what}); allowed extensions: "
            f"{_ALLOWED_EXTENSIONS}",
            details,
        )
    if mime in ("", GENERIC_MIME):
        if infer_generic:
            return by_extension
        declared = f"declared {mime}" if mime else "no MIME type declared"
        raise _unsupported(
            f"{filename}: {declared}; send the file's type ({by_extension.mime_type})", details
        )
    by_mime = _BY_MIME.get(mime)
    if by_mime is None:
        raise _unsupported(f"{filename}: declared type {mime} is not allowed", details)
    if by_mime is TEXT and by_extension in TEXT_PLAIN_ALSO_FOR:
        return by_extension
    if by_mime is not by_extension:
        raise _unsupported(
            f"{filename}: declared {mime} but the extension {extension} is for "
            f"{by_extension.mime_type}",
            details,
        )
    return by_mime


def check_size(kind: FileKind, size: int, filename: str) -> None:
    """Raise 413 if `size` is over the kind's limit; exactly the limit is allowed."""
    if size > kind.max_bytes:
        raise AppError(
            413,
            ErrorCode.FILE_TOO_LARGE,
            f"{filename}: {size} bytes is over the {kind.max_bytes // MiB} MB limit "
            f"for {kind.name} files",
            details={"filename": filename, "max_bytes": kind.max_bytes, "size": size},
        )


# Files whose check costs about a millisecond at most, less than a trip to a content
# worker and back, so they are checked where they arrive. Measured worst cases: 4 KiB of
# JSON events or of ZIP directory ~1 ms; 64 KiB of text to decode ~0.1 ms.
CHEAP_CHECK_BYTES = 4 * 1024
CHEAP_TEXT_CHECK_BYTES = 64 * 1024


def cheap_to_check(kind: FileKind, size: int) -> bool:
    """Whether checking a `kind` file of `size` bytes is too cheap to send to a worker."""
    if kind in TEXT_KINDS and kind is not JSON:
        return size <= CHEAP_TEXT_CHECK_BYTES
    return size <= CHEAP_CHECK_BYTES


class NotCheap(Exception):
    """Raised by a `quick` check that met text in a legacy encoding (see `check_content`)."""


def check_content(path: Path, kind: FileKind, filename: str, *, quick: bool = False) -> str | None:
    """Check that the stored file at `path` really is a `kind` file (blocking I/O).

    Returns the codec of a text file to transcode to UTF-8 before upload (SPEC 11.4), or
    None when the file goes up as it is. An empty file is a 400 for every kind (there is
    nothing to index); a file over the kind's limit is a 413 (the size is re-checked here
    so this check is safe on its own); content that does not match the kind is a 415.

    With `quick` (a small file checked on the event loop, see `cheap_to_check`), text
    that is not UTF-8 raises `NotCheap` instead: detecting its encoding costs a few
    milliseconds, work for the bounded executor.
    """
    size = path.stat().st_size
    if size == 0:
        raise _empty(filename)
    check_size(kind, size, filename)
    if kind is PDF:
        _check_pdf(path, filename)
        return None
    if kind in _OFFICE_MAIN_PARTS:
        _check_office(path, kind, filename)
        return None
    return _check_text(path, kind, filename, quick)


def _check_pdf(path: Path, filename: str) -> None:
    with path.open("rb") as f:
        if f.read(5) != b"%PDF-":
            raise _mismatch(filename, PDF, "the content is not a PDF (no %PDF- header)")


def _check_office(path: Path, kind: FileKind, filename: str) -> None:
    main_part = _OFFICE_MAIN_PARTS[kind]
    label = f"a {kind.name.upper()} package"
    try:
        check_zip_directory(path, kind, filename)
        # Opening reads only the central directory; nothing is decompressed.
        with zipfile.ZipFile(path) as package:
            names = set(package.namelist())
    except (zipfile.BadZipFile, NotImplementedError, ValueError):
        # NotImplementedError: an unknown ZIP version; ValueError: a name flagged UTF-8
        # that is not. Neither could be read upstream either.
        raise _mismatch(
            filename, kind, f"the content is not {label} (not a readable ZIP file)"
        ) from None
    if "[Content_Types].xml" not in names:
        raise _mismatch(filename, kind, f"the content is not {label} (no [Content_Types].xml)")
    if main_part not in names:
        raise _mismatch(filename, kind, f"the content is not {label} (no {main_part})")


_EOCD = struct.Struct("<4s4H2LH")  # End Of Central Directory record
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
_MAX_ZIP_COMMENT = 0xFFFF


def check_zip_directory(path: Path, kind: FileKind, filename: str) -> None:
    """Refuse (415) a ZIP whose central directory is too big for an Office package.

    Reads only the End Of Central Directory record (and its ZIP64 form), so this costs
    the same for any file. A file without that record is left to zipfile to refuse.
    """
    with path.open("rb") as f:
        size = f.seek(0, 2)
        tail_start = max(0, size - _EOCD.size - _MAX_ZIP_COMMENT)
        f.seek(tail_start)
        tail = f.read()
        # As zipfile: the record that ends the file exactly, else the last one found.
        at = len(tail) - _EOCD.size
        if at < 0 or tail[at : at + 4] != _EOCD_SIGNATURE:
            at = tail.rfind(_EOCD_SIGNATURE, 0, max(0, len(tail) - _EOCD.size + 4))
            if at < 0:
                return
        fields = _EOCD.unpack_from(tail, at)
        entries, directory_bytes = fields[4], fields[5]
        if 0xFFFF in fields[1:5] or 0xFFFFFFFF in fields[5:7]:
            eocd_at = tail_start + at
            entries, directory_bytes = _zip64_directory(f, eocd_at, entries, directory_bytes)
    label = f"a {kind.name.upper()} package"
    if entries > MAX_ZIP_ENTRIES:
        raise _mismatch(
            filename,
            kind,
            f"the content is not {label} (its ZIP directory lists {entries} entries; "
            f"an Office file has at most {MAX_ZIP_ENTRIES})",
        )
    if directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise _mismatch(
            filename,
            kind,
            f"the content is not {label} (its ZIP directory is {directory_bytes} bytes; "
            f"an Office file's is at most {MAX_ZIP_DIRECTORY_BYTES // MiB} MB)",
        )


def _zip64_directory(f: BinaryIO, eocd_at: int, entries: int, size: int) -> tuple[int, int]:
    if eocd_at < _ZIP64_LOCATOR.size:
        return entries, size
    f.seek(eocd_at - _ZIP64_LOCATOR.size)
    signature, _, record_at, _ = _ZIP64_LOCATOR.unpack(f.read(_ZIP64_LOCATOR.size))
    if signature != _ZIP64_LOCATOR_SIGNATURE:
        return entries, size
    f.seek(record_at)
    record = f.read(_ZIP64_EOCD.size)
    if len(record) < _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIGNATURE:
        # Where zipfile looks when data was prepended to the archive.
        f.seek(max(0, eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size))
        record = f.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIGNATURE:
            return entries, size
    fields = _ZIP64_EOCD.unpack(record)
    return fields[6], fields[7]


def _check_text(path: Path, kind: FileKind, filename: str, quick: bool) -> str | None:
    """Check a text file; return the codec to transcode it from, or None if it is UTF-8.

    UTF-8 (with or without a BOM) goes up as it is; UTF-16 with a BOM is transcoded (file
    search indexes UTF-8 best, and CSV needed it already). Anything else is decoded in
    the encoding SPEC 11.4 allows for it, or refused (415): an East Asian multi-byte
    encoding the detector is confident of, else Windows-1252.
    """
    json_check = _JsonCheck(filename) if kind is JSON else None
    with path.open("rb") as f:
        head = f.read(len(codecs.BOM_UTF8))
        encoding, label, bom = _text_encoding(head)
        if path.stat().st_size == len(bom):
            raise _empty(filename)  # a BOM alone: there is no text to index
        bad = _scan(f, len(bom), encoding, kind, filename, _NUL, json_check)
        if bad is None:
            if json_check is not None:
                json_check.finish()
            return "utf-16" if bom in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else None
        if bom or not _ascii_before(f, bad):
            # A BOM says UTF-8, and so do UTF-8 characters before the bad byte: read as
            # Windows-1252, each of them would become two or three wrong ones.
            raise _mismatch(
                filename, kind, f"the content is not valid {label} text (bad byte at offset {bad})"
            )
        if quick:
            raise NotCheap(filename)
        legacy = _legacy_encoding(f, kind, filename, bad)
        if kind is JSON:
            # Checked once the encoding is known, not in each encoding tried.
            json_check = _JsonCheck(filename)
            _scan(f, 0, legacy, kind, filename, FORBIDDEN_CONTROLS, json_check)
            json_check.finish()
        return legacy


def _legacy_encoding(f: BinaryIO, kind: FileKind, filename: str, bad: int) -> str:
    """The codec of a text file whose byte at `bad` is not UTF-8, or 415 (SPEC 11.4)."""
    multibyte = detect_multibyte(f, bad)
    if multibyte is not None:
        # A control character here rules the candidate out rather than the file (cp932
        # reads 0x80 as U+0080, where Windows-1252 has the euro sign).
        decodes = _scan(f, 0, multibyte, kind, filename, FORBIDDEN_CONTROLS, refuse=False)
        if decodes is None:
            return multibyte
    undefined = _scan(f, 0, WINDOWS_1252, kind, filename, FORBIDDEN_CONTROLS)
    if undefined is None:
        return WINDOWS_1252
    f.seek(undefined)
    byte = f.read(1)[0]
    raise _unsupported(
        f"{filename}: the text is not UTF-8 and its encoding could not be detected with "
        f"confidence (byte 0x{byte:02X} at offset {undefined} is not Windows-1252 either)",
        {"filename": filename, "mime_type": kind.mime_type, "offset": undefined},
    )


def _ascii_before(f: BinaryIO, end: int) -> bool:
    """Whether `f`'s bytes before offset `end` are all ASCII."""
    f.seek(0)
    while end > 0:
        check_deadline()
        chunk = f.read(min(CHUNK_SIZE, end))
        if not chunk.isascii():
            return False
        end -= len(chunk)
    return True


# Text in UTF-8 or UTF-16 may hold any character but NUL, as before SPEC 11.4.
_NUL = re.compile("\x00")


def _scan(
    f: BinaryIO,
    start: int,
    encoding: str,
    kind: FileKind,
    filename: str,
    forbidden: re.Pattern[str],
    json_check: _JsonCheck | None = None,
    *,
    refuse: bool = True,
) -> int | None:
    """Decode `f` from `start` to its end as `encoding`, in chunks, and check the text.

    Returns the offset of the first byte that is not `encoding`, or None when all of it
    decodes. Text holding a `forbidden` character is a 415 (without `refuse`, it counts
    as not `encoding`: the offset of its chunk is returned), and so is JSON `json_check`
    refuses (it is fed the text as UTF-8; the caller finishes it).
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    f.seek(start)
    offset = start  # file offset of the current chunk's first byte
    while True:
        check_deadline()
        chunk = f.read(CHUNK_SIZE)
        final = not chunk
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            return offset - pending + exc.start
        if found := forbidden.search(text):
            if not refuse:
                return offset
            raise _mismatch(filename, kind, _not_text(found.group()))
        if json_check is not None:
            json_check.feed(chunk if encoding == "utf-8" else text.encode())
        if final:
            return None
        offset += len(chunk)


def _not_text(character: str) -> str:
    if character == "\x00":
        return "the content contains a NUL character, so it is not text"
    return f"the content contains the control character U+{ord(character):04X}, so it is not text"


class _JsonCheck:
    """Streaming JSON validation: ijson's events are counted for depth, never kept.

    yajl refuses what json.loads accepted but JSON does not allow (NaN, Infinity,
    -Infinity). Integers become Python ints, so int()'s limit applies: over 4,300 digits
    is refused as too long to check (converting more is quadratic).
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.events = ijson.sendable_list()
        self.parser = ijson.basic_parse_coro(self.events)
        self.depth = 0

    def feed(self, data: bytes) -> None:
        for start in range(0, len(data), _JSON_STEP):
            check_deadline()
            self._step(data[start : start + _JSON_STEP])

    def finish(self) -> None:
        self._step(None)

    def _step(self, data: bytes | None) -> None:
        """Parse `data`, or the end of the input if None, and check what it held."""
        try:
            if data is None:
                self.parser.close()
            else:
                self.parser.send(data)
        except ijson.JSONError as exc:
            problem = str(exc).strip().splitlines()[0].removeprefix("b'")
            raise self._invalid(f"the content is not valid JSON ({problem})") from None
        except (ValueError, SystemError):
            # int() of a number over 4,300 digits, raised through the C parser.
            raise self._invalid(
                "the JSON holds a number too long to check (over 4,300 digits)"
            ) from None
        depth = self.depth
        for event, _ in self.events:
            if event in ("start_map", "start_array"):
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    raise self._invalid("the JSON is nested too deeply to check")
            elif event in ("end_map", "end_array"):
                depth -= 1
        self.depth = depth
        self.events.clear()

    def _invalid(self, problem: str) -> AppError:
        return _mismatch(self.filename, JSON, problem)


# JSON is fed to the parser in steps of this size, so each step's events stay few.
_JSON_STEP = 64 * 1024


def _text_encoding(head: bytes) -> tuple[str, str, bytes]:
    """(codec, label for messages, BOM) for text starting with `head`."""
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", "UTF-16", codecs.BOM_UTF16_LE
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", "UTF-16", codecs.BOM_UTF16_BE
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", "UTF-8", codecs.BOM_UTF8
    return "utf-8", "UTF-8", b""


def _empty(filename: str) -> AppError:
    return bad_request(f"{filename}: file is empty", filename=filename)


def _mismatch(filename: str, kind: FileKind, problem: str) -> AppError:
    return _unsupported(
        f"{filename}: {problem}",
        {"filename": filename, "mime_type": kind.mime_type},
    )


def _unsupported(message: str, details: dict[str, object]) -> AppError:
    return AppError(415, ErrorCode.UNSUPPORTED_FILE_TYPE, message, details=details)
