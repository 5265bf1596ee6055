"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from vectorgate.deps import ResourcesDep
from vectorgate.migrate import current_revision, head_revision
from vectorgate.observability import metrics_response

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus metrics."""
    return metrics_response()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(resources: ResourcesDep) -> dict[str, str] | JSONResponse:
    """The database is reachable and migrated to the head revision."""
    try:
        async with resources.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
            revision = await session.run_sync(lambda s: current_revision(s.connection()))
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "reason": f"database: {type(exc).__name__}"},
            status_code=503,
        )
    if revision != head_revision():
        return JSONResponse(
            {"status": "unavailable", "reason": "database migrations are behind"},
            status_code=503,
        )
    return {"status": "ok"}
