"""Builders shared by the tests: raw multipart bodies with full control over the bytes,
base64 upload bodies."""

from __future__ import annotations

import asyncio
import base64
import socket
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOUNDARY = "vgtestboundary7MA4YWxkTrZu0gW"


def text_files_body(*names: str) -> dict[str, Any]:
    """A base64 route body of one small text file per name ("text of NAME")."""
    return {
        "files": [
            {
                "filename": name,
                "content": base64.b64encode(f"text of {name}\n".encode()).decode(),
                "mime_type": "text/plain",
            }
            for name in names
        ]
    }


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


def open_post(
    base_url: str,
    target: str,
    api_key: str,
    content_length: int,
    headers: dict[str, str] | None = None,
) -> socket.socket:
    """A raw multipart POST with only its head sent: the caller sends as much body as it
    wants (or none, or closes early) and reads the reply with `read_reply`."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    sock.sendall(
        (
            f"POST {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"X-API-Key: {api_key}\r\nContent-Type: {content_type()}\r\n"
            f"Content-Length: {content_length}\r\n{extra}\r\n"
        ).encode()
    )
    return sock


def read_reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (no half-close before: uvicorn takes
    the end of the request stream for a disconnect)."""
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def scalar(database_url: str, sql: str, **params: Any) -> Any:
    """The first column of the first row `sql` returns, read on a connection of its own."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> Any:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return (await connection.execute(text(sql), params)).scalar()
        finally:
            await engine.dispose()

    return asyncio.run(run())
