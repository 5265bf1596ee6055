from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from vectorgate.security.encryption import (
    DecryptionError,
    Keyring,
    Secret,
    generate_key,
    load_keyring,
)

OPENAI_KEY = Secret("sk-proj-" + "s3cr3t" * 8)


def test_secret_never_shows_itself_in_repr_str_or_formatting() -> None:
    for text in (repr(OPENAI_KEY), str(OPENAI_KEY), f"{OPENAI_KEY}", f"{[OPENAI_KEY]}"):
        assert "s3cr3t" not in text
    assert OPENAI_KEY.hint == "sk-...cr3t"


def test_roundtrip_binds_the_credential_id() -> None:
    keyring = Keyring([generate_key()])
    token = keyring.encrypt(OPENAI_KEY, associated_data="cred-1")
    assert "s3cr3t" not in token
    assert token.startswith("v1.")
    assert keyring.decrypt(token, associated_data="cred-1").reveal() == OPENAI_KEY.reveal()
    with pytest.raises(DecryptionError):
        keyring.decrypt(token, associated_data="cred-2")


def test_tampered_ciphertext_does_not_decrypt() -> None:
    keyring = Keyring([generate_key()])
    token = keyring.encrypt(OPENAI_KEY, associated_data="c")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(DecryptionError):
        keyring.decrypt(flipped, associated_data="c")


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = generate_key(), generate_key()
    token = Keyring([old]).encrypt(OPENAI_KEY, associated_data="c")
    rotated = Keyring([new, old])
    assert rotated.needs_rotation(token)
    assert rotated.decrypt(token, associated_data="c").reveal() == OPENAI_KEY.reveal()
    fresh = rotated.encrypt(OPENAI_KEY, associated_data="c")
    assert not rotated.needs_rotation(fresh)
    assert Keyring([new]).decrypt(fresh, associated_data="c").reveal() == OPENAI_KEY.reveal()
    with pytest.raises(DecryptionError):
        Keyring([old]).decrypt(fresh, associated_data="c")


@pytest.mark.parametrize("bad", ["short", "not base64 !!", ""])
def test_bad_configured_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="key"):
        Keyring([bad])


def test_key_file_is_generated_once_with_mode_0600_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        first = load_keyring("", tmp_path)
    path = tmp_path / "encryption.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "generated a key" in caplog.text
    assert path.read_text().strip() not in caplog.text
    token = first.encrypt(OPENAI_KEY, associated_data="c")
    assert (
        load_keyring("", tmp_path).decrypt(token, associated_data="c").reveal()
        == OPENAI_KEY.reveal()
    )


def test_configured_keys_win_over_the_key_file(tmp_path: Path) -> None:
    key = generate_key()
    keyring = load_keyring(f" {key} , {generate_key()}", tmp_path)
    assert not (tmp_path / "encryption.key").exists()
    assert keyring.primary_id == Keyring([key]).primary_id
