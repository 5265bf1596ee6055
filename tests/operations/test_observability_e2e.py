"""Health, readiness, metrics, request ids, CORS and secrets, against the real service."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e import Service, Tenant
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

ORIGIN = "https://app.example.com"
SERVICE_SETTINGS = {"cors_origins": f"{ORIGIN},https://other.example.com"}


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_request_id_is_honoured_or_generated_and_logged(
    client: httpx.Client, service: Service
) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "trace-123.abc"})
    assert given.headers["X-Request-ID"] == "trace-123.abc"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    generated = made.headers["X-Request-ID"]
    assert generated != "bad id with spaces"
    assert len(generated) == 32
    # The access line is written when the response is done, so just after the client
    # has read it: wait for both lines rather than read the log once.
    lines = _access_lines_with(service, {"trace-123.abc", generated})
    line = next(line for line in lines if line["request_id"] == "trace-123.abc")
    assert (line["route"], line["status"], line["method"]) == ("/healthz", 200, "GET")


def _access_lines_with(service: Service, request_ids: set[str]) -> list[dict[str, Any]]:
    """The service's access lines once all of `request_ids` have been logged (5 s at most)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [
            json.loads(line.split("vectorgate.access ", 1)[1])
            for line in service.running.log().splitlines()
            if "vectorgate.access" in line
        ]
        if request_ids <= {line["request_id"] for line in lines} or time.monotonic() > deadline:
            assert request_ids <= {line["request_id"] for line in lines}
            return lines
        time.sleep(0.02)


def test_metrics_count_requests_and_uploads(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI
) -> None:
    store = fake.create_vector_store(tenant.openai_key)
    response = client.post(
        f"/api/v1/openai-assistants-vector-store/{store}",
        params={"credential": tenant.credential_id},
        files=[("files", ("m.txt", b"metrics", "text/plain"))],
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert "intake;dur=" in response.headers["Server-Timing"]
    metrics = client.get("/metrics").text
    route = "/api/v1/openai-assistants-vector-store/{id}"
    assert f'vectorgate_http_requests_total{{method="POST",route="{route}",status="200"}}' in (
        metrics
    )
    assert 'vectorgate_upload_phase_duration_seconds_count{phase="intake"}' in metrics
    assert "vectorgate_poller_lag_seconds" in metrics


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/openai-assistants-vector-store/vs_x?credential=c",
        "/v1/organizations/org_x/vector-stores/vs_x/files/upload-base64",
    ],
)
def test_cors_preflight_allows_the_upload_headers(client: httpx.Client, path: str) -> None:
    response = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "idempotency-key, x-api-key, authorization, "
            "content-type",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("idempotency-key", "x-api-key", "authorization", "content-type"):
        assert header in allowed
    assert "POST" in response.headers["access-control-allow-methods"]


def test_cors_refuses_unknown_origins(client: httpx.Client) -> None:
    response = client.options(
        "/v1/organizations/org_x/vector-stores",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_openapi_describes_the_multipart_upload(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/v1/openai-assistants-vector-store/{id}"]["post"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["files"] == {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "format": "binary"},
    }
    assert any(p["name"] == "credential" for p in operation["parameters"])
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["items"] == {"$ref": "#/components/schemas/OpenAIFile"}
    assert "422" not in json.dumps(schema["paths"])
    assert "HTTPValidationError" not in json.dumps(schema)


def test_docs_page_works_offline(client: httpx.Client) -> None:
    """/docs serves Swagger UI from the package, so it renders without internet access."""
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.content) > 500_000
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_no_secret_appears_in_any_response_or_log_line(
    client: httpx.Client, service: Service, fake: FakeOpenAI
) -> None:
    """A whole session with known secrets: every response body and header is clean."""
    tenant = service.new_tenant()
    openai_key = f"sk-secret-{uuid.uuid4().hex}"
    responses: list[httpx.Response] = []
    org = f"/v1/organizations/{tenant.org_id}"

    def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = client.request(method, url, headers=tenant.headers, **kwargs)  # type: ignore[arg-type]
        responses.append(response)
        return response

    credential = call("POST", f"{org}/credentials", json={"name": "s", "api_key": openai_key})
    cred_id = credential.json()["id"]
    store = call("POST", f"{org}/vector-stores", json={"credential_id": cred_id, "name": "s"})
    vs = store.json()["id"]
    content = base64.b64encode(b"secret session").decode()
    upload = call(
        "POST",
        f"{org}/vector-stores/{vs}/files/upload-base64",
        json={"files": [{"filename": "s.txt", "content": content, "mime_type": "text/plain"}]},
    )
    call("GET", f"{org}/vector-stores/{vs}/files/{upload.json()['files'][0]['id']}/status")
    call("GET", f"{org}/credentials")
    call("GET", f"{org}/vector-stores/{vs}/files")
    call("POST", f"/api/v1/openai-assistants-vector-store/{vs}?credential={cred_id}",
         files=[("files", ("s.txt", b"x", "text/plain"))])  # fmt: skip
    fake.rejected_keys.add(openai_key)  # errors must not leak it either
    call("POST", f"/api/v1/openai-assistants-vector-store/{vs}?credential={cred_id}",
         files=[("files", ("s.txt", b"x", "text/plain"))])  # fmt: skip
    call("POST", f"{org}/credentials", json={"name": "bad", "api_key": 3})

    assert [r.status_code for r in responses] == [201, 201, 200, 200, 200, 200, 200, 401, 400]
    for response in responses:
        seen = response.text + json.dumps(dict(response.headers))
        assert openai_key not in seen
        assert tenant.api_key not in seen
    log = service.running.log()
    assert openai_key not in log
    assert tenant.api_key not in log
