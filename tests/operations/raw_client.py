"""A hostile HTTP client on raw sockets, and attack loops run in processes of their own.

Attackers run in separate processes (spawned, so they import only this module's
standard-library code): in the test's own process they would compete for the GIL with
the fake OpenAI the victim's uploads go to, and slow the victim for reasons that are
not the service's.
"""

from __future__ import annotations

import multiprocessing
import queue
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event

MiB = 1024 * 1024


@dataclass
class Exchange:
    reply: bytes  # what the server sent until it closed (or the reply was complete)
    answered_after_s: float | None  # when the first byte of the reply arrived
    sent: int  # bytes of the request that went out
    closed: bool  # the server closed the connection


def hostile_request(
    address: tuple[str, int],
    head: bytes,
    body: Iterator[bytes] = iter(()),
    *,
    stop_when_answered: bool = True,
    timeout_s: float = 30,
    stop: Event | None = None,
) -> Exchange:
    """Send `head` then `body` while reading whatever comes back, as an attacker would:
    without waiting for the request to be complete. Stops sending once the reply has
    started when `stop_when_answered`; returns once the server closes (or `timeout_s`)."""
    sock = socket.create_connection(address, timeout=10)
    sock.setblocking(False)
    pending = memoryview(head)
    chunks = iter(body)
    started = time.monotonic()
    deadline = started + timeout_s
    reply = b""
    answered: float | None = None
    sent = 0
    closed = False
    sending = True
    try:
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():  # the attack is over: finish the reply
                if answered is None:
                    break
                sending = False
            if not sending and _complete(reply):
                break
            writers = [sock] if sending else []
            readable, writable, _ = select.select([sock], writers, [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if not data:
                    closed = True
                    break
                if answered is None:
                    answered = time.monotonic() - started
                    sending = sending and not stop_when_answered
                reply += data
                if not sending and _complete(reply):
                    break
            if writable and sending:
                if not pending:
                    chunk = next(chunks, None)
                    if chunk is None:
                        sending = False
                        continue
                    pending = memoryview(chunk)
                try:
                    n = sock.send(pending)
                except BlockingIOError:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                    break
                sent += n
                pending = pending[n:]
    finally:
        sock.close()
    return Exchange(reply, answered, sent, closed)


def _complete(reply: bytes) -> bool:
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])


def repeated(chunk: bytes, total: int) -> Iterator[bytes]:
    """`total` bytes of `chunk` over and over, without holding more than one chunk."""
    view = memoryview(chunk)
    while total > 0:
        yield bytes(view[: min(total, len(chunk))])
        total -= len(chunk)


def chunked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """`chunks` in HTTP/1.1 chunked transfer coding."""
    for chunk in chunks:
        yield b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    yield b"0\r\n\r\n"


@dataclass(frozen=True)
class Flood:
    """Requests sent over and over: `head`, then `prefix` and `total` bytes of `chunk`
    (in chunked transfer coding when `chunked`)."""

    address: tuple[str, int]
    head: bytes
    chunk: bytes = b""
    total: int = 0
    prefix: bytes = b""
    chunked: bool = False
    stop_when_answered: bool = True

    def body(self) -> Iterator[bytes]:
        parts = _prefixed(self.prefix, repeated(self.chunk, self.total))
        return chunked(parts) if self.chunked else parts


def _prefixed(prefix: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if prefix:
        yield prefix
    yield from rest


def _flood(flood: Flood, stop: Event, started: Event, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    while not stop.is_set():
        exchange = hostile_request(
            flood.address,
            flood.head,
            flood.body(),
            stop_when_answered=flood.stop_when_answered,
            stop=stop,
        )
        if exchange.answered_after_s is not None or not stop.is_set():
            results.put(exchange)  # (not one cut short by the end of the attack)
        started.set()


@contextmanager
def flooding(flood: Flood, copies: int = 1) -> Iterator[list[Exchange]]:
    """Run `copies` attacker processes for the block (it starts once each has finished a
    request); the list receives every exchange once the block is over."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    starts = [context.Event() for _ in range(copies)]
    workers = [
        context.Process(target=_flood, args=(flood, stop, started, results), daemon=True)
        for started in starts
    ]
    for worker in workers:
        worker.start()
    exchanges: list[Exchange] = []
    try:
        deadline = time.monotonic() + 60
        for started in starts:
            assert started.wait(max(0.0, deadline - time.monotonic())), "the attack never ran"
        yield exchanges
    finally:
        stop.set()
        while any(worker.is_alive() for worker in workers) or not results.empty():
            try:
                exchanges.append(results.get(timeout=0.1))
            except queue.Empty:
                pass
        for worker in workers:
            worker.join(timeout=30)
