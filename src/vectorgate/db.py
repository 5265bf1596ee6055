"""Database engine, the declarative base and the per-request unit of work."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, Select, and_, event, or_
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # lowercase base32hex


def new_id(prefix: str) -> str:
    """`prefix` + 24 random lowercase base32hex characters (120 bits)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware timestamps on every backend (SQLite drops the zone on the way back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


POOL_SIZE = 10  # PostgreSQL connections a worker keeps open
POOL_OVERFLOW = 10  # and may open beyond them in a burst


def create_engine(url: str) -> AsyncEngine:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # One writer at a time: wait for the lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # Requests hold a connection only for short reads and writes, but a burst still
        # needs several at once: keep 10 open rather than SQLAlchemy's 5, so that a burst
        # does not close and reopen connections over and over (each a few ms of
        # PostgreSQL's time), and allow 10 more. Per worker process: size
        # max_connections for workers x 20.
        kwargs["pool_size"] = POOL_SIZE
        kwargs["max_overflow"] = POOL_OVERFLOW
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL still never corrupts the database; a power cut can lose the
    # last commits, not the OS crashing. It saves an fsync per commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Every mapped class must be imported before the first flush, or foreign keys to
    # tables nobody imported cannot be resolved. Imported here (not at module level)
    # because the models import this module.
    import vectorgate.models  # noqa: F401

    return async_sessionmaker(engine, expire_on_commit=False)


_write_locks: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def write_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A short transaction that writes, committed at the end of the block.

    SQLite admits one writer at a time, and a waiting writer polls for the lock with
    sleeps of up to 100 ms: under many concurrent requests that is most of their
    latency. Within a process, writers therefore queue on an asyncio lock instead (no
    sleeping, first come first served); SQLite's own waiting only remains between
    processes. PostgreSQL locks rows, not the database, and needs none of this.
    """
    lock: contextlib.AbstractAsyncContextManager[object] = contextlib.nullcontext()
    bind = sessionmaker.kw.get("bind")
    if bind is not None and bind.dialect.name == "sqlite":
        lock = _write_locks.setdefault(sessionmaker, asyncio.Lock())
    async with lock, sessionmaker() as session, session.begin():
        yield session


async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session per request: commit when the handler succeeds, roll back when it raises."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def newest_first_page(
    session: AsyncSession, query: Select[Any], model: Any, cursor: Any | None, limit: int
) -> tuple[Sequence[Any], bool]:
    """One page of `query`'s `model` rows, newest first (by `created_at`, then `id`),
    starting after the row `cursor` (None: from the newest); and whether more follow.
    Every paginated list of the API pages this way (SPEC 4's file list)."""
    if cursor is not None:
        query = query.where(
            or_(
                model.created_at < cursor.created_at,
                and_(model.created_at == cursor.created_at, model.id < cursor.id),
            )
        )
    query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    rows = (await session.scalars(query)).all()
    return rows[:limit], len(rows) > limit
