"""The process-wide AsyncOpenAI client and the per-credential views of it."""

from __future__ import annotations

import openai

from vectorgate.security.encryption import Secret
from vectorgate.settings import Settings

# The base client never authenticates anything itself: every call goes through a
# `with_options(api_key=...)` copy, which shares its connection pool.
_PLACEHOLDER_KEY = "sk-vectorgate-placeholder"


def create_base_client(settings: Settings) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=_PLACEHOLDER_KEY,
        base_url=settings.resolved_openai_base_url,
        max_retries=settings.upstream_max_retries,
        timeout=settings.upstream_timeout_s,
    )


def client_for(
    base: openai.AsyncOpenAI, api_key: Secret, base_url: str | None = None
) -> openai.AsyncOpenAI:
    """A view of `base` that authenticates with `api_key`, at the credential's own
    `base_url` when it has one (SPEC 12)."""
    if base_url is None:
        return base.with_options(api_key=api_key.reveal())
    return base.with_options(api_key=api_key.reveal(), base_url=base_url)


def interactive(client: openai.AsyncOpenAI, timeout_s: float) -> openai.AsyncOpenAI:
    """A view of `client` for a call an HTTP client is waiting on: one short try.

    The SDK's retries honour `Retry-After` for up to 60 s each: a rate-limited key would
    keep a status or registration request open for minutes. Such calls fail fast instead
    and the caller answers at once (from the database, or 502 with `Retry-After`).
    """
    return client.with_options(timeout=timeout_s, max_retries=0)
