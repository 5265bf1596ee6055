"""Encryption of stored OpenAI keys: AES-256-GCM, the credential id bound as associated data.

Ciphertext format (versioned so it can change): ``v1.<key id>.<base64url(nonce || ct)>``.
The key id is the first 8 hex chars of SHA-256(key), so decryption picks the right key
directly and rotation can tell which credentials still use an old one. The first key
in the keyring encrypts; all of them decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

_VERSION = "v1"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext that no key in the keyring can open (never says more than that)."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret string whose repr and str never show it: a stray log line cannot leak it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    @property
    def hint(self) -> str:
        """What may be shown of an OpenAI key: its family and last four characters."""
        head = "sk-" if self._value.startswith("sk-") else ""
        return f"{head}...{self._value[-4:]}" if len(self._value) >= 8 else "..."

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _decode_key(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError) as exc:
        raise ValueError("encryption key is not url-safe base64") from exc
    if len(raw) != 32:
        raise ValueError("encryption key must decode to 32 bytes")
    return raw


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:8]


class Keyring:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        raws = [_decode_key(key) for key in keys]
        self._ciphers = {_key_id(raw): AESGCM(raw) for raw in raws}
        self.primary_id = _key_id(raws[0])

    def __repr__(self) -> str:
        return f"Keyring(keys={len(self._ciphers)}, primary={self.primary_id})"

    def encrypt(self, secret: Secret, *, associated_data: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        ct = self._ciphers[self.primary_id].encrypt(
            nonce, secret.reveal().encode(), associated_data.encode()
        )
        blob = base64.urlsafe_b64encode(nonce + ct).decode()
        return f"{_VERSION}.{self.primary_id}.{blob}"

    def decrypt(self, token: str, *, associated_data: str) -> Secret:
        version, _, rest = token.partition(".")
        key_id, _, blob = rest.partition(".")
        cipher = self._ciphers.get(key_id)
        if version != _VERSION or cipher is None:
            raise DecryptionError("credential was encrypted with an unknown key")
        try:
            raw = base64.urlsafe_b64decode(blob.encode())
            plain = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated_data.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise DecryptionError("credential ciphertext does not verify") from None
        return Secret(plain.decode())

    def needs_rotation(self, token: str) -> bool:
        return token.split(".", 2)[1:2] != [self.primary_id]


def load_keyring(configured: str, data_dir: Path) -> Keyring:
    """The configured keys, or the key file in the data dir, generated on first use."""
    keys = [key for key in configured.split(",") if key.strip()]
    if keys:
        return Keyring(keys)
    path = data_dir / "encryption.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generate_key() + "\n")
        log.warning(
            "VECTORGATE_ENCRYPTION_KEYS is not set: generated a key in %s. Back it up; "
            "without it the stored OpenAI keys cannot be decrypted.",
            path,
        )
    return Keyring([path.read_text().strip()])
