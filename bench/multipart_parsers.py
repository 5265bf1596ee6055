"""python-multipart against other push-style multipart parsers, on the same inputs.

The intake feeds 64 KiB chunks to python-multipart's callback parser, and its boundary
search is most of the intake's CPU. This measures whether another maintained push parser
would do the same work for less, and whether it is as strict and gives the intake what it
needs (every part with its name, filename and Content-Type before its first byte, its
data as it arrives, its end; a closing boundary that can be told apart from a cut body;
a bound on part headers).

Every parser does the same work through an adapter: read each part's name, filename and
Content-Type, write a file part's data to a sink (a byte count, or a CRC-32 in the
untimed pass that checks that every parser saw the same parts), refuse part headers over
16 KiB where the parser lets it, and refuse a body without its closing boundary. Form
field budgets (`MAX_OTHER_PARTS`) are left out: they would stop the tiny-parts body
after 64 parts for every parser alike.

Measured: CPU seconds (`time.process_time`) per MiB of body fed (until the parser ended
or refused), median of `--runs`; for the small bodies, CPU per body including the
parser's set-up. Ratios are against python-multipart in the same run. Then the malformed
bodies of the intake's tests, and which parser refuses which.

    .venv/bin/python -m bench.multipart_parsers [--runs 5] [--mib 50] [--attack-mib 4]

The other parsers are not dependencies of vectorgate; a missing one is skipped with the
command that installs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from vectorgate.errors import AppError
from vectorgate.uploads.filenames import parse_content_disposition

MiB = 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = b"benchboundary9f8e7d"
MAX_HEADER_BYTES = 16 * 1024  # the intake's bound on one part's headers


class Refused(Exception):
    """The parser (or the adapter's checks around it) refused the body."""


@dataclass
class Parsed:
    name: str
    filename: str | None
    content_type: str | None
    size: int = 0
    crc: int = 0
    type_at_start: str | None = None  # the Content-Type as known when the part began


@dataclass
class Outcome:
    parts: list[Parsed] = field(default_factory=list)
    read: int = 0  # body bytes fed before the parser ended or refused
    checksum: bool = False

    def begin(self, name: str, filename: str | None, content_type: str | None) -> Parsed:
        part = Parsed(name, filename, content_type, type_at_start=content_type)
        self.parts.append(part)
        return part

    def write(self, part: Parsed, data: bytes | memoryview) -> None:
        part.size += len(data)
        if self.checksum:
            part.crc = zlib.crc32(data, part.crc)


Adapter = Callable[[Iterable[bytes], Outcome], None]


# --- the adapters -------------------------------------------------------------------


def python_multipart(chunks: Iterable[bytes], out: Outcome) -> None:
    """The intake's use of python-multipart: its callbacks, its header bound."""
    headers: dict[str, bytes] = {}
    current: list[Any] = [b"", b"", 0, None]  # header field, value, header bytes, part
    ended = [False]

    def header_bytes(n: int) -> None:
        current[2] += n
        if current[2] > MAX_HEADER_BYTES:
            raise Refused("part headers are too large")

    def on_part_begin() -> None:
        headers.clear()
        current[:] = [b"", b"", 0, None]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_bytes(end - start)
        current[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_bytes(end - start)
        current[1] += data[start:end]

    def on_header_end() -> None:
        headers[current[0].decode("latin-1").lower()] = current[1]
        current[0] = current[1] = b""

    def on_headers_finished() -> None:
        disposition = headers.get("content-disposition")
        if disposition is None:
            raise Refused("a part has no Content-Disposition")
        name, filename = parse_content_disposition(disposition)
        declared = headers.get("content-type")
        current[3] = out.begin(name, filename, None if declared is None else declared.decode())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        out.write(current[3], memoryview(data)[start:end])

    def on_end() -> None:
        ended[0] = True

    parser = MultipartParser(
        BOUNDARY,
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_end": on_end,
        },
    )
    for chunk in chunks:
        out.read += len(chunk)
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise Refused(str(exc)) from None
        if ended[0]:
            return
    raise Refused("no closing boundary")


def streaming_form_data(chunks: Iterable[bytes], out: Outcome) -> None:
    """streaming-form-data: one target that matches every name (the matcher sees it).

    Its parser has no end-of-body state, no header bound and no hook into headers: a
    part's filename is set before `start()`, its Content-Type only after it (and not at
    all when that header comes before Content-Disposition); see the strictness table.
    """
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.parser import ParseFailedException
    from streaming_form_data.targets import BaseTarget

    seen: list[str] = [""]
    ends: list[int] = [0]

    class Sink(BaseTarget):  # type: ignore[misc]
        part: Parsed

        def on_start(self) -> None:
            self.part = out.begin(seen[0], self.multipart_filename, self.multipart_content_type)

        def on_data_received(self, chunk: bytes) -> None:
            if self.part.content_type is None:  # set after start(): see the docstring
                self.part.content_type = self.multipart_content_type
            out.write(self.part, chunk)

        def on_finish(self) -> None:
            ends[0] += 1

    def every_name(_registered: str, name: str) -> bool:
        seen[0] = name
        return True

    parser = StreamingFormDataParser(
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}
    )
    parser.register("", Sink(), every_name)
    for chunk in chunks:
        out.read += len(chunk)
        try:
            parser.data_received(chunk)
        except ParseFailedException as exc:
            raise Refused(str(exc)) from None
    # The nearest thing to "ended": every part that started also finished. A body cut
    # right after a delimiter, or before the first part, passes this.
    if ends[0] != len(out.parts) or not out.parts:
        raise Refused("no closing boundary (a part did not finish)")


