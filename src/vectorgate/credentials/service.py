"""Credentials: OpenAI keys encrypted at rest, decrypted only at the moment of use."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.audit.service import Actor, EventType, record_event
from vectorgate.credentials.models import Credential
from vectorgate.errors import AppError, ErrorCode, bad_request, not_found
from vectorgate.security.encryption import DecryptionError, Keyring, Secret
from vectorgate.vector_stores.models import VectorStore


async def create_credential(
    session: AsyncSession,
    keyring: Keyring,
    org_id: str,
    name: str,
    api_key: Secret,
    actor: Actor,
    *,
    base_url: str | None = None,
    allowed_base_urls: Sequence[str] = (),
) -> Credential:
    """Store `api_key` encrypted; with `base_url`, calls for it go there (SPEC 12)."""
    if base_url is not None:
        base_url = allowed_base_url(base_url, allowed_base_urls)
    credential_id = str(uuid.uuid4())
    credential = Credential(
        id=credential_id,
        organization_id=org_id,
        name=name,
        ciphertext=keyring.encrypt(api_key, associated_data=credential_id),
        key_hint=api_key.hint,
        base_url=base_url,
    )
    session.add(credential)
    # The hint and the base URL say which key this is; the key itself never goes here.
    details = {"name": name, "key_hint": credential.key_hint, "base_url": base_url}
    record_event(session, org_id, actor, EventType.CREDENTIAL_CREATED, credential_id, details)
    await session.flush()
    return credential


async def remove_credential(
    session: AsyncSession,
    org_id: str,
    credential_id: str,
    actor: Actor,
    *,
    may_name_store: Callable[[str], bool] = lambda _store: True,
) -> None:
    """Delete a credential no registered vector store uses (409 naming those that do,
    as far as `may_name_store` lets the caller see them; the others are only counted)."""
    credential = await get_credential(session, org_id, credential_id)
    users = (
        await session.scalars(
            select(VectorStore.id)
            .where(
                VectorStore.organization_id == org_id, VectorStore.credential_id == credential_id
            )
            .order_by(VectorStore.id)
        )
    ).all()
    if users:
        named = [store for store in users if may_name_store(store)]
        others = len(users) - len(named)
        stores = ", ".join(named + ([f"{others} other(s)"] if others else []))
        raise AppError(
            409,
            ErrorCode.CONFLICT,
            f"Credential is used by vector stores {stores}; unregister them first",
        )
    await session.delete(credential)
    details = {"name": credential.name}
    record_event(session, org_id, actor, EventType.CREDENTIAL_DELETED, credential_id, details)
    await session.flush()


async def get_credential(session: AsyncSession, org_id: str, credential_id: str) -> Credential:
    """The organization's credential; 404 for unknown ids and other organizations' alike."""
    credential = await session.get(Credential, credential_id)
    if credential is None or credential.organization_id != org_id:
        raise not_found("Credential not found", credential_id=credential_id)
    return credential


def allowed_base_url(base_url: str, allowed: Sequence[str]) -> str:
    """`base_url` without a trailing slash if it lies under one of `allowed`, else a 400.

    "Under" is judged on the parsed URL, not the string: same scheme, host and port, and
    a path equal to the allowed one or below it at a `/` boundary, so an allowed
    `https://llm.internal/v1` admits `https://llm.internal/v1/tenant-a` but neither
    `https://llm.internal/v1evil` nor `https://llm.internal.evil.com/v1`. A URL with
    credentials, a query or a fragment is refused outright.
    """
    if not allowed:
        raise bad_request(
            "This service accepts no base_url for credentials "
            "(VECTORGATE_UPSTREAM_ALLOWED_BASE_URLS is empty)"
        )
    candidate = _url_parts(base_url)
    if candidate is not None:
        for prefix in allowed:
            permitted = _url_parts(prefix)
            if permitted is not None and _is_under(candidate, permitted):
                return base_url.rstrip("/")
    raise bad_request(
        "base_url must be an http(s) URL under one of the allowed base URLs",
        base_url=base_url,
        allowed_base_urls=list(allowed),
    )


def _url_parts(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path without trailing slash), or None for what is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username or parts.password or parts.query or parts.fragment:
        return None
    if any(ord(char) < 0x21 or ord(char) > 0x7E for char in url):
        return None  # no spaces, controls or non-ASCII: what is checked is what is called
    if "%" in parts.path or any(part in (".", "..") for part in parts.path.split("/")):
        return None  # a dot segment (plain or escaped) would climb out of the allowed path
    default_port = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname.lower(), port or default_port, parts.path.rstrip("/")


def _is_under(candidate: tuple[str, str, int, str], permitted: tuple[str, str, int, str]) -> bool:
    path, allowed_path = candidate[3], permitted[3]
    return candidate[:3] == permitted[:3] and (
        path == allowed_path or path.startswith(allowed_path + "/")
    )


def reveal_key(keyring: Keyring, credential: Credential) -> Secret:
    return keyring.decrypt(credential.ciphertext, associated_data=credential.id)


async def rotate_credentials(
    session: AsyncSession, keyring: Keyring, actor: Actor
) -> tuple[int, list[str]]:
    """Re-encrypt every credential not yet under the primary key (one audit event each).

    Returns how many were rotated and the ids of those no configured key can decrypt
    (they are left as they are, so adding the missing key and rotating again fixes them).
    """
    rotated, undecryptable = 0, []
    for credential in await session.scalars(select(Credential)):
        if not keyring.needs_rotation(credential.ciphertext):
            continue
        try:
            secret = reveal_key(keyring, credential)
        except DecryptionError:
            undecryptable.append(credential.id)
            continue
        credential.ciphertext = keyring.encrypt(secret, associated_data=credential.id)
        record_event(
            session,
            credential.organization_id,
            actor,
            EventType.CREDENTIAL_ROTATED,
            credential.id,
            {"name": credential.name},
        )
        rotated += 1
    await session.flush()
    return rotated, undecryptable
