"""Bodies of the organization API (SPEC sections 3.2, 3.3 and 4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from vectorgate.schemas import Id, Name, Timestamped

ProcessingStatus = Literal["pending", "processing", "completed", "failed"]


AttributeValue = str | int | float | bool


class UploadedFile(Timestamped):
    id: str
    file_id: str | None
    filename: str
    size: int
    mime_type: str
    processing_status: ProcessingStatus
    attributes: dict[str, AttributeValue] | None = None
    sha256: str | None = None
    # True for a file not uploaded because it duplicates this record (on_duplicate=skip).
    duplicate: bool = False
    created_at: datetime


class UploadResponse(BaseModel):
    success: Literal[True] = True
    message: str
    files: list[UploadedFile]


class FileStatus(Timestamped):
    id: str
    file_id: str | None
    filename: str
    processing_status: ProcessingStatus
    error_message: str | None
    attributes: dict[str, AttributeValue] | None = None
    sha256: str | None = None
    created_at: datetime
    updated_at: datetime


class FileRecord(FileStatus):
    vector_store_id: str
    size: int
    mime_type: str
    chunking_strategy: dict[str, Any] | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileRecord]
    has_more: bool
    last_id: str | None


class VectorStoreCreate(BaseModel):
    """Exactly one of `name` (create the store upstream) and `vector_store_id` (register an
    existing one); the schema says so, and null is not a way of leaving one out."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["name"]}, {"required": ["vector_store_id"]}]}
    )

    credential_id: Id
    name: Name | SkipJsonSchema[None] = None
    vector_store_id: Id | SkipJsonSchema[None] = None

    @field_validator("name", "vector_store_id", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must be a string when given")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> VectorStoreCreate:
        if (self.name is None) == (self.vector_store_id is None):
            raise ValueError("give exactly one of 'name' (to create) or 'vector_store_id'")
        return self


class VectorStoreOut(Timestamped):
    id: str
    name: str | None
    credential_id: str
    created_at: datetime


class VectorStoreList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreOut]


class Deleted(BaseModel):
    id: str
    deleted: Literal[True] = True
