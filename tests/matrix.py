"""Every route of the organization API and Flowise as a request builder, for the matrices.

The tenancy matrix (test_tenancy_e2e.py) and the scope matrix (test_scopes_e2e.py) run
every row of ROUTES in their own ways; each reads the routes the app declares and fails
for one that has no row here. A row builds its request from the ids it names (`Refs`),
so a matrix swaps in another tenant's ids, random ones or hostile ones.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import fastapi.routing
import httpx
from fastapi.routing import APIRoute

from tests.e2e import Service, Tenant, register_store, upload_text
from tests.support import Part, content_type, multipart_body
from vectorgate.app import create_app
from vectorgate.settings import Settings
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import run_cli

ORG_API = "/v1/organizations/"
FLOWISE_API = "/api/v1/"
ADMIN_API = "/v1/admin/"
ORG = "/v1/organizations/{org_id}"
STORES = ORG + "/vector-stores"
STORE = STORES + "/{vector_store_id}"
FLOWISE = "/api/v1/openai-assistants-vector-store/{id}"


# --- requests, built from the ids they name ----------------------------------------


@dataclass(frozen=True)
class Refs:
    """The ids a request names; each route's builder picks the ones it needs."""

    org_id: str
    credential_id: str
    vector_store_id: str
    file_id: str  # our vsf_ record id
    upstream_file_id: str  # OpenAI's file- id
    api_key_id: str  # one of the organization's keys (key_...)
    audit_event_id: str  # one of the organization's audit events (aud_...)
    upload_token_id: str  # one of the organization's upload tokens (upt_...)
    webhook_id: str  # one of the organization's webhooks (whk_...)
    delivery_id: str  # one of that webhook's deliveries (whd_...), failed


RANDOM_ID: dict[str, Callable[[], str]] = {
    "org_id": lambda: "org_" + secrets.token_hex(12),
    "credential_id": lambda: str(uuid.uuid4()),
    "vector_store_id": lambda: "vs_" + secrets.token_hex(12),
    "file_id": lambda: "vsf_" + secrets.token_hex(12),
    "upstream_file_id": lambda: "file-" + secrets.token_hex(12),
    "api_key_id": lambda: "key_" + secrets.token_hex(12),
    "audit_event_id": lambda: "aud_" + secrets.token_hex(12),
    "upload_token_id": lambda: "upt_" + secrets.token_hex(12),
    "webhook_id": lambda: "whk_" + secrets.token_hex(12),
    "delivery_id": lambda: "whd_" + secrets.token_hex(12),
}

# Webhooks the matrices create point here: a closed port on loopback, which the test
# service admits (`webhook_allow_private` in tests/e2e.py DEFAULT_SETTINGS). Their
# deliveries (pings only: see setup_party) fail, soon for good with the tests' short
# retry schedule.
WEBHOOK_URL = "http://127.0.0.1:9/hook"


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, client: httpx.Client, auth: Mapping[str, str]) -> httpx.Response:
        return client.request(
            self.method,
            quote(self.url),  # httpx refuses a raw NUL: send it as %00
            params=self.params,
            json=self.json,
            content=self.content,
            headers={**self.headers, **auth},
        )


@dataclass(frozen=True)
class Swap:
    """Case (b): the fields of B's Refs that take A's ids instead (or random ones)."""

    label: str
    fields: tuple[str, ...]


@dataclass
class Party:
    tenant: Tenant
    refs: Refs


Prepare = Callable[[httpx.Client, Party, FakeOpenAI], Refs]


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # exactly as the app declares it
    build: Callable[[Refs], Call]
    ok: int = 200
    swaps: tuple[Swap, ...] = ()
    prepare: Prepare | None = None  # case (d): makes what a successful call consumes

    @property
    def flowise(self) -> bool:
        return self.path.startswith(FLOWISE_API)


def org_url(refs: Refs, *parts: str) -> str:
    return "/".join([f"/v1/organizations/{refs.org_id}", *parts])


def store_url(refs: Refs, *parts: str) -> str:
    return org_url(refs, "vector-stores", refs.vector_store_id, *parts)


