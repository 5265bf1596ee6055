"""An upload token's `max_files` across processes: `vectorgate serve --workers 2` on
PostgreSQL, 20 single-file uploads at once with one `max_files=5` token.

The count lives on the token's row and each request reserves against it in the
database, so exactly five requests win whichever worker serves them, and the fifteen
others leave nothing upstream.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e import DEFAULT_SETTINGS
from tests.support import Part, content_type, multipart_body
from vectorgate.migrate import upgrade_to_head
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import (
    RunningService,
    new_tenant,
    register_store,
    serve,
    service_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

MAX_FILES = 5
REQUESTS = 20


@pytest.fixture(scope="module")
def workers(
    postgres_url: str, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningService, dict[str, str]]]:
    upgrade_to_head(postgres_url)
    data_dir = tmp_path_factory.mktemp("token-workers")
    # Room for every request at once: only the token may refuse them.
    settings = DEFAULT_SETTINGS | {"max_concurrent_uploads_per_org": str(REQUESTS * 2)}
    env = service_env(data_dir, postgres_url, fake_openai.base_url, **settings)
    with serve(env, workers=2, log_path=data_dir / "service.log") as running:
        yield running, env


def test_max_files_holds_across_workers(
    workers: tuple[RunningService, dict[str, str]], fake: FakeOpenAI
) -> None:
    running, env = workers
    tenant = new_tenant(env, "token-count")
    store = fake.create_vector_store(tenant.openai_key)
    register_store(env, tenant, store)
    org_url = f"{running.base_url}/v1/organizations/{tenant.org_id}"
    minted = httpx.post(
        f"{org_url}/upload-tokens",
        json={"vector_store_id": store, "max_files": MAX_FILES},
        headers=tenant.headers,
        timeout=30,
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()
    auth = {"Authorization": f"Bearer {token['token']}"}
    # Slow uploads keep the winners in flight while the others ask.
    fake.inject("POST", "/files", delay=0.5, times=-1)
    answers: list[httpx.Response] = []
    start = threading.Barrier(REQUESTS)

    def send(i: int) -> None:
        name = f"{i}.txt"
        content = f"text of {name}\n".encode()
        with httpx.Client(timeout=60) as client:
            start.wait()
            if i % 2:
                response = client.post(
                    f"{org_url}/vector-stores/{store}/files/upload-base64",
                    json={
                        "files": [
                            {
                                "filename": name,
                                "content": base64.b64encode(content).decode(),
                                "mime_type": "text/plain",
                            }
                        ]
                    },
                    headers=auth,
                )
            else:
                response = client.post(
                    f"{running.base_url}/api/v1/openai-assistants-vector-store/{store}",
                    params={"credential": token["credential_id"]},
                    content=multipart_body([Part(name, content, "text/plain")]),
                    headers={"Content-Type": content_type(), **auth},
                )
            answers.append(response)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * MAX_FILES + [403] * (REQUESTS - MAX_FILES), [
        r.text for r in answers if r.status_code != 200
    ]
    for refused in (r for r in answers if r.status_code == 403):
        body = refused.json()
        if "statusCode" in body:  # the Flowise route's body
            assert "at most 5 files" in body["message"]
        else:
            assert body["error"]["code"] == "TOKEN_EXHAUSTED"
    kept = sorted(f.id for f in fake.files_for(tenant.openai_key))
    assert len(kept) == MAX_FILES
    assert sorted(fake.vector_store_files(store)) == kept
    # No orphans: nothing was uploaded and deleted again either.
    assert len(fake.files_for(tenant.openai_key, include_deleted=True)) == MAX_FILES
    # Two worker processes served the uploads: their access log lines name both.
    serving = {
        line["worker"]
        for line in access_lines(running.log())
        if line["route"].endswith(("/files/upload-base64", "/openai-assistants-vector-store/{id}"))
    }
    assert len(serving) == 2, serving
    assert token["token"] not in running.log()


def access_lines(log: str) -> list[dict[str, Any]]:
    """The service's access log lines (one JSON object each) in `log`."""
    lines = []
    for text in log.splitlines():
        _, _, tail = text.partition("{")
        if tail and '"request_id"' in text:
            lines.append(json.loads("{" + tail))
    return lines
