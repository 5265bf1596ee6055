"""The one place OpenAI's exceptions become vectorgate errors (SPEC 3.1's status table)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import openai

from vectorgate.errors import AppError, ErrorCode


@contextmanager
def upstream_errors(action: str, *, not_found: str | None = None) -> Iterator[None]:
    """Translate OpenAI failures raised inside the block; `action` says what was attempted.

    `not_found` is the message for an upstream 404 (e.g. "Vector store not found"); without
    it a 404 is an upstream inconsistency and answers 502.
    """
    try:
        yield
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise AppError(
            401,
            ErrorCode.UNAUTHORIZED,
            f"OpenAI rejected the credential's API key ({exc.status_code}) "
            f"while trying to {action}",
        ) from None
    except openai.NotFoundError:
        if not_found is None:
            raise AppError(
                502, ErrorCode.UPSTREAM_ERROR, f"OpenAI answered 404 while trying to {action}"
            ) from None
        raise AppError(404, ErrorCode.NOT_FOUND, not_found) from None
    except openai.RateLimitError:
        raise AppError(
            502,
            ErrorCode.UPSTREAM_ERROR,
            f"OpenAI kept answering 429 (rate limited) while trying to {action}",
        ) from None
    except openai.APIStatusError as exc:
        raise AppError(
            502,
            ErrorCode.UPSTREAM_ERROR,
            f"OpenAI answered {exc.status_code} while trying to {action}: {_message(exc)}",
        ) from None
    except openai.APIConnectionError as exc:
        kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "could not be reached"
        raise AppError(
            502, ErrorCode.UPSTREAM_ERROR, f"OpenAI {kind} while trying to {action}"
        ) from None


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str):
            return message[:300]
    return exc.response.reason_phrase or "error"
