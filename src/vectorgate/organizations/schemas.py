"""Bodies of the API-key routes (SPEC 9.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_serializer

from vectorgate.organizations.models import Scope
from vectorgate.organizations.service import MAX_KEY_LIFETIME_S, MAX_KEY_VECTOR_STORES
from vectorgate.schemas import Id, Name, Timestamped, iso_millis


def json_number(value: object) -> object:
    """A JSON number only: `true` and `"60"` are no lifetime, though Python would make one
    of them; `60.0` is (JSON Schema counts it an integer), `60.5` is not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


Lifetime = Annotated[int, Field(gt=0, le=MAX_KEY_LIFETIME_S), BeforeValidator(json_number)]


class ApiKeyCreate(BaseModel):
    name: Name = "default"
    scopes: list[Scope] = Field(min_length=1)
    # null: every store of the organization; else registered stores only.
    vector_store_ids: list[Id] | None = Field(
        default=None, min_length=1, max_length=MAX_KEY_VECTOR_STORES
    )
    # null: the key never expires.
    expires_in_s: Lifetime | None = None


class ApiKeyOut(Timestamped):
    id: str
    name: str
    prefix: str
    scopes: list[Scope]
    vector_store_ids: list[str] | None
    expires_at: datetime | None
    created_at: datetime

    @field_serializer("expires_at")
    def _iso_or_null(self, value: datetime | None) -> str | None:
        return iso_millis(value) if value is not None else None


class IssuedApiKey(ApiKeyOut):
    key: str  # shown in this answer only; only its digest is kept


class ApiKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ApiKeyOut]