def multipart(chunks: Iterable[bytes], out: Outcome) -> None:
    """multipart (the `multipart` package, 1.x/2.x): `PushMultipartParser`, sans-IO."""
    from multipart import MultipartError, MultipartSegment, PushMultipartParser

    part: Parsed | None = None
    parser = PushMultipartParser(BOUNDARY, max_header_size=MAX_HEADER_BYTES)
    try:
        for chunk in chunks:
            out.read += len(chunk)
            for event in parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    part = out.begin(event.name, event.filename, event.content_type)
                elif event is not None and part is not None:
                    out.write(part, event)
            if parser.closed:
                return
        parser.close()  # raises on an incomplete body
    except MultipartError as exc:
        raise Refused(str(exc)) from None


def werkzeug(chunks: Iterable[bytes], out: Outcome) -> None:
    """Werkzeug's sans-IO `MultipartDecoder` (what Flask's form parser runs on)."""
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.sansio.multipart import (
        Data,
        Epilogue,
        Field,
        File,
        MultipartDecoder,
        NeedData,
    )

    part: Parsed | None = None
    decoder = MultipartDecoder(BOUNDARY)

    def drain() -> bool:
        nonlocal part
        while True:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                return False
            if isinstance(event, Epilogue):
                return True
            if isinstance(event, File | Field):
                filename = event.filename if isinstance(event, File) else None
                part = out.begin(event.name, filename, event.headers.get("content-type"))
            elif isinstance(event, Data) and part is not None:
                out.write(part, event.data)

    try:
        for chunk in chunks:
            out.read += len(chunk)
            decoder.receive_data(chunk)
            if drain():
                return
        decoder.receive_data(None)
        if not drain():
            raise Refused("no closing boundary")
    except (ValueError, RequestEntityTooLarge) as exc:
        raise Refused(str(exc)) from None


PARSERS: list[tuple[str, Adapter, str | None]] = [
    ("python-multipart", python_multipart, None),
    ("streaming-form-data", streaming_form_data, "streaming_form_data"),
    ("multipart", multipart, "multipart"),
    ("werkzeug", werkzeug, "werkzeug"),
]


# --- the bodies ---------------------------------------------------------------------


def part(
    content: bytes, name: str = "files", filename: str | None = "a.pdf", extra: bytes = b""
) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = disposition.encode() + b"\r\nContent-Type: application/octet-stream\r\n" + extra
    return b"--" + BOUNDARY + b"\r\n" + head + b"\r\n" + content + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


