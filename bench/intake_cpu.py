"""CPU cost of the two intakes on hostile bodies, in-process: total and per chunk.

Each body is fed to `receive_multipart` or `receive_base64_json` in 64 KiB chunks (what
uvicorn hands over per read), as the service does. For each it prints how the request
ended, the CPU time per MiB of body read, and the longest stall of the event loop while
it ran (the loop thread's CPU time between two turns of a ticker that asks to wake every
millisecond): for so long nothing else on the loop, such as another organization's
request, could run.

    .venv/bin/python bench/intake_cpu.py [--mib 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

from vectorgate.errors import AppError
from vectorgate.uploads.base64_json import receive_base64_json
from vectorgate.uploads.multipart import receive_multipart

MiB = 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = b"benchboundary9f8e7d"


def tiny_fields(size: int) -> bytes:
    field = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n'
    return field * (size // len(field)) + b"--" + BOUNDARY + b"--\r\n"


def file_part(content: bytes, name: str = "a.pdf") -> bytes:
    head = f'Content-Disposition: form-data; name="files"; filename="{name}"\r\n\r\n'
    return b"--" + BOUNDARY + b"\r\n" + head.encode() + content + b"\r\n--" + BOUNDARY + b"--\r\n"


def near_boundaries(size: int) -> bytes:
    """File data made of almost-boundaries: every one is a partial match to rule out."""
    unit = b"\r\n--" + BOUNDARY[:-1] + b"!"
    return file_part(unit * (size // len(unit)))


def base64_body(content: bytes) -> bytes:
    head = b'{"files": [{"filename": "a.pdf", "mime_type": "application/pdf", "content": "'
    return head + content + b'"}]}'


def plain_base64(size: int) -> bytes:
    return base64_body(base64.b64encode(os.urandom(size * 3 // 4)))


def escaped_base64(size: int) -> bytes:
    """Every character of the base64 text written as a `\\u00XX` escape."""
    text = base64.b64encode(os.urandom(size // 6 * 3 // 4))
    return base64_body(b"".join(b"\\u%04x" % c for c in text))


def mixed_escapes(size: int) -> bytes:
    """Plain characters, `\\u00XX`, `\\/` and `\\n` interleaved: no one bulk pass fits."""
    text = base64.b64encode(os.urandom(size // 4 * 3 // 4))
    out = bytearray()
    for i, c in enumerate(text):
        if i % 3 == 0:
            out += b"\\u%04X" % c
        elif c == ord("/"):
            out += b"\\/"
        else:
            out.append(c)
        if i % 7 == 0:
            out += b"\\n"
    return base64_body(bytes(out))


async def chunks(body: bytes, read: list[int]) -> AsyncIterator[bytes]:
    """Yield 64 KiB chunks, a loop turn apart (as they come from the network)."""
    for start in range(0, len(body), CHUNK):
        await asyncio.sleep(0)
        read[0] += 1
        yield body[start : start + CHUNK]


async def ticker(stalls: list[float]) -> None:
    """Wakes every millisecond and records the event-loop thread's CPU time since its
    last turn: work that ran on the loop without a break (not counting time the
    machine gave to other processes, which a wall clock would on a shared machine)."""
    while True:
        began = time.thread_time()
        await asyncio.sleep(0.001)
        stalls.append(time.thread_time() - began)


async def measured(run: Callable[[], Awaitable[None]], stalls: list[float]) -> None:
    tick = asyncio.create_task(ticker(stalls))
    await asyncio.sleep(0.01)
    try:
        await run()
    finally:
        tick.cancel()


async def run_multipart(body: bytes, workdir: Path, read: list[int]) -> None:
    async for _ in receive_multipart(
        chunks(body, read),
        f"multipart/form-data; boundary={BOUNDARY.decode()}",
        workdir,
        max_files=10,
        max_body_bytes=1024 * MiB,
    ):
        pass


async def run_base64(body: bytes, workdir: Path, read: list[int]) -> None:
    await receive_base64_json(chunks(body, read), workdir, max_files=10, max_body_bytes=1024 * MiB)


def unknown_keys(size: int) -> bytes:
    """Top-level keys the route ignores, each with a one-byte value."""
    return b'{"k":1' + b',"k":1' * (size // 6) + b',"files": []}'


def empty_strings(size: int) -> bytes:
    """An ignored value made of empty strings: each costs a step, and holds 2 bytes."""
    return b'{"k":[""' + b',""' * (size // 3) + b'], "files": []}'


def brackets(size: int) -> bytes:
    """An ignored value of empty arrays: a step per bracket."""
    return b'{"k":[[]' + b",[]" * (size // 3) + b'], "files": []}'


CASES: list[tuple[str, Callable[[int], bytes], str]] = [
    ("multipart: one plain file", lambda n: file_part(os.urandom(n)), "multipart"),
    ("multipart: tiny ignored fields", tiny_fields, "multipart"),
    ("multipart: near-boundaries", near_boundaries, "multipart"),
    ("base64: plain", plain_base64, "base64"),
    ("base64: all \\u00XX escapes", escaped_base64, "base64"),
    ("base64: mixed escape kinds", mixed_escapes, "base64"),
    ("base64: unknown keys", unknown_keys, "base64"),
    ("base64: ignored empty strings", empty_strings, "base64"),
    ("base64: ignored brackets", brackets, "base64"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=16)
    args = parser.parse_args()
    print(f"{'body':34} {'MiB':>6} {'outcome':28} {'CPU ms/MiB':>10} {'loop stall ms':>13}")
    for name, build, route in CASES:
        body = build(args.mib * MiB)
        read, stalls = [0], [0.0]
        with tempfile.TemporaryDirectory() as tmp:
            run = run_multipart if route == "multipart" else run_base64
            began = time.process_time()
            try:
                asyncio.run(measured(partial(run, body, Path(tmp), read), stalls))
                outcome = "accepted"
            except AppError as exc:
                outcome = f"{exc.status} {exc.message[:24]}"
            cpu = time.process_time() - began
        mib = len(body) / MiB
        read_mib = read[0] * CHUNK / MiB
        print(
            f"{name:34} {mib:6.1f} {outcome:28} {cpu * 1000 / read_mib:10.1f} "
            f"{max(stalls) * 1000:13.2f}"
        )


if __name__ == "__main__":
    main()
