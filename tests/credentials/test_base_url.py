"""Which base URLs a credential may name (SPEC 12): judged on the parsed URL."""

from __future__ import annotations

import pytest

from vectorgate.credentials.service import allowed_base_url
from vectorgate.errors import AppError

ALLOWED = ["https://llm.internal/v1", "http://127.0.0.1:9100/v1/"]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://llm.internal/v1", "https://llm.internal/v1"),
        ("https://llm.internal/v1/", "https://llm.internal/v1"),
        ("https://LLM.internal/v1/tenant-a", "https://LLM.internal/v1/tenant-a"),
        ("https://llm.internal:443/v1", "https://llm.internal:443/v1"),
        ("http://127.0.0.1:9100/v1", "http://127.0.0.1:9100/v1"),
    ],
)
def test_a_url_under_an_allowed_prefix_is_kept(given: str, kept: str) -> None:
    assert allowed_base_url(given, ALLOWED) == kept


@pytest.mark.parametrize(
    "given",
    [
        "https://llm.internal/v1evil",  # not at a path boundary
        "https://llm.internal.evil.com/v1",  # another host that starts the same
        "https://llm.internal@evil.com/v1",  # credentials: the host is evil.com
        "http://llm.internal/v1",  # another scheme
        "https://llm.internal:8443/v1",  # another port
        "https://llm.internal/v2",
        "https://llm.internal/v1?x=1",
        "https://llm.internal/v1#x",
        "https://llm.internal/v1/a b",
        "http://127.0.0.1:9101/v1",
        "ftp://llm.internal/v1",
        "not a url",
        "https://llm.internal:99999/v1",
        "https://llm.internal/v1/../admin",  # climbs out of the allowed path
        "https://llm.internal/v1/%2e%2e/admin",
        "https://llm.internal/v1/./x",
    ],
)
def test_anything_else_is_a_400(given: str) -> None:
    with pytest.raises(AppError) as refused:
        allowed_base_url(given, ALLOWED)
    assert refused.value.status == 400


def test_no_allowed_list_refuses_every_base_url() -> None:
    with pytest.raises(AppError) as refused:
        allowed_base_url("https://llm.internal/v1", [])
    assert "VECTORGATE_UPSTREAM_ALLOWED_BASE_URLS" in refused.value.message
