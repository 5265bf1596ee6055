"""Limits applied before work: bounded JSON bodies read after authentication, body read
deadlines, and the free-space floor of the staging disk.

FastAPI reads and parses a route's declared body parameters before it resolves the
route's dependencies, so a declared body would be read whole, without a limit, before
the API key is checked. No route declares one: a JSON body is a dependency
(`json_body(Model)`) that itself depends on the caller, so it runs after authentication,
refuses a declared Content-Length over the limit before reading a byte, and stops
reading a chunked body at the limit.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vectorgate.deps import AdminCaller, AuthenticatedDep, SettingsDep
from vectorgate.errors import AppError, ErrorCode, disk_full

M = TypeVar("M", bound=BaseModel)

# Every model read by `json_body`, for the OpenAPI schema's components (see app.py).
JSON_BODY_MODELS: dict[str, type[BaseModel]] = {}


def body_over_limit(limit: int) -> AppError:
    return AppError(
        413,
        ErrorCode.REQUEST_TOO_LARGE,
        f"Request body is larger than the {limit} bytes this route accepts",
        details={"max_body_bytes": limit},
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_over_limit(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise body_over_limit(limit)
    return bytes(body)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # as FastAPI did: a body without a type is read as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and "+json" in media)


async def read_json(request: Request, model: type[M], limit: int) -> M:
    """The body validated by `model`; 400 (as FastAPI's validation errors) when it is not."""
    raw = await read_limited(request, limit)
    if not _is_json(request.headers.get("content-type")):
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "the body must be application/json", "type": "json"}]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def json_body(model: type[M]) -> Any:
    """`Depends` that reads `model` from the JSON body, after the caller is authenticated.

    Use as `body: Annotated[Model, json_body(Model)]`, declared after the route's `Access`
    alias (so a key without the scope is refused before its body is read), with
    `json_request_body(Model)` as the route's `openapi_extra` so the schema still shows
    the body.
    """
    JSON_BODY_MODELS[model.__name__] = model

    async def read(request: Request, _caller: AuthenticatedDep, settings: SettingsDep) -> M:
        return await read_json(request, model, settings.max_json_body_bytes)

    return Depends(read)


def admin_json_body(model: type[M]) -> Any:
    """`json_body` for the admin API: read after the admin token is checked."""
    JSON_BODY_MODELS[model.__name__] = model

    async def read(request: Request, _admin: AdminCaller, settings: SettingsDep) -> M:
        return await read_json(request, model, settings.max_json_body_bytes)

    return Depends(read)


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a route reading `model` with `json_body`."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def ensure_free_space(path: Path, floor_bytes: int) -> None:
    """507 when the disk holding `path` has less than `floor_bytes` free."""
    if floor_bytes and shutil.disk_usage(path).free < floor_bytes:
        raise disk_full()


def free_space_problem(path: Path, floor_bytes: int) -> str | None:
    """Why the disk holding `path` is not fit to work on, or None."""
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if free < floor_bytes:
        return f"free space on the disk of {path} is {free} bytes, below {floor_bytes}"
    return None


def body_timed_out(message: str, **details: Any) -> AppError:
    return AppError(408, ErrorCode.REQUEST_TIMEOUT, message, details=details)


class _BodyWatch:
    """The body reads of one request, watched by one timer.

    A timer per read (`asyncio.timeout`) costs more than the read itself on a fast
    upload; this one is re-armed once per idle period and a read only notes when it
    started waiting.
    """

    def __init__(self, idle_timeout_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle_timeout_s = idle_timeout_s
        self.waiting: asyncio.Task[Any] | None = None  # the task waiting for bytes, if any
        self.wait_started = 0.0
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None

    def _check(self) -> None:
        self.timer = None
        due = self.loop.time() + self.idle_timeout_s
        if self.waiting is not None:
            due = self.wait_started + self.idle_timeout_s
            if self.loop.time() >= due:
                self.expired = True
                self.waiting.cancel()
                return
        self.timer = self.loop.call_at(due, self._check)

    async def read(self, receive: Receive) -> tuple[Message, float]:
        """The next message, and the seconds spent waiting for it."""
        if self.timer is None:
            self.timer = self.loop.call_later(self.idle_timeout_s, self._check)
        task = asyncio.current_task()
        self.waiting = task
        self.wait_started = started = self.loop.time()
        try:
            message = await receive()
        except asyncio.CancelledError:
            if self.expired and task is not None:
                task.uncancel()
                raise body_timed_out(
                    f"No request body bytes arrived for {self.idle_timeout_s:g} s",
                    body_idle_timeout_s=self.idle_timeout_s,
                ) from None
            raise
        finally:
            self.waiting = None
        return message, self.loop.time() - started

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class BodyReadDeadline:
    """Ends a request whose body stops coming, or comes slower than a minimum rate.

    Wraps `receive`: each wait for body bytes may last at most `idle_timeout_s`, and once
    the request has spent `grace_s` waiting for its body, the bytes per second of waiting
    must reach `min_rate`. Only time spent waiting counts, so a route that reads slowly
    (it uploads as it reads) never makes its client look slow. The route sees a 408
    `AppError` raised from its read and unwinds as from any error: slots, temp files and
    fds given back, the answer in its family's body.
    """

    def __init__(
        self, app: ASGIApp, *, idle_timeout_s: float, min_rate: int, grace_s: float
    ) -> None:
        self.app = app
        self.idle_timeout_s = idle_timeout_s
        self.min_rate = min_rate
        self.grace_s = grace_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        finished = not (
            headers.get(b"content-length", b"0").strip() not in (b"", b"0")
            or b"transfer-encoding" in headers
        )
        if finished:  # no body: nothing to watch
            await self.app(scope, receive, send)
            return
        watch = _BodyWatch(self.idle_timeout_s)
        waited = 0.0
        received = 0

        async def guarded_receive() -> Message:
            nonlocal waited, received, finished
            if finished:
                return await receive()
            message, seconds = await watch.read(receive)
            waited += seconds
            if message["type"] != "http.request" or not message.get("more_body", False):
                finished = True
                watch.stop()
                return message
            received += len(message.get("body", b""))
            if waited > self.grace_s and received < self.min_rate * waited:
                raise body_timed_out(
                    f"The request body arrived slower than {self.min_rate} bytes/s",
                    body_min_rate_bytes_s=self.min_rate,
                )
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not finished:
                # Answered before the body was read to its end: the connection cannot
                # carry another request (the server drops the rest of the body, then closes).
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, guarded_receive, send_closing)
        finally:
            watch.stop()
