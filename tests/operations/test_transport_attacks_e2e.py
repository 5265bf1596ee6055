"""Attacks on the transport, end to end: floods of bodies and headers, slow and idle
connections, connections past the cap, a dripping upload, odd paths.

Each test measures the victim (another organization's small upload and `/healthz`)
under the attack against the same measurement without it, the service's peak memory
growth, and that connections, slots and staged files are given back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e import Service, register_store
from tests.operations.hostile import (
    RSS_GROWTH_LIMIT,
    Victim,
    assert_unharmed,
    client_connections,
    eventually,
    figures,
    host_port,
    log_answers,
    peak_rss_growth,
    running,
    staged_fds,
)
from tests.operations.raw_client import Flood, MiB, flooding, hostile_request, status_of
from tests.support import BOUNDARY, Part, content_type, multipart_chunks
from vectorgate.db import create_engine, create_sessionmaker
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import Tenant
from vectorgate.uploads.slots import files_in_flight

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 2
MAX_CONNECTIONS = 400
SLOTS = 3
SERVICE_SETTINGS = {
    "header_timeout_s": str(HEADER_TIMEOUT_S),
    "body_idle_timeout_s": "2",
    "body_min_rate_bytes_s": "1000",
    "body_rate_grace_s": "2",
    "max_connections": str(MAX_CONNECTIONS),
    "max_concurrent_uploads_per_org": str(SLOTS),
}

# An answer "at once": generous for a shared machine, far below any read of the attack.
PROMPT_S = 1.0


@pytest.fixture(scope="module")
def victim_tenant(service: Service) -> Tenant:
    return service.new_tenant()


@pytest.fixture
def victim(service: Service, victim_tenant: Tenant, fake: FakeOpenAI) -> Iterator[Victim]:
    with httpx.Client(base_url=service.running.base_url, timeout=60) as client:
        yield Victim(client, victim_tenant, register_store(client, victim_tenant, fake))


def credentials_head(tenant: Tenant, *, with_key: bool, length: int | None) -> bytes:
    head = (
        f"POST /v1/organizations/{tenant.org_id}/credentials HTTP/1.1\r\n"
        "Host: vectorgate\r\nContent-Type: application/json\r\n"
    )
    if with_key:
        head += f"X-API-Key: {tenant.api_key}\r\n"
    head += "Transfer-Encoding: chunked\r\n" if length is None else f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode()


def org_error(reply: bytes, status: int, code: str) -> dict[str, object]:
    assert status_of(reply) == status, reply[:300]
    body: dict[str, object] = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert body["success"] is False
    assert body["error"]["code"] == code  # type: ignore[index]
    return body


@pytest.mark.parametrize(
    ("with_key", "status", "code"),
    [(False, 401, "UNAUTHORIZED"), (True, 413, "REQUEST_TOO_LARGE")],
    ids=["without-key", "with-key"],
)
def test_a_100_mib_json_flood_to_credentials_is_refused_before_it_is_read(
    service: Service, tenant: Tenant, victim: Victim, with_key: bool, status: int, code: str
) -> None:
    size = 100 * MiB
    flood = Flood(
        host_port(service),
        credentials_head(tenant, with_key=with_key, length=size),
        chunk=b"{}," * (MiB // 3),
        total=size - 1,
        prefix=b"[",
    )
    calm = victim.medians()
    with peak_rss_growth(service) as growth, flooding(flood) as exchanges:
        attacked = victim.medians()
    log_answers(exchanges)
    assert_unharmed(calm, attacked)
    assert growth[0] < RSS_GROWTH_LIMIT, growth
    assert exchanges
    for exchange in exchanges:
        org_error(exchange.reply, status, code)
        assert exchange.answered_after_s is not None
        assert exchange.answered_after_s < PROMPT_S
        assert exchange.sent < size  # answered while the body was still going out


def test_four_chunked_300_mib_bodies_at_once_are_cut_off_at_the_limit(
    service: Service, tenant: Tenant, victim: Victim
) -> None:
    # Each attacker keeps sending after the answer: the server drops what comes (it is
    # never buffered, see the memory bound) for a bounded time, then closes.
    flood = Flood(
        host_port(service),
        credentials_head(tenant, with_key=True, length=None),
        chunk=b"{}," * (MiB // 3),
        total=300 * MiB,
        prefix=b"[",
        chunked=True,
        stop_when_answered=False,
    )
    connections = client_connections(service)
    calm = victim.medians()
    with peak_rss_growth(service) as growth, flooding(flood, copies=4) as exchanges:
        attacked = victim.medians()
    log_answers(exchanges)
    assert_unharmed(calm, attacked)
    assert growth[0] < RSS_GROWTH_LIMIT, growth
    assert len(exchanges) >= 4
    for exchange in exchanges:
        org_error(exchange.reply, 413, "REQUEST_TOO_LARGE")
        assert exchange.answered_after_s is not None
        assert exchange.answered_after_s < PROMPT_S
    eventually(lambda: client_connections(service) <= connections, 10, "connections closed")


def test_a_64_mib_header_is_refused_within_milliseconds(service: Service, victim: Victim) -> None:
    flood = Flood(
        host_port(service),
        b"GET /healthz HTTP/1.1\r\nHost: vectorgate\r\nX-Junk: ",
        chunk=b"j" * MiB,
        total=64 * MiB,
    )
    connections = client_connections(service)
    calm = victim.medians()
    with peak_rss_growth(service) as growth, flooding(flood, copies=2) as exchanges:
        attacked = victim.medians()
    log_answers(exchanges)
    # Each refused connection is held a moment (REFUSAL_LINGER_S) so that its client can
    # read the 431: attackers reconnecting as fast as they can may fill the connection cap
    # with these, and are then refused at the door until some have closed. The door closes
    # at once (it must not hold fds for connections past the cap), so an attacker still
    # sending its header there may get a reset instead of the 503.
    eventually(lambda: client_connections(service) <= connections, 10, "connections closed")
    assert_unharmed(calm, attacked)
    assert growth[0] < RSS_GROWTH_LIMIT, growth
    answered = [exchange for exchange in exchanges if exchange.reply]
    resets = len(exchanges) - len(answered)
    figures.info("%d of %d attack connections reset at the door", resets, len(exchanges))
    assert 431 in [status_of(exchange.reply) for exchange in answered]
    for exchange in answered:
        if status_of(exchange.reply) == 503:
            org_error(exchange.reply, 503, "SERVICE_UNAVAILABLE")
        else:
            org_error(exchange.reply, 431, "REQUEST_TOO_LARGE")
        assert exchange.answered_after_s is not None
        assert exchange.answered_after_s < PROMPT_S
        assert exchange.sent < 16 * MiB


def test_300_slow_header_connections_are_closed_by_the_header_timeout(
    service: Service, victim: Victim
) -> None:
    connections = client_connections(service)
    calm = victim.medians()
    address = host_port(service)
    opened = time.monotonic()
    slow = [socket.create_connection(address, timeout=10) for _ in range(300)]
    replies: dict[int, bytes] = {}
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: vectorgate\r\nX-Slow: ")

        def drip(stop: threading.Event) -> None:  # a byte per connection every 0.25 s
            while not stop.wait(0.25):
                for index, sock in enumerate(slow):
                    if index not in replies:
                        try:
                            sock.send(b"s")
                        except OSError:
                            replies.setdefault(index, b"")

        with running(drip):
            attacked = victim.medians()
            for index, sock in enumerate(slow):
                sock.settimeout(max(0.1, opened + HEADER_TIMEOUT_S + 5 - time.monotonic()))
                reply = b""
                try:
                    while chunk := sock.recv(65536):
                        reply += chunk
                except ConnectionResetError:
                    pass
                replies[index] = reply
        closed_after = time.monotonic() - opened
    finally:
        for sock in slow:
            sock.close()
    figures.info("300 slow-header connections all closed %.2f s after they opened", closed_after)
    assert_unharmed(calm, attacked)
    assert closed_after < HEADER_TIMEOUT_S + 3, closed_after
    for reply in replies.values():
        org_error(reply, 408, "REQUEST_TIMEOUT")
    assert victim.client.get("/healthz").status_code == 200
    eventually(lambda: client_connections(service) <= connections, 10, "connections closed")


def test_connections_past_the_cap_get_a_fast_503_and_the_service_recovers(
    service: Service, victim: Victim
) -> None:
    connections = client_connections(service)
    assert victim.client.get("/healthz").status_code == 200  # a kept-alive connection
    address = host_port(service)
    idle = [socket.create_connection(address, timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        eventually(
            lambda: client_connections(service) >= MAX_CONNECTIONS, 10, "connections accepted"
        )
        started = time.monotonic()
        extra = hostile_request(address, b"GET /healthz HTTP/1.1\r\nHost: vectorgate\r\n\r\n")
        assert extra.answered_after_s is not None
        figures.info("connection past the cap answered after %.1f ms", extra.answered_after_s * 1e3)
        assert extra.answered_after_s < PROMPT_S
        body = org_error(extra.reply, 503, "SERVICE_UNAVAILABLE")
        assert str(MAX_CONNECTIONS) in str(body["message"])
        assert time.monotonic() - started < PROMPT_S
        # A client with a connection already open is still served.
        assert victim.client.get("/healthz").status_code == 200
        # The idle ones never sent a head: closed by the header timeout.
        eventually(
            lambda: client_connections(service) <= connections + 1,
            HEADER_TIMEOUT_S + 5,
            "idle connections closed",
        )
    finally:
        for sock in idle:
            sock.close()
    with httpx.Client(base_url=service.running.base_url, timeout=10) as fresh:
        assert fresh.get("/healthz").status_code == 200
    victim.sample()
    eventually(lambda: client_connections(service) <= connections + 1, 10, "connections closed")


def slots_in_use(service: Service, tenant: Tenant) -> int:
    """The organization's upload slots in use, as the database has them."""

    async def count() -> int:
        engine = create_engine(service.env["VECTORGATE_DATABASE_URL"])
        try:
            async with create_sessionmaker(engine)() as session:
                return await files_in_flight(session, tenant.org_id)
        finally:
            await engine.dispose()

    return asyncio.run(count())