def base64_body() -> dict[str, Any]:
    content = base64.b64encode(b"tenancy check\n").decode()
    return {"files": [{"filename": "tenancy.txt", "content": content, "mime_type": "text/plain"}]}


def flowise_call(refs: Refs) -> Call:
    return Call(
        "POST",
        f"/api/v1/openai-assistants-vector-store/{refs.vector_store_id}",
        params={"credential": refs.credential_id},
        content=multipart_body([Part("tenancy.txt", b"tenancy check\n", "text/plain")]),
        headers={"Content-Type": content_type()},
    )


def throwaway_credential(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    response = client.post(
        org_url(party.refs, "credentials"),
        json={"name": "throwaway", "api_key": f"sk-throwaway-{secrets.token_hex(16)}"},
        headers=party.tenant.headers,
    )
    assert response.status_code == 201, response.text
    return replace(party.refs, credential_id=response.json()["id"])


def unregistered_store(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    return replace(party.refs, vector_store_id=fake.create_vector_store(party.tenant.openai_key))


def throwaway_key(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    response = client.post(
        org_url(party.refs, "api-keys"),
        json={"name": "throwaway", "scopes": ["read"]},
        headers=party.tenant.headers,
    )
    assert response.status_code == 201, response.text
    return replace(party.refs, api_key_id=response.json()["id"])


def throwaway_store(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    refs = unregistered_store(client, party, fake)
    response = client.post(
        org_url(refs, "vector-stores"),
        json={"credential_id": refs.credential_id, "vector_store_id": refs.vector_store_id},
        headers=party.tenant.headers,
    )
    assert response.status_code == 201, response.text
    return refs


def throwaway_token(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    response = client.post(
        org_url(party.refs, "upload-tokens"),
        json={"vector_store_id": party.refs.vector_store_id},
        headers=party.tenant.headers,
    )
    assert response.status_code == 201, response.text
    return replace(party.refs, upload_token_id=response.json()["id"])


def failed_delivery(client: httpx.Client, party: Party) -> str:
    """A ping's delivery to the party's webhook, once it has failed for good."""
    webhook_url = org_url(party.refs, "webhooks", party.refs.webhook_id)
    ping = client.post(webhook_url + "/ping", headers=party.tenant.headers)
    assert ping.status_code == 202, ping.text
    event_id = ping.json()["event_id"]
    deadline = time.monotonic() + 20
    while True:
        page = client.get(webhook_url + "/deliveries", headers=party.tenant.headers)
        assert page.status_code == 200, page.text
        found = [d for d in page.json()["data"] if d["event_id"] == event_id]
        if found and found[0]["status"] == "failed":
            return str(found[0]["id"])
        assert time.monotonic() < deadline, page.text
        time.sleep(0.1)


def throwaway_failed_delivery(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    return replace(party.refs, delivery_id=failed_delivery(client, party))


def throwaway_webhook(client: httpx.Client, party: Party, fake: FakeOpenAI) -> Refs:
    response = client.post(
        org_url(party.refs, "webhooks"), json={"url": WEBHOOK_URL}, headers=party.tenant.headers
    )
    assert response.status_code == 201, response.text
    return replace(party.refs, webhook_id=response.json()["id"])


CREDENTIAL = Swap("its-credential", ("credential_id",))
VECTOR_STORE = Swap("its-vector-store", ("vector_store_id",))
CREDENTIAL_AND_STORE = Swap("its-credential-and-vector-store", ("credential_id", "vector_store_id"))
FILE = Swap("its-file", ("file_id",))
FILE_AND_STORE = Swap("its-file-and-vector-store", ("file_id", "vector_store_id"))
UPSTREAM_FILE = Swap("its-upstream-file", ("upstream_file_id",))
UPSTREAM_FILE_AND_STORE = Swap(
    "its-upstream-file-and-vector-store", ("upstream_file_id", "vector_store_id")
)
API_KEY = Swap("its-api-key", ("api_key_id",))
AUDIT_EVENT = Swap("its-audit-event", ("audit_event_id",))
UPLOAD_TOKEN = Swap("its-upload-token", ("upload_token_id",))
WEBHOOK = Swap("its-webhook", ("webhook_id",))
DELIVERY = Swap("its-delivery", ("delivery_id",))
WEBHOOK_AND_DELIVERY = Swap("its-webhook-and-delivery", ("webhook_id", "delivery_id"))

ROUTES: tuple[Route, ...] = (
    Route(
        "create-credential",
        "POST",
        ORG + "/credentials",
        lambda r: Call(
            "POST",
            org_url(r, "credentials"),
            json={"name": "intruder", "api_key": "sk-intruder-0123456789abcdef"},
        ),
        ok=201,
    ),
    Route(
        "list-credentials",
        "GET",
        ORG + "/credentials",
        lambda r: Call("GET", org_url(r, "credentials")),
    ),
    Route(
        "delete-credential",
        "DELETE",
        ORG + "/credentials/{credential_id}",
        lambda r: Call("DELETE", org_url(r, "credentials", r.credential_id)),
        swaps=(CREDENTIAL,),
        prepare=throwaway_credential,
    ),
    Route(
        "create-vector-store",
        "POST",
        STORES,
        lambda r: Call(
            "POST",
            org_url(r, "vector-stores"),
            json={"credential_id": r.credential_id, "name": "x"},
        ),
        ok=201,
        swaps=(CREDENTIAL,),
    ),
    Route(
        "register-vector-store",
        "POST",
        STORES,
        lambda r: Call(
            "POST",
            org_url(r, "vector-stores"),
            json={"credential_id": r.credential_id, "vector_store_id": r.vector_store_id},
        ),
        ok=201,
        swaps=(CREDENTIAL, VECTOR_STORE, CREDENTIAL_AND_STORE),
        prepare=unregistered_store,
    ),
    Route("list-vector-stores", "GET", STORES, lambda r: Call("GET", org_url(r, "vector-stores"))),
    Route(
        "get-vector-store",
        "GET",
        STORE,
        lambda r: Call("GET", store_url(r)),
        swaps=(VECTOR_STORE,),
    ),
    Route(
        "unregister-vector-store",
        "DELETE",
        STORE,
        lambda r: Call("DELETE", store_url(r)),
        swaps=(VECTOR_STORE,),
        prepare=throwaway_store,
    ),
    Route(
        "delete-vector-store-upstream",
        "DELETE",
        STORE,
        lambda r: Call("DELETE", store_url(r), params={"delete_upstream": "true"}),
        swaps=(VECTOR_STORE,),
        prepare=throwaway_store,
    ),
    Route(
        "upload-base64",
        "POST",
        STORE + "/files/upload-base64",
        lambda r: Call("POST", store_url(r, "files", "upload-base64"), json=base64_body()),
        swaps=(VECTOR_STORE,),
    ),
    Route(
        "list-files",
        "GET",
        STORE + "/files",
        lambda r: Call("GET", store_url(r, "files")),
        swaps=(VECTOR_STORE,),
    ),
    Route(
        "list-files-after-cursor",
        "GET",
        STORE + "/files",
        lambda r: Call("GET", store_url(r, "files"), params={"after": r.file_id}),
        swaps=(VECTOR_STORE, FILE, FILE_AND_STORE),
    ),
    Route(
        "file-status",
        "GET",
        STORE + "/files/{file_id}/status",
        lambda r: Call("GET", store_url(r, "files", r.file_id, "status")),
        swaps=(FILE, VECTOR_STORE, FILE_AND_STORE),
    ),
    Route(
        "file-status-by-upstream-id",
        "GET",
        STORE + "/files/{file_id}/status",
        lambda r: Call("GET", store_url(r, "files", r.upstream_file_id, "status")),
        swaps=(UPSTREAM_FILE, VECTOR_STORE, UPSTREAM_FILE_AND_STORE),
    ),
    # The status stream (SPEC 10.4): its files are named in the query. The party's file is
    # final, so a successful call is one event and `done`, and the stream ends.
    Route(
        "file-events",
        "GET",
        STORE + "/files/events",
        lambda r: Call("GET", store_url(r, "files", "events"), params={"ids": r.file_id}),
        swaps=(FILE, VECTOR_STORE, FILE_AND_STORE),
    ),
    Route(
        "file-events-by-upstream-id",
        "GET",
        STORE + "/files/events",
        lambda r: Call("GET", store_url(r, "files", "events"), params={"ids": r.upstream_file_id}),
        swaps=(UPSTREAM_FILE, VECTOR_STORE, UPSTREAM_FILE_AND_STORE),
    ),
    Route(
        "flowise-upload",
        "POST",
        FLOWISE,
        flowise_call,
        swaps=(CREDENTIAL, VECTOR_STORE, CREDENTIAL_AND_STORE),
    ),
    Route(
        "create-api-key",
        "POST",
        ORG + "/api-keys",
        lambda r: Call("POST", org_url(r, "api-keys"), json={"name": "x", "scopes": ["read"]}),
        ok=201,
    ),
    Route("list-api-keys", "GET", ORG + "/api-keys", lambda r: Call("GET", org_url(r, "api-keys"))),
    Route(
        "revoke-api-key",
        "DELETE",
        ORG + "/api-keys/{key_id}",
        lambda r: Call("DELETE", org_url(r, "api-keys", r.api_key_id)),
        swaps=(API_KEY,),
        prepare=throwaway_key,
    ),
    Route(
        "list-audit-events",
        "GET",
        ORG + "/audit-events",
        lambda r: Call("GET", org_url(r, "audit-events")),
    ),
    Route(
        "list-audit-events-after-cursor",
        "GET",
        ORG + "/audit-events",
        lambda r: Call("GET", org_url(r, "audit-events"), params={"after": r.audit_event_id}),
        swaps=(AUDIT_EVENT,),
    ),
    Route(
        "mint-upload-token",
        "POST",
        ORG + "/upload-tokens",
        lambda r: Call(
            "POST", org_url(r, "upload-tokens"), json={"vector_store_id": r.vector_store_id}
        ),
        ok=201,
        swaps=(VECTOR_STORE,),
    ),
    Route(
        "revoke-upload-token",
        "DELETE",
        ORG + "/upload-tokens/{token_id}",
        lambda r: Call("DELETE", org_url(r, "upload-tokens", r.upload_token_id)),
        swaps=(UPLOAD_TOKEN,),
        prepare=throwaway_token,
    ),
    Route(
        "create-webhook",
        "POST",
        ORG + "/webhooks",
        lambda r: Call("POST", org_url(r, "webhooks"), json={"url": WEBHOOK_URL}),
        ok=201,
    ),
    Route("list-webhooks", "GET", ORG + "/webhooks", lambda r: Call("GET", org_url(r, "webhooks"))),
    Route(
        "get-webhook",
        "GET",
        ORG + "/webhooks/{webhook_id}",
        lambda r: Call("GET", org_url(r, "webhooks", r.webhook_id)),
        swaps=(WEBHOOK,),
    ),
    Route(
        "delete-webhook",
        "DELETE",
        ORG + "/webhooks/{webhook_id}",
        lambda r: Call("DELETE", org_url(r, "webhooks", r.webhook_id)),
        swaps=(WEBHOOK,),
        prepare=throwaway_webhook,
    ),
    Route(
        "rotate-webhook-secret",
        "POST",
        ORG + "/webhooks/{webhook_id}/rotate-secret",
        lambda r: Call("POST", org_url(r, "webhooks", r.webhook_id, "rotate-secret")),
        swaps=(WEBHOOK,),
    ),
    Route(
        "ping-webhook",
        "POST",
        ORG + "/webhooks/{webhook_id}/ping",
        lambda r: Call("POST", org_url(r, "webhooks", r.webhook_id, "ping")),
        ok=202,
        swaps=(WEBHOOK,),
    ),
    Route(
        "list-webhook-deliveries",
        "GET",
        ORG + "/webhooks/{webhook_id}/deliveries",
        lambda r: Call("GET", org_url(r, "webhooks", r.webhook_id, "deliveries")),
        swaps=(WEBHOOK,),
    ),
    Route(
        "retry-webhook-delivery",
        "POST",
        ORG + "/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
        lambda r: Call(
            "POST", org_url(r, "webhooks", r.webhook_id, "deliveries", r.delivery_id, "retry")
        ),
        ok=202,
        swaps=(WEBHOOK, DELIVERY, WEBHOOK_AND_DELIVERY),
        prepare=throwaway_failed_delivery,
    ),
)


ADMIN = "/v1/admin"

# The admin API (SPEC 9.3): not the organization API's tenancy (an admin sees every
# organization), so its own small matrix runs these (tests/admin/test_admin_e2e.py).
ADMIN_ROUTES: tuple[Route, ...] = (
    Route(
        "admin-create-organization",
        "POST",
        ADMIN + "/organizations",
        lambda r: Call("POST", ADMIN + "/organizations", json={"name": "admin-made"}),
        ok=201,
    ),
    Route(
        "admin-list-organizations",
        "GET",
        ADMIN + "/organizations",
        lambda r: Call("GET", ADMIN + "/organizations"),
    ),
    Route(
        "admin-create-api-key",
        "POST",
        ADMIN + "/organizations/{org_id}/api-keys",
        lambda r: Call(
            "POST",
            f"{ADMIN}/organizations/{r.org_id}/api-keys",
            json={"name": "admin-made", "scopes": ["read"]},
        ),
        ok=201,
    ),
    Route(
        "admin-list-api-keys",
        "GET",
        ADMIN + "/organizations/{org_id}/api-keys",
        lambda r: Call("GET", f"{ADMIN}/organizations/{r.org_id}/api-keys"),
    ),
    Route(
        "admin-revoke-api-key",
        "DELETE",
        ADMIN + "/api-keys/{key_id}",
        lambda r: Call("DELETE", f"{ADMIN}/api-keys/{r.api_key_id}"),
    ),
)


def names_a_store(route: Route) -> bool:
    """Whether the route's path names a vector store (`{vector_store_id}`, Flowise's `{id}`)."""
    return "{vector_store_id}" in route.path or route.flowise


# --- tenants ------------------------------------------------------------------------


def wait_until_final(client: httpx.Client, party: Party, within: float = 10) -> None:
    url = store_url(party.refs, "files", party.refs.file_id, "status")
    deadline = time.monotonic() + within
    while True:
        response = client.get(url, headers=party.tenant.headers)
        assert response.status_code == 200, response.text
        if response.json()["processing_status"] in ("completed", "failed"):
            return
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)


def make_party(service: Service, fake: FakeOpenAI) -> Party:
    """A tenant with a registered vector store holding one processed file; its key (made
    with the command line: every scope, every store) is the one in its refs."""
    org = run_cli(service.env, "orgs", "create", f"tenancy-{secrets.token_hex(3)}")["id"]
    issued = run_cli(service.env, "api-keys", "create", "--org", org)
    key = issued["key"]
    openai_key = f"sk-tenancy-{secrets.token_hex(16)}"
    with httpx.Client(base_url=service.running.base_url, timeout=60) as client:
        # The credential through the API: one CLI start less per tenant.
        response = client.post(
            f"/v1/organizations/{org}/credentials",
            json={"name": "main", "api_key": openai_key},
            headers={"X-API-Key": key},
        )
        assert response.status_code == 201, response.text
        tenant = Tenant(org, key, response.json()["id"], openai_key)
        return setup_party(client, tenant, fake, issued["id"])


def setup_party(client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, key_id: str) -> Party:
    upstream = register_store(client, tenant, fake)
    record = upload_text(client, tenant, upstream, b"tenancy check\n")
    events = client.get(
        f"/v1/organizations/{tenant.org_id}/audit-events",
        params={"limit": "1"},
        headers=tenant.headers,
    )
    assert events.status_code == 200, events.text
    token = client.post(
        f"/v1/organizations/{tenant.org_id}/upload-tokens",
        json={"vector_store_id": upstream},
        headers=tenant.headers,
    )
    assert token.status_code == 201, token.text
    # Pings only: a file's events could otherwise arrive between two snapshots.
    webhook = client.post(
        f"/v1/organizations/{tenant.org_id}/webhooks",
        json={"url": WEBHOOK_URL, "events": ["webhook.ping"]},
        headers=tenant.headers,
    )
    assert webhook.status_code == 201, webhook.text
    refs = Refs(
        tenant.org_id,
        tenant.credential_id,
        upstream,
        record["id"],
        record["file_id"],
        key_id,
        events.json()["data"][0]["id"],
        token.json()["id"],
        webhook.json()["id"],
        "",
    )
    party = Party(tenant, refs)
    party.refs = replace(refs, delivery_id=failed_delivery(client, party))
    wait_until_final(client, party)
    return party


def identity(record: dict[str, Any]) -> tuple[Any, ...]:
    return record["id"], record["file_id"], record["filename"]


def snapshot(client: httpx.Client, party: Party, fake: FakeOpenAI) -> dict[str, Any]:
    """Everything of a tenant another tenant could have touched, here and upstream."""
    refs, headers = party.refs, party.tenant.headers

    def get(url: str, **params: str) -> Any:
        response = client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    return {
        "credentials": get(org_url(refs, "credentials"))["data"],
        "vector_stores": get(org_url(refs, "vector-stores"))["data"],
        # Which records exist and what they name; not their processing status, which the
        # poller moves on in the background whoever asks.
        "files": [identity(r) for r in get(store_url(refs, "files"), limit="100")["data"]],
        "status": identity(get(store_url(refs, "files", refs.file_id, "status"))),
        "api_keys": get(org_url(refs, "api-keys"))["data"],
        "audit_events": get(org_url(refs, "audit-events"), limit="100")["data"],
        "webhooks": get(org_url(refs, "webhooks"))["data"],
        # Which deliveries exist; their attempts go on in the background.
        "deliveries": [
            (d["id"], d["event_id"])
            for d in get(org_url(refs, "webhooks", refs.webhook_id, "deliveries"), limit="100")[
                "data"
            ]
        ],
        "upstream_files": sorted(f.id for f in fake.files_for(party.tenant.openai_key)),
        "upstream_store_files": sorted(fake.vector_store_files(refs.vector_store_id)),
    }


def assert_not_found(response: httpx.Response, route: Route) -> None:
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["success"] is False
    if route.flowise:
        assert body["statusCode"] == 404
    else:
        assert body["error"]["code"] == "NOT_FOUND"


def same_as_nonexistent(
    foreign: httpx.Response, control: httpx.Response, ids: Mapping[str, tuple[str, str]]
) -> None:
    """The two answers match once each id is replaced by a placeholder naming its field."""
    foreign_text, control_text = foreign.text, control.text
    for name, (foreign_id, random_id) in ids.items():
        foreign_text = foreign_text.replace(foreign_id, f"<{name}>")
        control_text = control_text.replace(random_id, f"<{name}>")
    assert (foreign.status_code, foreign_text) == (control.status_code, control_text)


# --- the matrix ----------------------------------------------------------------------


# Routes that need no API key (SPEC 2 and 5): everything else must be in ROUTES.
OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
STATIC_MOUNTS = {"/docs/assets"}


def app_routes() -> dict[tuple[str, str], Any]:
    """Every route the app serves, read from the app itself, by (method, path)."""
    app = create_app(Settings())
    # Newer FastAPI includes routers lazily; `iter_route_contexts` flattens them.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: list[Any] = list(flatten(app.routes)) if flatten else list(app.routes)
    declared = {}
    for route in routes:
        inner = getattr(route, "route", route)
        if getattr(inner, "path", None) in STATIC_MOUNTS:
            continue  # static files (Swagger UI), served without a key like /docs itself
        methods = getattr(route, "methods", None)
        assert methods, f"cannot enumerate the routes of {route!r} (a mount?)"
        declared |= {(method, route.path): inner for method in methods - {"HEAD"}}
    return declared


def declared_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves."""
    return set(app_routes())


def guarded_routes() -> dict[tuple[str, str], APIRoute]:
    """The routes that need a key: every one but OPEN_PATHS."""
    guarded = {}
    for (method, path), route in app_routes().items():
        if path in OPEN_PATHS:
            continue
        assert isinstance(route, APIRoute), f"{method} {path} is not an API route"
        guarded[method, path] = route
    return guarded
