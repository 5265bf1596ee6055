"""Bodies of the upload-token routes (SPEC 9.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, field_serializer

from vectorgate.organizations.schemas import json_number
from vectorgate.schemas import Id, Timestamped, iso_millis
from vectorgate.upload_tokens.service import MAX_TOKEN_FILES, MAX_TOKEN_LIFETIME_S


class UploadTokenCreate(BaseModel):
    vector_store_id: Id
    expires_in_s: Annotated[
        int, Field(ge=1, le=MAX_TOKEN_LIFETIME_S), BeforeValidator(json_number)
    ] = 600
    max_files: Annotated[int, Field(ge=1, le=MAX_TOKEN_FILES), BeforeValidator(json_number)] = 10


class IssuedUploadToken(Timestamped):
    id: str
    token: str  # shown in this answer only; only its digest is kept
    vector_store_id: str
    credential_id: str  # the store's registered credential: Flowise's `credential`
    max_files: int
    expires_at: datetime
    created_at: datetime

    def __repr__(self) -> str:
        return f"IssuedUploadToken(id={self.id!r})"

    @field_serializer("expires_at")
    def _iso(self, value: datetime) -> str:
        return iso_millis(value)
