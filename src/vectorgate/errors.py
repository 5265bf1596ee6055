"""One error type for the whole service, rendered in the body style of each route family.

Code anywhere below the routes raises `AppError`; the Flowise route renders it as
`{"statusCode", "success": false, "message"}` and the organization API as
`{"success": false, "message", "error": {"code", "details"}}`. Messages are written
for the client and must never carry a secret.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from enum import StrEnum
from http import HTTPStatus
from types import FrameType
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_BASE64 = "INVALID_BASE64"
    TOO_MANY_FILES = "TOO_MANY_FILES"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    UNSUPPORTED_FILE_TYPE = "UNSUPPORTED_FILE_TYPE"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    TOKEN_EXHAUSTED = "TOKEN_EXHAUSTED"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    BATCH_FAILED = "BATCH_FAILED"
    BATCH_TIMEOUT = "BATCH_TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INSUFFICIENT_STORAGE = "INSUFFICIENT_STORAGE"


class AppError(Exception):
    """An error a client can act on: HTTP status, machine-readable code, human message."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"AppError({self.status}, {self.code.value}, {self.message!r})"


def bad_request(message: str, **details: Any) -> AppError:
    return AppError(400, ErrorCode.INVALID_REQUEST, message, details=details)


def not_found(message: str, **details: Any) -> AppError:
    return AppError(404, ErrorCode.NOT_FOUND, message, details=details)


def unauthorized(message: str = "Missing or invalid API key") -> AppError:
    return AppError(401, ErrorCode.UNAUTHORIZED, message)


def forbidden(message: str, **details: Any) -> AppError:
    return AppError(403, ErrorCode.FORBIDDEN, message, details=details)


def body_too_large(max_body_bytes: int) -> AppError:
    return AppError(
        413,
        ErrorCode.FILE_TOO_LARGE,
        f"Request body is larger than the {max_body_bytes} bytes an upload may be",
        details={"max_body_bytes": max_body_bytes},
    )


class FlowiseErrorBody(BaseModel):
    statusCode: int  # noqa: N815 - Flowise's field name
    success: bool
    message: str


class ErrorDetail(BaseModel):
    code: str
    details: dict[str, Any]


class OrgErrorBody(BaseModel):
    success: bool
    message: str
    error: ErrorDetail


def documented_errors(body: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, in its body style."""
    return {
        status: {"model": body, "description": HTTPStatus(status).phrase} for status in statuses
    }


FLOWISE_PREFIX = "/api/v1/"

_STATUS_CODES = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_REQUEST,
    408: ErrorCode.REQUEST_TIMEOUT,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.FILE_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_FILE_TYPE,
    422: ErrorCode.INVALID_REQUEST,
    429: ErrorCode.RATE_LIMITED,
    431: ErrorCode.REQUEST_TOO_LARGE,
    503: ErrorCode.SERVICE_UNAVAILABLE,
    507: ErrorCode.INSUFFICIENT_STORAGE,
}


def error_body(path: str, error: AppError) -> dict[str, Any]:
    """`error` in the body style of the route family that `path` belongs to."""
    if path.startswith(FLOWISE_PREFIX):
        return {"statusCode": error.status, "success": False, "message": error.message}
    return {
        "success": False,
        "message": error.message,
        "error": {"code": error.code.value, "details": error.details},
    }


def error_response(request: Request, error: AppError) -> JSONResponse:
    """Render `error` in the body style of the route family `request` belongs to."""
    body = error_body(request.url.path, error)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


# Seconds a client is asked to wait before retrying when the database is unreachable: about
# the time a restarted PostgreSQL or a failed-over replica needs to accept connections.
DATABASE_RETRY_AFTER_S = 5

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_DATABASE_DOWN = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # the connection pool had no connection to give in time
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what it was raised from or during, and the members of exception groups."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_POSTGRES_DISK_FULL = "53100"  # SQLSTATE disk_full


def is_disk_full(exc: BaseException) -> bool:
    """No space left: on the temp dir (ENOSPC, EDQUOT) or under the database."""
    return any(
        (isinstance(e, OSError) and e.errno in _DISK_FULL)
        or getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL
        or getattr(e, "sqlstate", None) == _POSTGRES_DISK_FULL
        for e in _causes(exc)
    )


def is_database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or answered that it cannot work now."""
    for cause in _causes(exc):
        if isinstance(cause, _DATABASE_DOWN):
            return True
        # asyncpg raises plain connection errors while connecting, unwrapped by SQLAlchemy.
        if isinstance(cause, ConnectionError) and any(
            f"{os.sep}{package}{os.sep}" in frame.f_code.co_filename
            for frame in _frames(cause)
            for package in ("asyncpg", "aiosqlite", "sqlalchemy")
        ):
            return True
    return False


def _frames(exc: BaseException) -> Iterator[FrameType]:
    tb = exc.__traceback__
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def disk_full() -> AppError:
    return AppError(
        507,
        ErrorCode.INSUFFICIENT_STORAGE,
        "The server is out of disk space for this request; retry later",
    )


def unexpected_error(exc: BaseException, request_id: str) -> AppError:
    """What a client is told about an exception nobody handled: never its text."""
    if is_disk_full(exc):
        error = disk_full()
    elif is_database_unavailable(exc):
        error = AppError(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            "The database is unavailable; retry shortly",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )
    else:
        error = AppError(500, ErrorCode.INTERNAL_ERROR, f"Internal error (request {request_id})")
    error.details["request_id"] = request_id
    return error


async def handle_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
    error = AppError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
    return error_response(request, error)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    message = f"Invalid request: {'.'.join(first['loc'])}: {first['msg']}"
    return error_response(request, bad_request(message, errors=problems))
