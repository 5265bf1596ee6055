"""Which legacy encoding a text upload that is not UTF-8 is in (SPEC 11.4).

Only the decision lives here; `filetypes._check_text` then decodes the whole file with
the codec chosen, and `convert.to_upstream_form` transcodes it to UTF-8.

The detector (charset-normalizer) sees a bounded sample, never the file: its cost grows
with its input and it cannot be interrupted by the content deadline, so the sample's
size is what bounds it (see docs/DECISIONS.md for the figures). Its answer is only a
candidate: the file is accepted in that encoding only if all of it decodes.
"""

from __future__ import annotations

import codecs
import re
from typing import BinaryIO

from charset_normalizer import from_bytes

# The detector reads at most this much of the file, starting just before the first byte
# that is not UTF-8. Tens of KiB of East Asian text are thousands of characters: plenty
# for a confident answer, and the detector's worst case stays a few milliseconds.
SAMPLE_BYTES = 16 * 1024

# How far before the first non-UTF-8 byte the sample may start (to begin on a boundary).
_LOOK_BACK = 1024

# Above this share of "chaos" (charset-normalizer's mess ratio: unlikely character
# sequences) the detector's answer is not confident. Real Japanese, Chinese and Korean
# prose scores 0-2 %; random valid double-byte pairs score about 17 %.
MAX_CHAOS = 0.10

# Below this many non-ASCII bytes in the sample (about 32 double-byte characters) the
# detector's answer is a guess: 20 characters of Japanese or Chinese came out as Korean
# in trials, 30 or more never did. A file with less is judged as Windows-1252.
MIN_NON_ASCII_BYTES = 64

# The detector's names for the multi-byte encodings SPEC 11.4 allows, and the codec the
# file is then decoded with: the Windows superset, which decodes everything the
# standard form does and the vendor characters real files hold.
_MULTIBYTE = {
    "shift_jis": "cp932",
    "cp932": "cp932",
    "shift_jis_2004": "cp932",
    "shift_jisx0213": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "gb18030": "gb18030",
    "big5": "cp950",
    "cp950": "cp950",
    "big5hkscs": "big5hkscs",
    "euc_kr": "cp949",
    "cp949": "cp949",
}

WINDOWS_1252 = "cp1252"

# What text in a detected encoding may not hold: C0 controls other than tab, LF, FF and
# CR, DEL, and C1 controls. Python's cp1252 codec already refuses the five bytes
# Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D).
FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

# A byte under 0x30 (controls, space, ASCII punctuation) is never the second or later
# byte of a character in any of the encodings above (Shift_JIS, GBK, Big5 and UHC trail
# bytes are 0x40 or more; GB18030's four-byte forms use 0x30-0x39), so a sample cut just
# after one starts or ends on a character boundary.


def detect_multibyte(f: BinaryIO, near: int) -> str | None:
    """The East Asian codec the detector names with confidence for `f`'s text near
    byte `near` (the first one that is not UTF-8), or None."""
    start = max(0, near - _LOOK_BACK)
    f.seek(start)
    before = f.read(near - start)
    boundary = _last_boundary(before, 0)
    if boundary is not None:
        start += boundary + 1
    elif start > 0:
        start = near  # no boundary in reach: the first non-UTF-8 byte likely starts one
    f.seek(start)
    sample = f.read(SAMPLE_BYTES)
    if len(sample) == SAMPLE_BYTES and f.read(1):
        # Cut after the last boundary in its second half, so no character is cut in two
        # (the detector refuses an encoding a truncated character does not decode in).
        end = _last_boundary(sample, len(sample) // 2)
        if end is not None:
            sample = sample[: end + 1]
    if len(sample.translate(None, _ASCII)) < MIN_NON_ASCII_BYTES:
        return None
    best = from_bytes(sample, threshold=MAX_CHAOS).best()
    if best is None or best.percent_chaos > MAX_CHAOS * 100:
        return None
    return _MULTIBYTE.get(codecs.lookup(best.encoding).name.replace("-", "_"))


_ASCII = bytes(range(0x80))


def _last_boundary(data: bytes, lowest: int) -> int | None:
    """The offset of `data`'s last byte under 0x30 at `lowest` or after, if any."""
    for at in range(len(data) - 1, lowest - 1, -1):
        if data[at] < 0x30:
            return at
    return None
