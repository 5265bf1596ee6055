"""Client API keys: `vg_` + 43 url-safe random characters, stored as SHA-256 only.

A plain SHA-256 is enough because the token carries 256 bits of entropy: there is
nothing to brute-force, so no slow hash or server-side pepper is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "vg_"
# Upload tokens (SPEC 9.2) are made and hashed the same way; the prefix tells them apart.
UPLOAD_TOKEN_PREFIX = "vgu_"
_PUBLIC_CHARS = 8


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def public_prefix(key: str) -> str:
    """The part of a key that may be listed and logged, e.g. `vg_Ab3dE9xQ`."""
    return key[: len(KEY_PREFIX) + _PUBLIC_CHARS]


def looks_like_api_key(key: str) -> bool:
    return key.startswith(KEY_PREFIX) and 32 <= len(key) - len(KEY_PREFIX) <= 256


def verify_api_key(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), stored_hash)


def generate_upload_token() -> str:
    return UPLOAD_TOKEN_PREFIX + secrets.token_urlsafe(32)


def looks_like_upload_token(token: str) -> bool:
    size = len(token) - len(UPLOAD_TOKEN_PREFIX)
    return token.startswith(UPLOAD_TOKEN_PREFIX) and 32 <= size <= 256
