"""What the Flowise route answers: OpenAI's own file objects, passed through unchanged."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class OpenAIFile(BaseModel):
    """An OpenAI file object as the Files API returns it (fields it adds later pass through)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str | None = None
    expires_at: int | None = None
    status_details: Any = None