def text_part(name: str, content: bytes = b"attacker\n") -> Part:
    return Part(name, content, "text/plain")


def upload_files(client: httpx.Client, tenant: Tenant, store: str, count: int) -> httpx.Response:
    files = [
        {"filename": f"f{i}.txt", "content": base64.b64encode(b"x\n").decode(),
         "mime_type": "text/plain"}
        for i in range(count)
    ]  # fmt: skip
    return client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={"files": files},
        headers=tenant.headers,
    )


def test_a_dripping_multipart_body_ends_in_408_and_gives_everything_back(
    service: Service,
    tenant: Tenant,
    client: httpx.Client,
    victim: Victim,
    fake: FakeOpenAI,
) -> None:
    store = register_store(client, tenant, fake)
    connections = client_connections(service)
    files_open = staged_fds(service)
    calm = victim.medians()
    # Two small files arrive whole (each takes an upload slot and goes upstream), then a
    # third starts and drips a byte every 0.2 s.
    whole = b"".join(multipart_chunks([text_part("a.txt"), text_part("b.txt")], BOUNDARY))
    whole = whole.removesuffix(f"--{BOUNDARY}--\r\n".encode())
    third = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="c.txt"\r\n'
    third += "Content-Type: text/plain\r\n\r\n"
    declared = len(whole) + len(third) + 100_000
    target = f"/api/v1/openai-assistants-vector-store/{store}?credential={tenant.credential_id}"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: vectorgate\r\nX-API-Key: {tenant.api_key}\r\n"
        f"Content-Type: {content_type()}\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield whole + third.encode()
        for _ in range(300):  # a minute at most
            time.sleep(0.2)
            yield b"d"

    with ThreadPoolExecutor(1) as pool:
        dripping = pool.submit(hostile_request, host_port(service), head, body(), timeout_s=60)
        eventually(lambda: len(fake.files_for(tenant.openai_key)) == 2, 10, "two files up")
        # Two of the organization's three slots are held by the dripping request.
        assert slots_in_use(service, tenant) == 2
        attacked = victim.medians()
        exchange = dripping.result(timeout=30)
    log_answers([exchange])
    assert_unharmed(calm, attacked)
    assert status_of(exchange.reply) == 408, exchange.reply[:300]
    reply = json.loads(exchange.reply.partition(b"\r\n\r\n")[2])
    assert reply["statusCode"] == 408
    assert reply["success"] is False
    assert "bytes/s" in reply["message"]
    assert exchange.answered_after_s is not None
    assert exchange.answered_after_s < 15
    # Everything given back: upstream files, slots, staged files and their fds, connection.
    eventually(lambda: fake.files_for(tenant.openai_key) == [], 10, "upstream files deleted")
    eventually(lambda: staged_fds(service) <= files_open, 10, "staged files closed")
    eventually(lambda: client_connections(service) <= connections, 10, "connection closed")
    assert slots_in_use(service, tenant) == 0
    response = upload_files(client, tenant, store, SLOTS)
    assert response.status_code == 200, response.text


