"""The one place OpenAI's exceptions become vectorgate errors (SPEC 3.1's status table)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import openai

from vectorgate.errors import AppError, ErrorCode
from vectorgate.observability import UPSTREAM_ERRORS

# An upstream Retry-After longer than an hour is not passed on: more likely a bug than a plan.
_MAX_RETRY_AFTER_S = 3600


@contextmanager
def upstream_errors(action: str, *, not_found: str | None = None) -> Iterator[None]:
    """Translate OpenAI failures raised inside the block; `action` says what was attempted.

    `not_found` is the message for an upstream 404 (e.g. "Vector store not found"); without
    it a 404 is an upstream inconsistency and answers 502.
    """
    try:
        yield
    except openai.OpenAIError as exc:
        UPSTREAM_ERRORS.labels(type(exc).__name__).inc()
        raise _translate(exc, action, not_found) from None


def _translate(exc: openai.OpenAIError, action: str, not_found: str | None) -> AppError:
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return AppError(
            401,
            ErrorCode.UNAUTHORIZED,
            f"OpenAI rejected the credential's API key ({exc.status_code}) "
            f"while trying to {action}",
        )
    if not_found is not None and is_not_found(exc):
        return AppError(404, ErrorCode.NOT_FOUND, not_found)
    if isinstance(exc, openai.RateLimitError):
        message = f"OpenAI answered 429 (rate limited) while trying to {action}"
        retry_after = _retry_after_s(exc)
        if retry_after is not None:
            # Passed on, so a client backs off as long as OpenAI asked (SPEC 3.1: 502).
            return AppError(
                502,
                ErrorCode.UPSTREAM_ERROR,
                f"{message}; OpenAI asked to retry after {retry_after} s",
                details={"retry_after_s": retry_after},
                headers={"Retry-After": str(retry_after)},
            )
    elif isinstance(exc, openai.APIStatusError):
        message = (
            f"OpenAI answered {exc.status_code} while trying to {action}: {error_message(exc)}"
        )
    elif isinstance(exc, openai.APITimeoutError):
        message = f"OpenAI timed out while trying to {action}"
    elif isinstance(exc, openai.APIConnectionError):
        message = f"OpenAI could not be reached while trying to {action}"
    else:
        message = f"OpenAI call failed ({type(exc).__name__}) while trying to {action}"
    return AppError(502, ErrorCode.UPSTREAM_ERROR, message)


def _retry_after_s(exc: openai.APIStatusError) -> int | None:
    """OpenAI's `Retry-After` in whole seconds (rounded up), when it is a sane number."""
    try:
        seconds = float(exc.response.headers.get("retry-after", ""))
    except ValueError:
        return None
    if not 0 <= seconds <= _MAX_RETRY_AFTER_S:
        return None
    return max(1, math.ceil(seconds))


_NOT_FOUND_MESSAGE = re.compile(r"\bnot found\b|\bno such\b|does not exist", re.IGNORECASE)


def is_not_found(exc: openai.OpenAIError) -> bool:
    """Whether the upstream said the thing asked about does not exist.

    OpenAI answers 404. Llama Stack answers 400 with a message such as "Vector_store
    'vs_x' not found" (SPEC 12): a 400 whose message says so counts as not found too.
    """
    if isinstance(exc, openai.NotFoundError):
        return True
    if isinstance(exc, openai.BadRequestError):
        return bool(_NOT_FOUND_MESSAGE.search(error_message(exc)))
    return False


def error_message(exc: openai.APIStatusError) -> str:
    """The upstream's own message: OpenAI's `{"error": {"message"}}` (the SDK hands over
    the inner object), FastAPI's `{"detail": ...}`, or else the status line's reason."""
    body = exc.body
    if isinstance(body, dict):
        for key in ("message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
            if isinstance(value, list | dict) and value:
                return json.dumps(value)[:300]
    return exc.response.reason_phrase or "error"
