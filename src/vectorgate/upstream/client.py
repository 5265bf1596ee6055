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
