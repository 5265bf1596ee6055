"""The HTTP server's protection of itself: head size and time, connections, lingering.

uvicorn's httptools protocol, as fast as before, with what it lacks in front of
untrusted clients:

- the request head (request line and headers) is bounded in bytes: past
  `max_header_bytes` the client gets a 431 at once; httptools gathers a header by
  concatenation, so an unbounded one costs time quadratic in its size;
- the head must arrive within `header_timeout_s` of the connection (or of the
  request's first byte on a kept-alive one), else a 408 and the connection closes:
  slow-header connections cannot pile up;
- at most `max_connections` connections per worker, and never more than half the
  process's file descriptor limit, so that requests keep fds for their temp files,
  database and upstream connections: a connection past the cap is answered 503 and
  closed before anything else is done for it;
- a request answered before its body ended (a 413, a 408) has the rest of its body
  read and dropped for a bounded time (`LINGER_S`), so that its client can read the
  answer, then the connection closes: it is never kept alive mid-body.

Body read deadlines are applied one level up, in the ASGI app
(`vectorgate.limits.BodyReadDeadline`), where the route can unwind and answer.
"""

from __future__ import annotations

import asyncio
import json
import resource
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from vectorgate.errors import AppError, ErrorCode, error_body
from vectorgate.settings import Settings

# A client answered before the end of its body (401, 404, 413, 408) may finish sending
# it, so that it reads the answer (closing under a client still sending resets the
# connection, and most clients read only once they have sent): the rest is read and
# dropped while it keeps coming, with gaps of at most LINGER_IDLE_S and for LINGER_S in
# all, then the connection closes. nginx's lingering_timeout and lingering_time.
LINGER_IDLE_S = 5.0
LINGER_S = 30.0
# A chunked body has no declared end: past this much dropped, its sender is not finishing
# a request it believes valid (a declared body is dropped up to its declared end).
LINGER_CHUNKED_BYTES = 1024 * 1024
# A client refused below the app (431), or still sending a chunked body past
# LINGER_CHUNKED_BYTES: reading stops, our side of the connection ends, and the client
# has this long to read the answer before the connection closes.
REFUSAL_LINGER_S = 1.0

# File descriptors kept for everything but client connections (database pool, upstream
# pool, temp files, logs): connections get at most half of what is left after these.
RESERVED_FDS = 128


@dataclass(frozen=True, slots=True)
class TransportLimits:
    max_header_bytes: int
    header_timeout_s: float
    max_connections: int


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def connection_cap(configured: int, fd_limit: int) -> int:
    """`configured`, but never more than half the fds left after `RESERVED_FDS`."""
    if fd_limit == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, (fd_limit - RESERVED_FDS) // 2))


@cache
def transport_limits() -> TransportLimits:
    """Read once per worker from the environment, which every worker process inherits."""
    settings = Settings()
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return TransportLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        max_connections=connection_cap(settings.max_connections, soft),
    )


def raw_error(path: str, error: AppError) -> bytes:
    """A complete `Connection: close` response, for answers given below the ASGI app."""
    body = json.dumps(error_body(path, error)).encode()
    return (
        f"HTTP/1.1 {error.status} {_reason(error.status)}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


class _AnswerFirstTransport:
    """The transport as uvicorn's request cycle sees it: closing it (after an answer sent
    with `Connection: close`) while the request body is still coming lingers first."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpToolsProtocol):
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close_after_answer()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded heads, head timeouts and a connection cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = transport_limits()
        self.in_head = True  # between a request's first byte and the end of its headers
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.linger_until = 0.0
        self.linger_budget: int | None = None  # bytes still dropped, when counted
        self.dropping = False  # answered below the app: what still comes is dropped
        self.lost = False
        self.real_transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self.dropping = True
            error = AppError(
                503,
                ErrorCode.SERVICE_UNAVAILABLE,
                f"The server has its maximum of {self.limits.max_connections} connections "
                "open; retry shortly",
                headers={"Retry-After": "1"},
            )
            transport.write(raw_error("/", error))
            transport.close()
            return
        super().connection_made(transport)
        self.real_transport = transport
        self.transport = cast(asyncio.Transport, _AnswerFirstTransport(transport, self))
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for timer in (self.head_timer, self.linger_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.dropping:
            return
        if self.linger_timer is not None:
            if self.linger_budget is not None:
                self.linger_budget -= len(data)
                if self.linger_budget < 0:
                    self._stop_reading()
                    return
            self._linger()  # still coming: wait for the next bytes a while longer
        super().data_received(data)
        if self.in_head and not self.transport.is_closing():
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes:
                self._refuse(
                    AppError(
                        431,
                        ErrorCode.REQUEST_TOO_LARGE,
                        "The request line and headers are larger than the "
                        f"{self.limits.max_header_bytes} bytes accepted",
                        details={"max_header_bytes": self.limits.max_header_bytes},
                    )
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self.linger_timer is not None:  # the rest of an answered body has arrived
            self._close()
            return
        super().on_message_complete()

    def close_after_answer(self) -> None:
        """The request cycle closes the connection: linger first if the body is coming."""
        cycle = self.cycle
        if (
            not self.lost
            and self.linger_timer is None
            and cycle is not None
            and cycle.response_complete
            and cycle.more_body
            and not self.transport.is_closing()
        ):
            self._start_linger()
            return
        self._close()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        lingering = self.linger_timer is not None
        if lingering or (cycle is not None and cycle.more_body and not self.transport.is_closing()):
            # Answered before the body ended: never kept alive, and never another request.
            self.server_state.total_requests += 1
            if not lingering:
                self._start_linger()
            return
        super().on_response_complete()

    def _start_linger(self) -> None:
        """Drop the rest of the body while it keeps coming, within bounds; then close."""
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        self.linger_until = self.loop.time() + LINGER_S
        declared = self.cycle is not None and any(
            name == b"content-length" for name, _ in self.cycle.scope["headers"]
        )
        self.linger_budget = None if declared else LINGER_CHUNKED_BYTES
        self._linger()

    def _linger(self) -> None:
        if self.linger_timer is not None:
            self.linger_timer.cancel()
        delay = max(0.0, min(LINGER_IDLE_S, self.linger_until - self.loop.time()))
        self.linger_timer = self.loop.call_later(delay, self._close)

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._head_timed_out
            )

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.in_head and not self.transport.is_closing():
            error = AppError(
                408,
                ErrorCode.REQUEST_TIMEOUT,
                f"The request headers did not arrive within {self.limits.header_timeout_s:g} s",
                details={"header_timeout_s": self.limits.header_timeout_s},
            )
            # Everything it sent has been read: closing now cannot cut the answer off.
            self._refuse(error, close_now=True)

    def _refuse(self, error: AppError, *, close_now: bool = False) -> None:
        """Answer below the app and read nothing more; close (now, or in a moment)."""
        path = self.url.decode("latin-1") if getattr(self, "url", b"") else "/"
        self.transport.write(raw_error(path, error))
        if close_now:
            self.dropping = True
            self._close()
        else:
            self._stop_reading()

    def _stop_reading(self) -> None:
        """Read no more; end our side so the client sees the answer and the end of it;
        close a moment later (closing at once would reset the connection under a client
        still sending, and a reset can discard the answer before the client reads it)."""
        self.dropping = True
        transport = self.real_transport or self.transport
        transport.pause_reading()
        if transport.can_write_eof():
            transport.write_eof()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
        self.linger_timer = self.loop.call_later(REFUSAL_LINGER_S, self._close)

    def _close(self) -> None:
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        transport = self.real_transport or self.transport
        if not transport.is_closing():
            transport.close()
