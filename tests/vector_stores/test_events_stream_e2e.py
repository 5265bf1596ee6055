"""The live status stream (SPEC 10.4) end to end: the real service against the fake OpenAI.

Files are held `in_progress` upstream (the fake's "stuck" batches) while a stream is
open, then let go; the stream is read as a client reads it, line by line over HTTP.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e import Service, Tenant, assert_error, register_store
from vectorgate.testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

MAX_STREAMS = 3
SERVICE_SETTINGS = {
    # Long enough that held files are never timed out by the poller during a test.
    "batch_timeout_s": "60",
    "event_stream_interval_s": "0.1",
    "event_stream_keep_alive_s": "0.5",
    "max_event_streams_per_org": str(MAX_STREAMS),
}
STATUS_KEYS = {
    "id",
    "file_id",
    "filename",
    "processing_status",
    "error_message",
    "attributes",
    "sha256",
    "created_at",
    "updated_at",
}


@dataclass
class Stream:
    """What a client saw of one stream: its events in order, and its comment lines."""

    response: httpx.Response
    events: list[tuple[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    _lines: Iterator[str] | None = None

    def next_event(self) -> tuple[str, Any]:
        """Read up to the next event (comments are kept aside)."""
        if self._lines is None:
            self._lines = self.response.iter_lines()
        name, data = "message", ""
        for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and data:
                self.events.append((name, json.loads(data)))
                return self.events[-1]
        raise EOFError("the stream ended")

    def until(self, name: str) -> list[tuple[str, Any]]:
        while not self.events or self.events[-1][0] != name:
            self.next_event()
        return self.events

    def statuses(self, file_id: str) -> list[str]:
        return [
            data["processing_status"]
            for name, data in self.events
            if name == "file.status" and data["id"] == file_id
        ]

    def ended(self) -> bool:
        try:
            self.next_event()
        except EOFError:
            return True
        return False


def events_url(tenant: Tenant, store: str) -> str:
    return f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/events"


@contextmanager
def open_stream(
    client: httpx.Client, url: str, params: dict[str, str], headers: dict[str, str]
) -> Iterator[Stream]:
    with client.stream("GET", url, params=params, headers=headers) as response:
        yield Stream(response)


def entry(name: str, content: bytes) -> dict[str, str]:
    return {
        "filename": name,
        "content": base64.b64encode(content).decode(),
        "mime_type": "text/plain",
    }


def upload(
    client: httpx.Client, tenant: Tenant, store: str, names: list[str], auth: dict[str, str]
) -> list[dict[str, Any]]:
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/upload-base64",
        json={"files": [entry(name, f"{name}\n".encode()) for name in names]},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    files: list[dict[str, Any]] = response.json()["files"]
    return files


def mint(client: httpx.Client, tenant: Tenant, store: str) -> str:
    response = client.post(
        f"/v1/organizations/{tenant.org_id}/upload-tokens",
        json={"vector_store_id": store},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def status_of(client: httpx.Client, tenant: Tenant, store: str, file_id: str) -> Any:
    response = client.get(
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{file_id}/status",
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def store(client: httpx.Client, fake: FakeOpenAI, tenant: Tenant) -> str:
    return register_store(client, tenant, fake)


def test_a_stream_sends_each_status_its_changes_then_done_and_ends(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, store: str
) -> None:
    fake.batch_mode = "stuck"  # held in_progress until let go below
    fake.fail_files_named("b.txt", message="Cannot parse this one.")
    a, b = upload(client, tenant, store, ["a.txt", "b.txt"], tenant.headers)
    url = events_url(tenant, store)

    with open_stream(client, url, {"ids": f"{a['id']},{b['id']}"}, tenant.headers) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-cache"
        assert stream.response.headers["x-accel-buffering"] == "no"
        first = [stream.next_event(), stream.next_event()]
        # One event per file first, in the order asked, with the status route's object.
        assert [name for name, _ in first] == ["file.status", "file.status"]
        assert [data["id"] for _, data in first] == [a["id"], b["id"]]
        assert all(set(data) == STATUS_KEYS for _, data in first)
        assert {data["processing_status"] for _, data in first} <= {"pending", "processing"}
        # The poller sees them in progress; then OpenAI finishes them.
        deadline = time.monotonic() + 10
        while "processing" not in stream.statuses(b["id"]) and time.monotonic() < deadline:
            stream.next_event()
        fake.batch_mode = "complete"
        stream.until("done")
        assert stream.events[-1] == ("done", {})
        assert stream.ended()

    for record, final in ((a, "completed"), (b, "failed")):
        seen = stream.statuses(record["id"])
        assert seen[-1] == final
        assert "processing" in seen
        assert all(x != y for x, y in zip(seen, seen[1:], strict=False)), seen  # changes only
        last = [d for n, d in stream.events if n == "file.status" and d["id"] == record["id"]]
        assert last[-1] == status_of(client, tenant, store, record["id"])
    assert "Cannot parse this one." in last[-1]["error_message"]


def test_a_final_file_is_one_event_then_done_and_duplicates_count_once(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, store: str
) -> None:
    [record] = upload(client, tenant, store, ["once.txt"], tenant.headers)
    deadline = time.monotonic() + 10
    while status_of(client, tenant, store, record["id"])["processing_status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The same file three times: twice by our id, once by OpenAI's.
    ids = f"{record['id']},{record['id']},{record['file_id']}"

    with open_stream(client, events_url(tenant, store), {"ids": ids}, tenant.headers) as stream:
        stream.until("done")
        assert stream.ended()

    assert [name for name, _ in stream.events] == ["file.status", "done"]
    assert stream.events[0][1] == status_of(client, tenant, store, record["id"])


def test_a_browser_token_in_access_token_streams_its_own_files_only(
    client: httpx.Client, service: Service, tenant: Tenant, fake: FakeOpenAI, store: str
) -> None:
    token, other_token = mint(client, tenant, store), mint(client, tenant, store)
    [mine] = upload(client, tenant, store, ["mine.txt"], {"Authorization": f"Bearer {token}"})
    [theirs] = upload(
        client, tenant, store, ["theirs.txt"], {"Authorization": f"Bearer {other_token}"}
    )
    [keys] = upload(client, tenant, store, ["keys.txt"], tenant.headers)
    url = events_url(tenant, store)

    # No header at all, as an EventSource sends it.
    with open_stream(client, url, {"ids": mine["id"], "access_token": token}, {}) as stream:
        assert stream.response.status_code == 200
        stream.until("done")
    assert stream.statuses(mine["id"])[-1] == "completed"

    # Another token's file, or a key's, is as unknown to a token as one that is not there.
    for other in (theirs, keys):
        for ids in (other["id"], f"{mine['id']},{other['id']}"):
            refused = client.get(url, params={"ids": ids, "access_token": token})
            body = assert_error(refused, 404, "NOT_FOUND")
            assert body["error"]["details"] == {"file_id": other["id"]}
    # A token's stream works with the header too.
    with open_stream(
        client, url, {"ids": mine["id"]}, {"Authorization": f"Bearer {token}"}
    ) as stream:
        stream.until("done")

    # An API key in access_token: 401 however valid the key (it is never looked up).
    refused = client.get(url, params={"ids": mine["id"], "access_token": tenant.api_key})
    assert_error(refused, 401, "UNAUTHORIZED")
    # An unknown or revoked token: 401.
    unknown = f"vgu_{secrets.token_urlsafe(32)}"
    assert_error(
        client.get(url, params={"ids": mine["id"], "access_token": unknown}), 401, "UNAUTHORIZED"
    )
    # Two credentials at once: 400 (RFC 6750: one method per request).
    both = client.get(
        url, params={"ids": mine["id"], "access_token": token}, headers=tenant.headers
    )
    assert_error(both, 400, "INVALID_REQUEST")
    # Every other route ignores access_token: without a header it is a 401.
    status_url = (
        f"/v1/organizations/{tenant.org_id}/vector-stores/{store}/files/{mine['id']}/status"
    )
    assert_error(client.get(status_url, params={"access_token": token}), 401, "UNAUTHORIZED")

    # The query string never reaches the log (the access line has the path only).
    log = service.running.log()
    assert token not in log
    assert tenant.api_key not in log
    assert "access_token" not in log
    assert url in log  # the stream's requests were logged, without their query


def test_ids_are_checked_before_the_stream_starts(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, store: str
) -> None:
    [record] = upload(client, tenant, store, ["checked.txt"], tenant.headers)
    url = events_url(tenant, store)

    def get(ids: str | None) -> httpx.Response:
        return client.get(url, params={} if ids is None else {"ids": ids}, headers=tenant.headers)

    for missing in (None, ""):
        assert_error(get(missing), 400, "INVALID_REQUEST")
    for malformed in ("a b", f"{record['id']},", "x" * 129, "vsf_\u202egnp", "vsf_a,,vsf_b"):
        assert_error(get(malformed), 400, "INVALID_REQUEST")
    many = [f"vsf_{secrets.token_hex(12)}" for _ in range(101)]
    body = assert_error(get(",".join(many)), 400, "INVALID_REQUEST")
    assert "100" in body["message"]
    # 100 distinct, and a 101st that repeats one: counted once, so on to the lookup.
    unknown = many[:100]
    body = assert_error(get(",".join([*unknown, unknown[0]])), 404, "NOT_FOUND")
    assert body["error"]["details"] == {"file_id": unknown[0]}
    # One unknown among known ones: 404 naming it, as the status route would.
    stranger = f"file-{secrets.token_hex(12)}"
    body = assert_error(get(f"{record['id']},{stranger}"), 404, "NOT_FOUND")
    assert body["error"]["details"] == {"file_id": stranger}
    # An unregistered store: 404 as everywhere.
    other = (
        f"/v1/organizations/{tenant.org_id}/vector-stores/vs_{secrets.token_hex(8)}/files/events"
    )
    assert_error(
        client.get(other, params={"ids": record["id"]}, headers=tenant.headers), 404, "NOT_FOUND"
    )


def test_a_quiet_stream_sends_keep_alive_comments(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, store: str
) -> None:
    fake.batch_mode = "stuck"
    [record] = upload(client, tenant, store, ["quiet.txt"], tenant.headers)
    url = events_url(tenant, store)

    with open_stream(client, url, {"ids": record["id"]}, tenant.headers) as stream:
        lines = stream.response.iter_lines()
        started = time.monotonic()
        comments = []
        for line in lines:
            if line.startswith(":"):
                comments.append((line, time.monotonic() - started))
                if len(comments) == 2:
                    break
    # SERVICE_SETTINGS: at most 0.5 s of silence (SPEC's bound is 15 s, the default).
    assert [line for line, _ in comments] == [": keep-alive", ": keep-alive"]
    assert comments[-1][1] < 5


def test_an_organization_has_a_few_streams_at_once_and_a_closed_one_frees_its_slot(
    client: httpx.Client, service: Service, tenant: Tenant, fake: FakeOpenAI, store: str
) -> None:
    fake.batch_mode = "stuck"
    [record] = upload(client, tenant, store, ["held.txt"], tenant.headers)
    url = events_url(tenant, store)
    params = {"ids": record["id"]}
    other = service.new_tenant()  # another organization's streams are its own
    other_store = register_store(client, other, fake)
    [other_record] = upload(client, other, other_store, ["other.txt"], other.headers)

    with httpx.Client(base_url=service.running.base_url, timeout=30) as streams:
        opened = []
        for _ in range(MAX_STREAMS):
            stream = Stream(
                streams.send(
                    streams.build_request("GET", url, params=params, headers=tenant.headers),
                    stream=True,
                )
            )
            assert stream.response.status_code == 200
            stream.next_event()
            opened.append(stream)

        refused = client.get(url, params=params, headers=tenant.headers)
        assert_error(refused, 429, "RATE_LIMITED")
        assert refused.headers["retry-after"] == "5"
        with open_stream(
            client, events_url(other, other_store), {"ids": other_record["id"]}, other.headers
        ) as elsewhere:
            assert elsewhere.response.status_code == 200

        # A client goes away mid-stream: its slot is back within moments.
        opened.pop().response.close()
        deadline = time.monotonic() + 5
        while True:
            with open_stream(client, url, params, tenant.headers) as again:
                if again.response.status_code == 200:
                    again.next_event()
                    break
                again.response.read()
                assert again.response.status_code == 429
            assert time.monotonic() < deadline, "the closed stream's slot was not freed"
            time.sleep(0.1)
        for stream in opened:
            stream.response.close()

    fake.batch_mode = "complete"
    with open_stream(client, url, params, tenant.headers) as stream:  # all slots free again
        assert stream.response.status_code == 200
        stream.until("done")


def test_a_stream_ends_with_timeout_when_its_token_expires(
    client: httpx.Client, tenant: Tenant, fake: FakeOpenAI, store: str
) -> None:
    """A stream never outlives its caller: a token's ends when the token expires, with
    `timeout` (and the ids not final) instead of `done`. The other bound, the batch
    deadline plus a grace, is `stream_end`'s (tests/vector_stores/test_events_stream.py):
    here the poller would fail the file at its deadline before the stream's end."""
    fake.batch_mode = "stuck"
    minted = client.post(
        f"/v1/organizations/{tenant.org_id}/upload-tokens",
        json={"vector_store_id": store, "expires_in_s": 2},
        headers=tenant.headers,
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    [record] = upload(client, tenant, store, ["late.txt"], {"Authorization": f"Bearer {token}"})

    started = time.monotonic()
    with open_stream(
        client, events_url(tenant, store), {"ids": record["id"], "access_token": token}, {}
    ) as stream:
        stream.until("timeout")
        assert stream.ended()
    elapsed = time.monotonic() - started

    assert stream.events[-1] == ("timeout", {"pending": [record["id"]]})
    assert "done" not in [name for name, _ in stream.events]
    assert elapsed < 5
