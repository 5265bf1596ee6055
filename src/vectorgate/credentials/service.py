"""Credentials: OpenAI keys encrypted at rest, decrypted only at the moment of use."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vectorgate.credentials.models import Credential
from vectorgate.errors import not_found
from vectorgate.security.encryption import DecryptionError, Keyring, Secret


async def create_credential(
    session: AsyncSession, keyring: Keyring, org_id: str, name: str, api_key: Secret
) -> Credential:
    credential_id = str(uuid.uuid4())
    credential = Credential(
        id=credential_id,
        organization_id=org_id,
        name=name,
        ciphertext=keyring.encrypt(api_key, associated_data=credential_id),
        key_hint=api_key.hint,
    )
    session.add(credential)
    await session.flush()
    return credential


async def get_credential(session: AsyncSession, org_id: str, credential_id: str) -> Credential:
    """The organization's credential; 404 for unknown ids and other organizations' alike."""
    credential = await session.get(Credential, credential_id)
    if credential is None or credential.organization_id != org_id:
        raise not_found("Credential not found", credential_id=credential_id)
    return credential


def reveal_key(keyring: Keyring, credential: Credential) -> Secret:
    return keyring.decrypt(credential.ciphertext, associated_data=credential.id)


async def rotate_credentials(session: AsyncSession, keyring: Keyring) -> tuple[int, list[str]]:
    """Re-encrypt every credential not yet under the primary key.

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
        rotated += 1
    await session.flush()
    return rotated, undecryptable
