from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from vectorgate.schemas import Name, Timestamped

_VISIBLE_ASCII = re.compile(r"^[!-~]+$")
MAX_BASE_URL_LENGTH = 2048


def check_api_key(key: str) -> None:
    """OpenAI keys are visible ASCII; anything else could not even be sent in a header."""
    if not _VISIBLE_ASCII.fullmatch(key):
        raise ValueError("an OpenAI API key is printable ASCII without spaces")


class CredentialCreate(BaseModel):
    name: Name
    # An OpenAI-compatible API of its own (SPEC 12); must lie under one of
    # VECTORGATE_UPSTREAM_ALLOWED_BASE_URLS, checked by the service.
    base_url: str | None = Field(default=None, min_length=1, max_length=MAX_BASE_URL_LENGTH)
    # SecretStr takes no `pattern`: the validator below enforces what the schema documents.
    api_key: SecretStr = Field(
        min_length=8, max_length=512, json_schema_extra={"pattern": _VISIBLE_ASCII.pattern}
    )

    @field_validator("api_key")
    @classmethod
    def _printable(cls, value: SecretStr) -> SecretStr:
        check_api_key(value.get_secret_value())
        return value


class CredentialOut(Timestamped):
    id: str
    name: str
    key_hint: str
    base_url: str | None
    created_at: datetime


class CredentialList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CredentialOut]
