"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable), the fake OpenAI.

PostgreSQL: tests marked `postgres` run against the server named by
`VECTORGATE_TEST_POSTGRES_URL` (default: the local server on 127.0.0.1:5432, user
postgres, database test). Each test session works in a database of its own, created and
dropped here. Where no server answers, those tests skip and say why, unless
`VECTORGATE_TEST_REQUIRE_POSTGRES=1` (CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import settings
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.migrate import upgrade_to_head
from vectorgate.testing.fake_openai import Dialect, FakeOpenAI

# End-to-end fixtures (`service`, `tenant`, `client`, ...) live in their own module.
pytest_plugins = ["tests.e2e"]

# Property tests explore new inputs on every local run; CI (HYPOTHESIS_PROFILE=ci) replays
# a fixed set, so a run's outcome depends on the code alone. Found failures become tests.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _postgres_admin_url() -> str:
    return os.environ.get("VECTORGATE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


async def _postgres_execute(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server, or a skip (a failure in CI)."""
    admin_url = _postgres_admin_url()
    try:
        asyncio.run(_postgres_execute(admin_url, "SELECT 1"))
    except Exception as exc:  # any failure to connect means "not reachable"
        reason = f"PostgreSQL not reachable at {make_url(admin_url).render_as_string()}: {exc!r}"
        if os.environ.get("VECTORGATE_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return admin_url


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards."""
    name = f"vectorgate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_postgres_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The test session's own PostgreSQL database."""
    with postgres_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'vectorgate.db'}"


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated database URL, once per backend."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    upgrade_to_head(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of each backend, for one test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    else:
        with postgres_database(request.getfixturevalue("postgres_server")) as url:
            yield url


@pytest_asyncio.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def upstream_dialect() -> Dialect:
    """Which upstream the fake plays; modules that set `UPSTREAM_DIALECTS` run every test
    that uses `fake` once per dialect listed there."""
    return "openai"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    dialects = getattr(metafunc.module, "UPSTREAM_DIALECTS", None)
    if dialects and "upstream_dialect" in metafunc.fixturenames:
        metafunc.parametrize("upstream_dialect", dialects)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Other dialects run on SQLite only: how the upstream answers does not depend on the
    database, whose own paths the OpenAI runs cover on both backends. Halves their cost."""
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        other_dialect = params.get("upstream_dialect", "openai") != "openai"
        (dropped if other_dialect and params.get("database_url") == "postgres" else kept).append(
            item
        )
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def fake(fake_openai: FakeOpenAI, upstream_dialect: Dialect) -> Iterator[FakeOpenAI]:
    """The session's fake OpenAI, clean for each test, answering in `upstream_dialect`."""
    fake_openai.reset()
    fake_openai.dialect = upstream_dialect
    yield fake_openai
    fake_openai.reset()


@pytest.fixture
def temp_root(tmp_path: Path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path
