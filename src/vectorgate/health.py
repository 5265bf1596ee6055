"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import make_url, text

from vectorgate.db import write_transaction
from vectorgate.deps import ResourcesDep
from vectorgate.limits import free_space_problem
from vectorgate.migrate import current_revision, head_revision
from vectorgate.observability import metrics_response

# How long the write probe may wait for the database (SQLite's write lock included); a
# database that takes longer to accept one tiny write is not ready for uploads either.
WRITE_PROBE_TIMEOUT_S = 5

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus metrics."""
    return metrics_response()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)


@router.get("/readyz", response_model=None)
async def readyz(resources: ResourcesDep) -> dict[str, str] | JSONResponse:
    """The database is migrated to the head revision and takes writes; the disks have room."""
    settings = resources.settings
    disks = [settings.resolved_temp_dir]
    database = make_url(settings.resolved_database_url)
    if database.get_backend_name() == "sqlite" and database.database:
        disks.append(Path(database.database).parent)
    for disk in disks:
        problem = await asyncio.to_thread(free_space_problem, disk, settings.min_free_disk_bytes)
        if problem is not None:
            return _unavailable(problem)
    try:
        async with asyncio.timeout(WRITE_PROBE_TIMEOUT_S):
            async with resources.sessionmaker() as session:
                revision = await session.run_sync(lambda s: current_revision(s.connection()))
            if revision != head_revision():
                return _unavailable("database migrations are behind")
            # A real write that never grows the database: the one alembic row, unchanged.
            async with write_transaction(resources.sessionmaker) as session:
                await session.execute(text("UPDATE alembic_version SET version_num = version_num"))
    except TimeoutError:
        return _unavailable(f"database: no write within {WRITE_PROBE_TIMEOUT_S} s")
    except Exception as exc:
        return _unavailable(f"database: {type(exc).__name__}")
    return {"status": "ok"}
