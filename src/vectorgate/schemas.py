"""What every response model shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, StringConstraints, field_serializer

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
"""Every id this service or OpenAI hands out (org_, vsf_, vs_, file-, UUIDs) fits it;
anything else is a 400 before it reaches the database (PostgreSQL cannot even compare a
string holding NUL)."""

NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Names people give things: any text but control characters."""

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[str, StringConstraints(max_length=200, pattern=NAME_PATTERN)]


def iso_millis(value: datetime) -> str:
    """`2025-01-14T10:12:01.850Z`: UTC with milliseconds, the shape the API documents."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class Timestamped(BaseModel):
    """Renders `created_at` / `updated_at` as ISO 8601 UTC with milliseconds."""

    @field_serializer("created_at", "updated_at", check_fields=False)
    def _iso(self, value: datetime) -> str:
        return iso_millis(value)
