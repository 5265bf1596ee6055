"""Upload filenames: reading them from multipart headers and making them safe to keep.

Names are preserved exactly as the client wrote them (any script, spaces, punctuation);
only path parts are dropped and the text NFC-normalized. What cannot be a file name, or
could disguise one (control and bidi-override characters), is refused rather than fixed.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

from vectorgate.errors import AppError, bad_request

MAX_FILENAME_BYTES = 255

# Bidi_Control characters: they can make "exe.pdf" display as "fdp.exe" and the like.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

# How much of a bad name an error message shows.
_SHOWN_CHARS = 60


def clean_filename(raw: str) -> str:
    """Return the last path component of `raw`, NFC-normalized, or raise 400.

    Refused: an empty name, "." or "..", control characters (category Cc), lone
    surrogates, bidi control characters, and names over 255 bytes in UTF-8.
    """
    name = re.split(r"[/\\]", unicodedata.normalize("NFC", raw))[-1]
    if name in ("", ".", ".."):
        raise _bad_name(name, "is empty" if not name else "is not a file name")
    bad = next((ch for ch in name if _is_forbidden(ch)), None)
    if bad is not None:
        raise _bad_name(name, f"contains the forbidden character U+{ord(bad):04X}")
    size = len(name.encode("utf-8"))
    if size > MAX_FILENAME_BYTES:
        raise _bad_name(name, f"is {size} bytes long in UTF-8; at most {MAX_FILENAME_BYTES}")
    return name


def _is_forbidden(ch: str) -> bool:
    # Cs: a lone surrogate, which JSON escapes can produce and UTF-8 cannot encode.
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS


def _bad_name(name: str, problem: str) -> AppError:
    shown = "".join(f"\\u{ord(ch):04x}" if _is_forbidden(ch) else ch for ch in name[:_SHOWN_CHARS])
    if len(name) > _SHOWN_CHARS:
        shown += f"… ({len(name)} characters)"
    return bad_request(f"Invalid filename '{shown}': it {problem}", filename=shown)


# One `name[=value]` parameter of a Content-Disposition header, then `;` or the end.
# A quoted value may hold backslash pairs; `;` inside quotes does not end it. Written so
# that no two parts can match the same whitespace: the header is client input, and an
# ambiguous pattern backtracks quadratically on a long run of spaces.
_PARAM = re.compile(
    r'([^\s=;"]+)(?:\s*=\s*+("(?:[^"\\]|\\.)*"|(?:[^\s;"]+(?:\s+[^\s;"]+)*)?))?\s*(?:;|\Z)',
    re.DOTALL,
)
_EXT_VALUE_CHARSETS = ("utf-8", "iso-8859-1")


def parse_content_disposition(header: bytes) -> tuple[str | None, str | None]:
    """Return (field name, raw filename) from a multipart part's Content-Disposition value.

    `header` is the value as received, such as `form-data; name="files"; filename="a.pdf"`.
    Either item is None when the parameter is absent; a present but empty filename is "".
    Raw UTF-8 in quoted values is read as UTF-8; `filename*` (RFC 5987, utf-8 or
    iso-8859-1) wins over `filename`; plain values are never percent-decoded. A backslash
    escapes only `"` and `\\`, so an old browser's `C:\\dir\\a.pdf` stays a path (which
    `clean_filename` strips). A header that is not UTF-8 or cannot be parsed is a 400.
    """
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("Malformed multipart body: Content-Disposition is not UTF-8") from None
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    _, _, rest = text.partition(";")  # the disposition type (form-data) is not needed
    pos = _skip_separators(rest, 0)
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None:
            raise bad_request(
                f"Malformed multipart body: cannot parse Content-Disposition {text[:200]!r}"
            )
        key, value = match.group(1).lower(), match.group(2)
        pos = _skip_separators(rest, match.end())
        if value is None:
            continue  # a bare flag: no parameter of interest has one
        if value.startswith('"'):
            value = re.sub(r'\\(["\\])', r"\1", value[1:-1])
        if key.endswith("*"):
            extended.setdefault(key[:-1], value)
        else:
            plain.setdefault(key, value)
    # Decoded only for the two parameters used, so an odd extra parameter is harmless.
    name, filename = (
        _decode_ext_value(extended[key]) if key in extended else plain.get(key)
        for key in ("name", "filename")
    )
    return name, filename


def _skip_separators(text: str, pos: int) -> int:
    while pos < len(text) and (text[pos] == ";" or text[pos].isspace()):
        pos += 1
    return pos


def _decode_ext_value(value: str) -> str:
    """Decode an RFC 5987 value: charset'language'percent-encoded-bytes."""
    charset, _, rest = value.partition("'")
    _, quote, encoded = rest.partition("'")
    charset = charset.lower()
    if not quote or charset not in _EXT_VALUE_CHARSETS:
        raise bad_request(
            f"Malformed multipart body: unsupported Content-Disposition value {value!r} "
            "(expected utf-8'' or iso-8859-1'' followed by percent-encoded text)"
        )
    try:
        return unquote_to_bytes(encoded).decode(charset)
    except UnicodeDecodeError:
        raise bad_request(
            f"Malformed multipart body: Content-Disposition value {value!r} is not {charset}"
        ) from None
