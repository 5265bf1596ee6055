"""Builders shared by the tests: raw multipart bodies with full control over the bytes."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

BOUNDARY = "vgtestboundary7MA4YWxkTrZu0gW"


@dataclass(frozen=True)
class Part:
    filename: str | None
    content: bytes
    content_type: str | None = None
    field: str = "files"
    # "raw": filename="<UTF-8 bytes>" (curl, browsers); "star": RFC 5987 filename*=UTF-8''...
    encoding: str = "raw"


def part_headers(part: Part) -> bytes:
    disposition = f'form-data; name="{part.field}"'.encode()
    if part.filename is not None:
        if part.encoding == "star":
            quoted = urllib.parse.quote(part.filename, safe="")
            disposition += f"; filename*=UTF-8''{quoted}".encode()
        else:
            disposition += b'; filename="' + part.filename.encode() + b'"'
    headers = b"Content-Disposition: " + disposition + b"\r\n"
    if part.content_type is not None:
        headers += f"Content-Type: {part.content_type}\r\n".encode()
    return headers


def multipart_body(parts: Iterable[Part], boundary: str = BOUNDARY) -> bytes:
    return b"".join(multipart_chunks(parts, boundary))


def multipart_chunks(parts: Iterable[Part], boundary: str = BOUNDARY) -> Iterator[bytes]:
    for part in parts:
        yield f"--{boundary}\r\n".encode() + part_headers(part) + b"\r\n"
        yield part.content
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def content_type(boundary: str = BOUNDARY) -> str:
    return f"multipart/form-data; boundary={boundary}"


def staged_leftovers(temp_dir: Path) -> list[Path]:
    """Request directories or files left in a staging root (a worker's lock file is not one)."""
    if not temp_dir.exists():
        return []
    return [
        path
        for path in temp_dir.rglob("*")
        if not (path.name == ".owner.lock" or (path.is_dir() and path.name.startswith("w-")))
    ]