def split(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def s1_chunks(files: int, mib: int) -> list[bytes]:
    content = os.urandom(mib * MiB)  # the same random file ten times: the same work
    return split(body(*(part(content, filename=f"{i}.pdf") for i in range(files))))


def near_boundaries(size: int) -> bytes:
    unit = b"\r\n--" + BOUNDARY[:-1] + b"!"
    return body(part(unit * (size // len(unit))))


def tiny_parts(size: int) -> bytes:
    one = part(b"y", name="x", filename=None)
    return body(*[one] * (size // len(one)))


def huge_header(size: int) -> bytes:
    return body(part(b"data", extra=b"X-Pad: " + b"a" * size + b"\r\n"))


def many_headers(size: int) -> bytes:
    line = b"X-A: b\r\n"
    return body(part(b"data", extra=line * (size // len(line))))


def crlf_flood(size: int) -> bytes:
    return body(part(b"\r\n" * (size // 2)))


def dash_flood(size: int) -> bytes:
    """`\\r\\n--` over and over: each one opens a possible delimiter."""
    return body(part(b"\r\n--" * (size // 4)))


ATTACKS: list[tuple[str, Callable[[int], bytes]]] = [
    ("near-boundaries", near_boundaries),
    ("tiny parts", tiny_parts),
    ("one huge part header", huge_header),
    ("many part headers", many_headers),
    ("CR/LF flood", crlf_flood),
    ("\\r\\n-- flood", dash_flood),
]


# --- measuring ----------------------------------------------------------------------


def run(adapter: Adapter, chunks: Iterable[bytes], checksum: bool = False) -> tuple[Outcome, str]:
    out = Outcome(checksum=checksum)
    try:
        adapter(chunks, out)
        return out, "accepted"
    except (Refused, AppError) as exc:
        text = exc.message if isinstance(exc, AppError) else str(exc)
        return out, f"refused: {text[:40]}"


def cpu_per_mib(adapter: Adapter, chunks: list[bytes], runs: int) -> tuple[float, str, int]:
    """Median CPU seconds per MiB fed, the outcome, the bytes fed."""
    samples = []
    outcome, read = "", 0
    for _ in range(runs):
        began = time.process_time()
        out, outcome = run(adapter, chunks)
        samples.append((time.process_time() - began) / (max(out.read, 1) / MiB))
        read = out.read
    return statistics.median(samples), outcome, read


def small_bodies(adapter: Adapter, bodies: list[bytes], runs: int) -> float:
    """Median over `runs` of the CPU per body, set-up included."""
    samples = []
    for _ in range(runs):
        began = time.process_time()
        for one in bodies:
            out, outcome = run(adapter, [one])
            if outcome != "accepted" or out.parts[0].size != 20 * 1024:
                raise AssertionError(f"small body: {outcome}")
        samples.append((time.process_time() - began) / len(bodies))
    return statistics.median(samples)


def same_parts(name: str, adapter: Adapter, chunks: list[bytes], expected: list[Parsed]) -> None:
    out, outcome = run(adapter, chunks, checksum=True)
    got = [(p.name, p.filename, p.size, p.crc) for p in out.parts]
    want = [(p.name, p.filename, p.size, p.crc) for p in expected]
    if outcome != "accepted" or got != want:
        raise AssertionError(f"{name} parsed the body differently: {outcome}, {got[:3]}")


# --- strictness ---------------------------------------------------------------------


def cut(data: bytes, n: int) -> bytes:
    return data[:-n]


TWO = body(part(b"ok"), part(b"x", filename="b.txt"))
GOOD = body(part(b"%PDF-1.4 hello\r\n--not a boundary\r\n" * 20), part(b"x", "note", None))
STRICTNESS: list[tuple[str, bytes, bool]] = [
    # (case, body, whether the intake refuses it)
    ("well-formed body", GOOD, False),
    ("body cut 40 bytes before its end", cut(GOOD, 40), True),
    ("body cut right after a delimiter", GOOD[: GOOD.rindex(b"--" + BOUNDARY)] + b"--", True),
    ("no closing boundary (ends after a part)", cut(GOOD, len(BOUNDARY) + 6), True),
    ("body cut inside a later part's headers", TWO[: TWO.index(b"b.txt")], True),
    ("empty body", b"", True),
    ("garbage without any boundary", b"garbage without any boundary", True),
    ("a part without Content-Disposition", body(part(b"x").replace(b"Content-D", b"X-D")), True),
    (
        "a second part without Content-Disposition",
        body(part(b"ok"), part(b"x", filename="b.txt").replace(b"Content-D", b"X-D")),
        True,
    ),
    ("a header line without a colon", body(part(b"x", extra=b"no colon here\r\n")), True),
    ("part headers over 16 KiB", huge_header(17 * 1024), True),
    (
        "bare LF line ends in the part headers",
        GOOD.replace(b"\r\nContent-Type", b"\nContent-Type"),
        True,
    ),
    ("epilogue after the closing boundary", GOOD + b"trailing epilogue", False),
]


def strictness_row(adapter: Adapter) -> list[str]:
    cells = []
    for _case, data, _refused in STRICTNESS:
        _, outcome = run(adapter, split(data) or [b""])
        cells.append("refuses" if outcome.startswith("refused") else "accepts")
    return cells


TYPE_FIRST = body(
    b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n"
    b'Content-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\nhello\r\n'
)
CAPABILITIES: list[tuple[str, bytes, Callable[[Parsed], object]]] = [
    # Content-Type is a part's second header from curl, httpx and browsers; the intake
    # checks the declared type before it writes a byte.
    ("Content-Type known at the part's start", GOOD, lambda p: p.type_at_start),
    ("Content-Type known by its first data", GOOD, lambda p: p.content_type),
    ("Content-Type given before Content-Disposition", TYPE_FIRST, lambda p: p.content_type),
]


def capability(adapter: Adapter, data: bytes, check: Callable[[Parsed], object]) -> str:
    out, outcome = run(adapter, [data])
    return "yes" if outcome == "accepted" and check(out.parts[0]) else "no"


# --- the report ---------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--mib", type=int, default=50, help="size of each S1 file")
    parser.add_argument("--attack-mib", type=int, default=4)
    parser.add_argument("--small", type=int, default=500, help="number of S3-like bodies")
    args = parser.parse_args()
    # python-multipart logs each malformed body it refuses; the table says so.
    logging.getLogger("python_multipart").setLevel(logging.CRITICAL)

    parsers: list[tuple[str, Adapter]] = []
    for name, adapter, module in PARSERS:
        if module is None or importlib.util.find_spec(module) is not None:
            parsers.append((name, adapter))
        else:
            print(f"skipped {name}: not installed (.venv/bin/pip install {name})")

    s1 = s1_chunks(args.files, args.mib)
    s1_expected, _ = run(python_multipart, s1, checksum=True)
    for name, adapter in parsers[1:]:
        same_parts(name, adapter, s1, s1_expected.parts)
    text = b"The quick brown fox jumps over the lazy dog.\r\n" * 500
    small = [body(part(text[: 20 * 1024], filename=f"{i}.txt")) for i in range(args.small)]

    head = f"{'input':30} {'parser':20} {'outcome':42} {'MiB fed':>8} {'CPU ms/MiB':>10}"
    print(f"\n{head} {'ratio':>6}")
    cases: list[tuple[str, list[bytes]]] = [(f"S1 {args.files} x {args.mib} MiB", s1)]
    cases += [(name, split(build(args.attack_mib * MiB))) for name, build in ATTACKS]
    for case, chunks in cases:
        reference = 0.0
        for name, adapter in parsers:
            cpu, outcome, read = cpu_per_mib(adapter, chunks, args.runs)
            reference = reference or cpu
            print(
                f"{case:30} {name:20} {outcome:42} {read / MiB:8.2f} {cpu * 1000:10.2f} "
                f"{cpu / reference:6.2f}"
            )
        del chunks
    del s1, cases

    print(f"\n{'S3-like: one 20 KiB text part':30} {'parser':20} {'CPU us/body':>12} {'ratio':>6}")
    reference = 0.0
    for name, adapter in parsers:
        per_body = small_bodies(adapter, small, args.runs)
        reference = reference or per_body
        print(f"{'':30} {name:20} {per_body * 1e6:12.1f} {per_body / reference:6.2f}")

    print("\nStrictness (what the intake does: 'refuses' where marked *)")
    names = [name for name, _ in parsers]
    print(f"{'case':44} " + " ".join(f"{n[:19]:>19}" for n in names))
    rows = [strictness_row(adapter) for _, adapter in parsers]
    for i, (case, _data, refused) in enumerate(STRICTNESS):
        mark = "*" if refused else " "
        print(f"{mark}{case:43} " + " ".join(f"{row[i]:>19}" for row in rows))
    for case, data, check in CAPABILITIES:
        cells = " ".join(f"{capability(a, data, check):>19}" for _, a in parsers)
        print(f" {case:43} {cells}")


if __name__ == "__main__":
    main()
