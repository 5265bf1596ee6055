"""Every table, imported in one place so the metadata is complete for Alembic and tests."""

from vectorgate.audit.models import AuditEvent
from vectorgate.credentials.models import Credential
from vectorgate.db import Base
from vectorgate.organizations.models import ApiKey, Organization
from vectorgate.upload_tokens.models import UploadToken
from vectorgate.uploads.models import IdempotencyKey, UploadSlot, UpstreamUpload
from vectorgate.vector_stores.models import FileBatch, VectorStore, VectorStoreFile
from vectorgate.webhooks.models import Event, WebhookDelivery, WebhookEndpoint

__all__ = [
    "AuditEvent",
    "Event",
    "FileBatch",
    "IdempotencyKey",
    "ApiKey",
    "Base",
    "Credential",
    "Organization",
    "UploadSlot",
    "UploadToken",
    "UpstreamUpload",
    "VectorStore",
    "VectorStoreFile",
    "WebhookDelivery",
    "WebhookEndpoint",
]
