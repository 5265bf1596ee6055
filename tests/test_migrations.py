"""Migrations apply and revert cleanly on both backends, and match the models."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from vectorgate.db import create_engine
from vectorgate.migrate import alembic_config, head_revision, upgrade_to_head
from vectorgate.models import Base


def schema_diff(url: str) -> list[object]:
    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async def run() -> list[object]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    upgrade_to_head(empty_database_url)
    assert schema_diff(empty_database_url) == []
    command.downgrade(alembic_config(empty_database_url), "base")
    upgrade_to_head(empty_database_url)
    assert head_revision() is not None
    assert schema_diff(empty_database_url) == []


def test_keys_made_before_scopes_get_all_three_and_every_store(empty_database_url: str) -> None:
    """SPEC 9.1: keys that existed before scopes keep doing everything they did."""
    command.upgrade(alembic_config(empty_database_url), "3f2b9c41d7e5")

    async def run(statement: str) -> list[Any]:
        engine = create_engine(empty_database_url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement))
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    asyncio.run(
        run(
            "INSERT INTO organizations (id, name, created_at, upload_slots_version) "
            "VALUES ('org_old', 'old', '2026-01-01 00:00:00+00:00', 0)"
        )
    )
    asyncio.run(
        run(
            "INSERT INTO api_keys (id, organization_id, name, prefix, key_hash, created_at) "
            "VALUES ('key_old', 'org_old', 'old', 'vg_oldoldol', 'digest', "
            "'2026-01-01 00:00:00+00:00')"
        )
    )
    upgrade_to_head(empty_database_url)
    [(scopes, stores, expires_at)] = asyncio.run(
        run("SELECT scopes, vector_store_ids, expires_at FROM api_keys")
    )
    assert (json.loads(scopes) if isinstance(scopes, str) else scopes) == [
        "upload",
        "read",
        "manage",
    ]
    assert (stores, expires_at) == (None, None)
