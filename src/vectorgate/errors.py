"""One error type for the whole service, rendered in the body style of each route family.

Code anywhere below the routes raises `AppError`; the Flowise route renders it as
`{"statusCode", "success": false, "message"}` and the organization API as
`{"success": false, "message", "error": {"code", "details"}}`. Messages are written
for the client and must never carry a secret.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_BASE64 = "INVALID_BASE64"
    TOO_MANY_FILES = "TOO_MANY_FILES"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    UNSUPPORTED_FILE_TYPE = "UNSUPPORTED_FILE_TYPE"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHORIZED = "UNAUTHORIZED"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    BATCH_FAILED = "BATCH_FAILED"
    BATCH_TIMEOUT = "BATCH_TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"


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
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_REQUEST,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.FILE_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_FILE_TYPE,
    422: ErrorCode.INVALID_REQUEST,
    429: ErrorCode.RATE_LIMITED,
}


def error_response(request: Request, error: AppError) -> JSONResponse:
    """Render `error` in the body style of the route family `request` belongs to."""
    body: dict[str, Any]
    if request.url.path.startswith(FLOWISE_PREFIX):
        body = {"statusCode": error.status, "success": False, "message": error.message}
    else:
        body = {
            "success": False,
            "message": error.message,
            "error": {"code": error.code.value, "details": error.details},
        }
    return JSONResponse(body, status_code=error.status, headers=error.headers)


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
