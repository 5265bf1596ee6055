"""Hostile ZIP files written directly, faster than zipfile could and as no tool would."""

from __future__ import annotations

import struct

_CENTRAL = struct.Struct("<4s6H3L5H2L")
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")

OFFICE_PARTS = {
    "docx": ("[Content_Types].xml", "word/document.xml"),
    "xlsx": ("[Content_Types].xml", "xl/workbook.xml"),
}


def zip_directory_only(entries: int, *, kind: str = "docx", zip64: bool = False) -> bytes:
    """A ZIP whose central directory lists `entries` empty stored files and nothing else.

    The entries' local headers are absent (zipfile reads only the directory when it
    opens a file), so 900k entries fit in ~45 MB. The first entries are the parts an
    Office package of `kind` must hold. With `zip64`, the counts are only in the ZIP64
    record, as a writer of over 65,535 entries must put them.
    """
    names = [name.encode() for name in OFFICE_PARTS[kind]]
    names += [f"{n:x}".encode() for n in range(entries - len(names))]
    directory = b"".join(
        _CENTRAL.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0)
        + name
        for name in names
    )
    count = 0xFFFF if zip64 or entries > 0xFFFF else entries
    tail = b""
    if zip64:
        record = _ZIP64_EOCD.pack(
            b"PK\x06\x06", _ZIP64_EOCD.size - 12, 45, 45, 0, 0, entries, entries,
            len(directory), 0,
        )  # fmt: skip
        tail = record + _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, len(directory), 1)
    eocd = _EOCD.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), 0, 0)
    return directory + tail + eocd
