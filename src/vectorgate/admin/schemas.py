"""Bodies of the admin API (SPEC 9.3); API keys use the organization API's."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from vectorgate.schemas import Name, Timestamped


class OrganizationCreate(BaseModel):
    name: Name


class OrganizationOut(Timestamped):
    id: str
    name: str
    created_at: datetime


class OrganizationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OrganizationOut]
    has_more: bool
    last_id: str | None
