from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from vectorgate.schemas import Timestamped


class CredentialCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    api_key: SecretStr = Field(min_length=8, max_length=512)


class CredentialOut(Timestamped):
    id: str
    name: str
    key_hint: str
    created_at: datetime


class CredentialList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CredentialOut]
