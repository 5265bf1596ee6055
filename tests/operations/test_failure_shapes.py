"""Failures nobody handled are answered in the contract's shapes; no route can read a body
before it authenticates; the server's connection cap stays below the fd limit."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError

from vectorgate.app import create_app
from vectorgate.server import RESERVED_FDS, connection_cap
from vectorgate.settings import Settings

SECRET_TEXT = "sk-live-should-never-reach-a-client"


def _failure(kind: str) -> BaseException:
    if kind == "disk":
        return OSError(errno.ENOSPC, "No space left on device")
    if kind == "quota":
        return OSError(errno.EDQUOT, "Disk quota exceeded")
    if kind == "disk-in-group":
        return ExceptionGroup("uploads", [OSError(errno.ENOSPC, "No space left on device")])
    if kind == "database":
        return OperationalError("SELECT 1", {}, ConnectionRefusedError(SECRET_TEXT))
    return RuntimeError(SECRET_TEXT)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    app = create_app(Settings(data_dir=tmp_path))

    async def fail(kind: str) -> None:
        raise _failure(kind)

    app.add_api_route("/v1/organizations/{kind}/fail", fail)
    app.add_api_route("/api/v1/fail/{kind}", fail, methods=["POST"])  # the Flowise family
    return app


async def _call(app: FastAPI, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vectorgate") as client:
        return await client.request(method, path)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("crash", 500, "INTERNAL_ERROR"),
        ("disk", 507, "INSUFFICIENT_STORAGE"),
        ("quota", 507, "INSUFFICIENT_STORAGE"),
        ("disk-in-group", 507, "INSUFFICIENT_STORAGE"),
        ("database", 503, "SERVICE_UNAVAILABLE"),
    ],
)
@pytest.mark.asyncio
async def test_an_unhandled_error_is_answered_in_each_family_body_with_the_request_id(
    app: FastAPI, caplog: pytest.LogCaptureFixture, kind: str, status: int, code: str
) -> None:
    caplog.set_level(logging.INFO, logger="vectorgate")
    org = await _call(app, "GET", f"/v1/organizations/{kind}/fail")
    assert org.status_code == status, org.text
    request_id = org.headers["x-request-id"]
    body = org.json()
    assert body["success"] is False
    assert body["error"] == {"code": code, "details": {"request_id": request_id}}
    assert SECRET_TEXT not in org.text
    assert "Traceback" not in org.text

    flowise = await _call(app, "POST", f"/api/v1/fail/{kind}")
    assert flowise.status_code == status, flowise.text
    assert set(flowise.json()) == {"statusCode", "success", "message"}
    assert flowise.json()["statusCode"] == status
    assert SECRET_TEXT not in flowise.text

    if status == 503:
        assert org.headers["retry-after"] == flowise.headers["retry-after"] == "5"
    if status == 500:
        assert request_id in body["message"]
        logged = [r for r in caplog.records if r.name == "vectorgate.errors"]
        assert any(request_id in r.getMessage() and r.exc_info for r in logged)
    access = [r.getMessage() for r in caplog.records if r.name == "vectorgate.access"]
    assert any(request_id in line and f'"status": {status}' in line for line in access)


def test_no_route_declares_a_body_so_none_is_read_before_authentication(
    tmp_path: Path,
) -> None:
    """FastAPI reads declared body parameters before it resolves dependencies (the API
    key check among them): bodies are read by `vectorgate.limits.json_body` instead."""
    app = create_app(Settings(data_dir=tmp_path))
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    assert routes
    declaring = [f"{route.methods} {route.path}" for route in routes if route.body_field]
    assert declaring == []
    # The schema still documents the JSON bodies.
    schema = app.openapi()
    components = schema["components"]["schemas"]
    for resource in ("credentials", "vector-stores"):
        path = f"/v1/organizations/{{org_id}}/{resource}"
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        name = body["schema"]["$ref"].rsplit("/", 1)[1]
        assert components[name]["type"] == "object"


def test_the_connection_cap_leaves_fds_for_the_work_of_requests() -> None:
    assert connection_cap(1000, 1024) == (1024 - RESERVED_FDS) // 2
    assert connection_cap(1000, 1_048_576) == 1000
    assert connection_cap(1000, 10) == 1
