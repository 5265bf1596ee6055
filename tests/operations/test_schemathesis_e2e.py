"""Schemathesis against the service's own /openapi.json with a valid API key.

Every generated request must get a non-5xx answer whose status, content type and body
match the schema; schema-valid requests must not be refused and invalid ones must be.
Ids are drawn, most of the time, from the tenant's real organization, credential, vector
store and file, so requests get past the 404s into the routes' own logic; the rest of the
time they are generated like any other value. Bounded (`--max-examples`, deterministic)
so it stays a CI-sized run; for a longer random hunt set VECTORGATE_TEST_FUZZ_SECONDS
(fuzzing and stateful phases repeat until the time is spent; the seed is printed).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e import Service, Tenant, register_store, upload_text
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

# The admin API on, so that its routes are in the schema and exercised: every request
# carries the admin token as Bearer beside the key's X-API-Key, which the organization
# API reads first and the admin API ignores.
ADMIN_TOKEN = "adm-" + secrets.token_urlsafe(32)
SERVICE_SETTINGS = {"admin_tokens": ADMIN_TOKEN}

# allow_header_conformance: Starlette answers a 405 with the Allow of the first route that
# matched the path, not all of them; not ours to fix and harmless to clients.
# ignored_auth: probes auth by replaying requests without credentials; covered, with
# exact expectations, by the tenancy matrix.
EXCLUDED = "allow_header_conformance,ignored_auth"

# Where each id parameter draws its known values from, and how often.
BINDINGS = {
    "path.org_id": ("organizations", 0.9),
    "path.id": ("vector_stores", 0.7),
    "path.vector_store_id": ("vector_stores", 0.7),
    "path.credential_id": ("credentials", 0.7),
    "path.file_id": ("files", 0.7),
    "path.key_id": ("api_keys", 0.7),
    "path.webhook_id": ("webhooks", 0.7),
    "query.credential": ("credentials", 0.7),
    "query.after": ("cursors", 0.5),
    "query.ids": ("files", 0.7),
    "body.credential_id": ("credentials", 0.7),
    "body.vector_store_id": ("vector_stores", 0.7),
}

# A schema cannot say "a real PDF" or "a name with an extension": a schema-valid upload
# may still be refused for what its files hold, with the statuses SPEC 3.1 gives for that.
UPLOAD_CONTENT_REFUSALS = (400, 413, 415)
# Nor can it say "a store registered to this organization": a new key naming any other
# store is a 400 (SPEC 9.1).
API_KEY_CREATION = "POST /v1/organizations/{org_id}/api-keys"
ADMIN_API_KEY_CREATION = "POST /v1/admin/organizations/{org_id}/api-keys"
# Nor "a URL whose host resolves": a schema-valid webhook URL may be refused (SPEC 10.1).
WEBHOOK_CREATION = "POST /v1/organizations/{org_id}/webhooks"
# The status stream (SPEC 10.4) is checked like any route: its 200 is `text/event-stream`,
# which has no schema to hold the body to, and it ends by itself (the run's files are
# final within seconds: one event each, then `done`; an unknown id is a 404 first). The
# schema cannot say "at most 100 distinct ids" nor "access_token or a header, not both"
# (every request here carries the key's header): those schema-valid requests are a 400.
FILE_EVENTS = "GET /v1/organizations/{org_id}/vector-stores/{vector_store_id}/files/events"


def schemathesis_config(ids: dict[str, list[str]]) -> str:
    lines = []
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    for key, (dictionary, probability) in BINDINGS.items():
        lines.append(f'"{key}" = {{ dictionary = "{dictionary}", probability = {probability} }}')
    accepted = [200, 201, 401, 404, 409, 429, *UPLOAD_CONTENT_REFUSALS]
    lines += [
        "",
        "[[operations]]",
        'include-path-regex = "(upload-base64|openai-assistants-vector-store)"',
        f"checks.positive_data_acceptance.expected-statuses = {accepted}",
        "",
        "[[operations]]",
        f'include-name = "{API_KEY_CREATION}"',
        f"checks.positive_data_acceptance.expected-statuses = {[201, 400, 401, 403, 404]}",
        "",
        "[[operations]]",
        f'include-name = "{ADMIN_API_KEY_CREATION}"',
        f"checks.positive_data_acceptance.expected-statuses = {[201, 400, 404]}",
        "",
        "[[operations]]",
        f'include-name = "{WEBHOOK_CREATION}"',
        f"checks.positive_data_acceptance.expected-statuses = {[201, 400, 401, 403, 404]}",
        "",
        "[[operations]]",
        f'include-name = "{FILE_EVENTS}"',
        f"checks.positive_data_acceptance.expected-statuses = {[200, 400, 401, 403, 404]}",
    ]
    return "\n".join(lines) + "\n"


def known_ids(client: httpx.Client, tenant: Tenant, fake: FakeOpenAI) -> dict[str, list[str]]:
    """The tenant's registered vector store holding one uploaded file, two keys to revoke
    (never the one the run uses), two webhooks and its newest audit event."""
    store = register_store(client, tenant, fake)
    record = upload_text(client, tenant, store)
    keys_url = f"/v1/organizations/{tenant.org_id}/api-keys"
    keys = []
    for name in ("fuzz-1", "fuzz-2"):
        response = client.post(
            keys_url, json={"name": name, "scopes": ["read"]}, headers=tenant.headers
        )
        assert response.status_code == 201, response.text
        keys.append(response.json()["id"])
    webhooks = []
    for port in (9, 10):
        response = client.post(
            f"/v1/organizations/{tenant.org_id}/webhooks",
            json={"url": f"http://127.0.0.1:{port}/hook"},
            headers=tenant.headers,
        )
        assert response.status_code == 201, response.text
        webhooks.append(response.json()["id"])
    events = client.get(
        f"/v1/organizations/{tenant.org_id}/audit-events", headers=tenant.headers
    ).json()["data"]
    files = [record["id"], record["file_id"]]
    return {
        "organizations": [tenant.org_id],
        "credentials": [tenant.credential_id],
        "vector_stores": [store],
        "files": files,
        "api_keys": keys,
        "webhooks": webhooks,
        "cursors": [*files, events[0]["id"]],
    }


def budget() -> list[str]:
    seconds = os.environ.get("VECTORGATE_TEST_FUZZ_SECONDS")
    if seconds:
        return ["--max-examples", "200", "--max-time", seconds]
    return ["--max-examples", "25", "--generation-deterministic"]


def test_schemathesis_finds_no_failure(
    service: Service, tenant: Tenant, client: httpx.Client, fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(known_ids(client, tenant, fake)))
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(
        [
            str(st), "--config-file", str(config),
            "run", f"{service.running.base_url}/openapi.json",
            "--header", f"X-API-Key: {tenant.api_key}",
            "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
            "--checks", "all", "--exclude-checks", EXCLUDED,
            *budget(),
            "--request-timeout", "30",
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )  # fmt: skip
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary
    assert "Dictionaries:     7 dictionaries" in done.stdout, summary
    assert "failures" not in summary.splitlines()[-1], summary
    assert "Traceback" not in service.running.log()
    assert ADMIN_TOKEN not in service.running.log()
    # The admin routes were in the schema the run tested.
    assert any(
        path.startswith("/v1/admin/") for path in client.get("/openapi.json").json()["paths"]
    )
    # Its key could revoke itself (SPEC 9.1); had it, the rest of the run was only 401s.
    still = client.get(f"/v1/organizations/{tenant.org_id}/credentials", headers=tenant.headers)
    assert still.status_code == 200, "the run revoked its own key"
