"""The application factory. Nothing happens at import time; the lifespan makes and disposes
the engine, the shared OpenAI client and the staging area."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from vectorgate import __version__
from vectorgate.admin.routes import router as admin_router
from vectorgate.audit.routes import router as audit_router
from vectorgate.credentials.routes import router as credentials_router
from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.deps import Resources
from vectorgate.errors import (
    AppError,
    handle_app_error,
    handle_http_exception,
    handle_validation_error,
)
from vectorgate.flowise.routes import router as flowise_router
from vectorgate.health import router as health_router
from vectorgate.limits import JSON_BODY_MODELS, BodyReadDeadline
from vectorgate.observability import RequestLogMiddleware
from vectorgate.organizations.routes import router as api_keys_router
from vectorgate.security.encryption import load_keyring
from vectorgate.settings import Settings
from vectorgate.upload_tokens.routes import router as upload_tokens_router
from vectorgate.uploads.staging import StagingArea
from vectorgate.uploads.work import ContentWork
from vectorgate.upstream.client import create_base_client
from vectorgate.vector_stores.poller import Poller
from vectorgate.vector_stores.routes import router as vector_stores_router
from vectorgate.webhooks.dispatcher import Dispatcher
from vectorgate.webhooks.routes import router as webhooks_router

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keyring = load_keyring(settings.encryption_keys.get_secret_value(), settings.data_dir)
        engine = create_engine(settings.resolved_database_url)
        staging = StagingArea(settings.resolved_temp_dir)
        staging.open()
        client = create_base_client(settings)
        sessionmaker = create_sessionmaker(engine)
        content_work = ContentWork(
            workers=settings.content_workers,
            per_organization=settings.content_workers_per_org,
            deadline_s=settings.content_deadline_s,
        )
        # In the background: the service is ready before the workers are; an early upload
        # waits for one, as it would for a busy one.
        warm_up = asyncio.create_task(content_work.start(), name="content-workers")
        app.state.resources = Resources(
            settings=settings,
            sessionmaker=sessionmaker,
            keyring=keyring,
            openai=client,
            staging=staging,
            content_work=content_work,
        )
        poller = asyncio.create_task(
            Poller(sessionmaker, keyring, client, settings).run_forever(), name="poller"
        )
        # Deliveries apart from requests and the poller: a hanging receiver holds neither.
        dispatcher = asyncio.create_task(
            Dispatcher(sessionmaker, keyring, settings).run_forever(), name="webhooks"
        )
        try:
            yield
        finally:
            for task in (poller, dispatcher, warm_up):
                task.cancel()
            await asyncio.gather(poller, dispatcher, warm_up, return_exceptions=True)
            await client.close()
            content_work.shutdown()
            staging.close()
            await engine.dispose()

    app = FastAPI(
        title="vectorgate",
        version=__version__,
        summary="Put files into OpenAI vector stores without handing out the OpenAI key.",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets, not a CDN
        # No 307 to the path with(out) its slash: it was answered before authentication,
        # with a Location built from the client's Host header. Such a path is a 404.
        redirect_slashes=False,
    )
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Idempotency-Key",
                "Content-Type",
                "X-Request-ID",
            ],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        BodyReadDeadline,
        idle_timeout_s=settings.body_idle_timeout_s,
        min_rate=settings.body_min_rate_bytes_s,
        grace_s=settings.body_rate_grace_s,
    )
    # Outermost, so every response (errors and CORS preflights too) gets a request id.
    app.add_middleware(RequestLogMiddleware)
    app.openapi = lambda: _openapi(app, settings)  # type: ignore[method-assign]
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="vectorgate",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    app.include_router(health_router)
    app.include_router(flowise_router)
    app.include_router(credentials_router)
    app.include_router(vector_stores_router)
    app.include_router(api_keys_router)
    app.include_router(audit_router)
    app.include_router(upload_tokens_router)
    app.include_router(webhooks_router)
    # Off without admin tokens: the routes answer 404 (AdminAccess) and leave the schema.
    app.include_router(admin_router, include_in_schema=bool(settings.admin_tokens))
    return app


def _openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's schema without its 422s: validation errors are answered as 400 here."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
                # An event stream's 200 is the stream only (its errors are JSON, as others').
                ok = operation.get("responses", {}).get("200", {}).get("content", {})
                if "text/event-stream" in ok:
                    ok.pop("application/json", None)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):  # only the 422s used them
            components.pop(unused, None)
        # JSON bodies are read by a dependency, not declared (see vectorgate.limits).
        for name, model in JSON_BODY_MODELS.items():
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[name] = body
        _document_allowed_base_urls(components, settings.upstream_allowed_base_urls)
        app.openapi_schema = schema
    return app.openapi_schema


def _document_allowed_base_urls(components: dict[str, Any], allowed: list[str]) -> None:
    """A credential's `base_url` as this deployment accepts it: null only when no base URL
    is allowed, else one of the allowed ones or a path below it (SPEC 12)."""
    field = components.get("CredentialCreate", {}).get("properties", {}).get("base_url")
    if field is None:
        return
    if not allowed:
        field.clear()
        field.update({"type": "null", "description": "No base URL is allowed here."})
        return
    prefixes = "|".join(re.escape(url.rstrip("/")) for url in allowed)
    field.clear()
    field.update(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": f"^({prefixes})(/(?!\\.\\.?(/|$))[A-Za-z0-9._~-]+)*/?$",
                },
                {"type": "null"},
            ],
            "description": "An OpenAI-compatible API at or below one of: " + ", ".join(allowed),
        }
    )