def test_a_trailing_slash_is_an_unknown_route_and_nothing_redirects(
    service: Service, tenant: Tenant, client: httpx.Client
) -> None:
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/credentials/",
        content=b"[" + b"{}," * 100_000,
        headers={**tenant.headers, "Host": "evil.example"},
    )
    assert response.status_code == 404, response.text
    assert "location" not in response.headers
    assert response.json()["error"]["code"] == "NOT_FOUND"
    flowise = client.get(
        "/api/v1/openai-assistants-vector-store/vs_1/?credential=x",
        headers={"Host": "evil.example"},
    )
    assert flowise.status_code == 404, flowise.text
    assert "location" not in flowise.headers
    assert flowise.json() == {"statusCode": 404, "success": False, "message": "Not Found"}


def test_a_body_that_stops_coming_ends_in_408_in_the_family_body(
    service: Service, tenant: Tenant, client: httpx.Client, fake: FakeOpenAI
) -> None:
    store = register_store(client, tenant, fake)
    files_open = staged_fds(service)
    target = f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64"
    body = b'{"files": [{"filename": "a.txt", "mime_type": "text/plain", "content": "aGVs'
    head = (
        f"POST {target} HTTP/1.1\r\nHost: vectorgate\r\nX-API-Key: {tenant.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body) + 1000}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    exchange = hostile_request(host_port(service), head, iter([body]), timeout_s=20)
    log_answers([exchange])
    assert exchange.answered_after_s is not None
    assert 2 <= exchange.answered_after_s < 10  # VECTORGATE_BODY_IDLE_TIMEOUT_S is 2
    reply = org_error(exchange.reply, 408, "REQUEST_TIMEOUT")
    assert "No request body bytes arrived for 2 s" in str(reply["message"])
    assert time.monotonic() - started < 10
    eventually(lambda: staged_fds(service) <= files_open, 10, "staged files closed")
    assert fake.files_for(tenant.openai_key) == []
