"""Bodies of the organization API (SPEC sections 3.2, 3.3 and 4)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from vectorgate.schemas import ID_PATTERN, NAME_PATTERN, Timestamped

ProcessingStatus = Literal["pending", "processing", "completed", "failed"]


class UploadedFile(Timestamped):
    id: str
    file_id: str | None
    filename: str
    size: int
    mime_type: str
    processing_status: ProcessingStatus
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
    created_at: datetime
    updated_at: datetime


class FileRecord(FileStatus):
    vector_store_id: str
    size: int
    mime_type: str


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileRecord]
    has_more: bool
    last_id: str | None


class VectorStoreCreate(BaseModel):
    credential_id: str = Field(pattern=ID_PATTERN)
    name: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN)
    vector_store_id: str | None = Field(default=None, pattern=ID_PATTERN)


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
