"""Migrations apply and revert cleanly on both backends, and match the models."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

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
