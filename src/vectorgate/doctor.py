"""`vectorgate doctor`: is this installation able to serve? Each check says ok or why not."""

from __future__ import annotations

import tempfile
from typing import Any

from sqlalchemy import select

from vectorgate.credentials.models import Credential
from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.migrate import current_revision, head_revision
from vectorgate.security.encryption import DecryptionError, Keyring, load_keyring
from vectorgate.settings import Settings
from vectorgate.upstream.client import client_for, create_base_client
from vectorgate.upstream.errors import upstream_errors


async def run_checks(
    settings: Settings, *, org_id: str | None = None, credential_id: str | None = None
) -> dict[str, Any]:
    """Run every check; with a credential, also reach OpenAI with it."""
    checks: dict[str, str] = {}
    checks["temp_dir"] = _check_temp_dir(settings)
    keyring: Keyring | None = None
    try:
        keyring = load_keyring(settings.encryption_keys.get_secret_value(), settings.data_dir)
        checks["encryption_keys"] = "ok"
    except (OSError, ValueError) as exc:
        checks["encryption_keys"] = f"failed: {exc}"
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            revision = await connection.run_sync(current_revision)
        checks["database"] = "ok"
        checks["migrations"] = (
            "ok"
            if revision == head_revision()
            else f"failed: at {revision}, head is {head_revision()}; run `vectorgate migrate`"
        )
        if keyring is not None and checks["migrations"] == "ok":
            async with create_sessionmaker(engine)() as session:
                checks["credentials"] = await _check_credentials(session, keyring)
                if credential_id is not None and org_id is not None:
                    checks["upstream"] = await _check_upstream(
                        session, settings, keyring, org_id, credential_id
                    )
    except Exception as exc:
        checks.setdefault("database", f"failed: {type(exc).__name__}: {exc}")
    finally:
        await engine.dispose()
    return {"ok": all(value == "ok" for value in checks.values()), "checks": checks}


def _check_temp_dir(settings: Settings) -> str:
    root = settings.resolved_temp_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix="doctor-") as probe:
            probe.write(b"ok")
    except OSError as exc:
        return f"failed: cannot write to {root}: {exc.strerror}"
    return "ok"


async def _check_credentials(session: Any, keyring: Keyring) -> str:
    credentials = (await session.scalars(select(Credential))).all()
    broken = []
    for credential in credentials:
        try:
            reveal_key(keyring, credential)
        except DecryptionError:
            broken.append(credential.id)
    if broken:
        return f"failed: no configured key decrypts {', '.join(broken)}"
    return "ok"


async def _check_upstream(
    session: Any, settings: Settings, keyring: Keyring, org_id: str, credential_id: str
) -> str:
    base = create_base_client(settings)
    try:
        credential = await get_credential(session, org_id, credential_id)
        client = client_for(base, reveal_key(keyring, credential), credential.base_url)
        with upstream_errors("list files"):
            await client.files.list(limit=1)
    except Exception as exc:
        return f"failed: {getattr(exc, 'message', type(exc).__name__)}"
    finally:
        await base.close()
    return "ok"
