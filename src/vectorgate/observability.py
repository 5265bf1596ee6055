"""Request ids, one structured log line per request, and Prometheus metrics.

A pure ASGI middleware (no body buffering, so streaming uploads stay streaming): it
honours a sane `X-Request-ID` or makes one, returns it, times the request, counts the
body bytes, and logs one JSON line when the response is done. Routes add timings of
their phases (`timings(request)[...]`) which come back as a `Server-Timing` header.
Nothing secret is logged: no query values but the route's own, no headers, no bodies.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vectorgate.errors import error_body, unexpected_error

log = logging.getLogger("vectorgate.access")
errors_log = logging.getLogger("vectorgate.errors")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# From a health check's milliseconds to the Flowise route's wait of up to 10 minutes.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter(
    "vectorgate_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "vectorgate_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=DURATION_BUCKETS,
)
BYTES_RECEIVED = Counter(
    "vectorgate_http_request_bytes_total", "Request body bytes received", ["route"]
)
PHASE_SECONDS = Histogram(
    "vectorgate_upload_phase_duration_seconds",
    "Duration of the phases of an upload request (intake, upload, batch)",
    ["phase"],
    buckets=DURATION_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "vectorgate_upstream_errors_total", "Failed calls to OpenAI, by kind", ["kind"]
)
UPLOADS_IN_FLIGHT = Gauge(
    "vectorgate_uploads_in_flight",
    "Files this process is uploading, per organization",
    ["organization"],
    multiprocess_mode="livesum",
)
POLLER_LAG = Gauge(
    "vectorgate_poller_lag_seconds",
    "How far behind schedule the oldest due file batch is",
    multiprocess_mode="max",
)

WEBHOOK_DELIVERIES = Counter(
    "vectorgate_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retrying, failed)",
    ["outcome"],
)
WEBHOOK_DELIVERY_LAG = Histogram(
    "vectorgate_webhook_delivery_lag_seconds",
    "From an event's status change to its receiver's 2xx",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 7200, 36000),
)
WEBHOOK_QUEUE_DEPTH = Gauge(
    "vectorgate_webhook_queue_depth",
    "Webhook deliveries pending (due now or waiting for a retry)",
    multiprocess_mode="max",
)


@contextmanager
def phase(request: Request, name: str) -> Iterator[None]:
    """Time a phase of the request: a histogram, and the response's `Server-Timing`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        PHASE_SECONDS.labels(name).observe(elapsed)
        request.scope.setdefault("state", {}).setdefault("timings", {})[name] = elapsed


def _route_of(scope: Scope) -> str:
    """The matched route's path template (low cardinality for metrics), set by the router."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        received = 0
        status = 500
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                phases = scope["state"].get("timings", {})
                if phases:
                    value = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in phases.items())
                    headers.append((b"server-timing", value.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, counting_receive, send_with_id)
        except Exception as exc:
            # The one catch-all: what nobody handled is answered in the route family's
            # body with the request id; its traceback goes to the log, never to the client.
            error = unexpected_error(exc, request_id)
            if error.status == 500:
                errors_log.error("request %s failed", request_id, exc_info=exc)
            else:
                errors_log.warning(
                    "request %s answered %d: %s", request_id, error.status, type(exc).__name__
                )
            if response_started:
                raise  # too late for an answer: the server closes the connection
            body = error_body(scope["path"], error)
            response = JSONResponse(body, status_code=error.status, headers=error.headers)
            await response(scope, counting_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            REQUEST_SECONDS.labels(route).observe(elapsed)
            BYTES_RECEIVED.labels(route).inc(received)
            line: dict[str, Any] = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
                "bytes_in": received,
                "worker": os.getpid(),  # which process served it, with --workers N
            }
            if "organization_id" in scope["state"]:
                line["organization_id"] = scope["state"]["organization_id"]
            log.info(json.dumps(line))


def metrics_response() -> Response:
    """The metrics of this process, or of every worker when several share a metrics dir."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
