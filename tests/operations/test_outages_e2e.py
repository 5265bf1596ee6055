"""Outages answered in the contract's shapes, end to end: the database going away (a
PostgreSQL server of the test's own, stopped and started again) and a disk below the
free-space floor."""

from __future__ import annotations

import base64
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e import DEFAULT_SETTINGS, register_store
from tests.operations.hostile import eventually
from tests.support import Part, content_type, multipart_body, staged_leftovers
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import free_port, new_tenant, serve, service_env

pytestmark = pytest.mark.e2e


def _postgres_bin() -> Path | None:
    if found := shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> int:
    return int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0


@dataclass
class OwnPostgres:
    """A PostgreSQL server of this test's own, in a temp dir, on a free port."""

    bin: Path
    data: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.data / "server.log")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log,
                  "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("initdb is not installed: no PostgreSQL server of the test's own")
    root = Path(tempfile.mkdtemp(prefix="vg-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as `postgres`
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root without a postgres user to run PostgreSQL as")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    server = OwnPostgres(bin_dir, root / "data", free_port(), as_user)
    try:
        server._run(str(bin_dir / "initdb"), "-D", str(server.data), "-A", "trust",
                    "-U", "postgres", "--no-sync")  # fmt: skip
        server.start()
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)


def _flowise_upload(
    client: httpx.Client, api_key: str, store: str, credential: str
) -> httpx.Response:
    return client.post(
        f"/api/v1/openai-assistants-vector-store/{store}?credential={credential}",
        content=multipart_body([Part("a.txt", b"hello\n", "text/plain")]),
        headers={"X-API-Key": api_key, "Content-Type": content_type()},
    )


def _base64_upload(client: httpx.Client, org: str, api_key: str, store: str) -> httpx.Response:
    file = {"filename": "a.txt", "content": base64.b64encode(b"hi\n").decode(),
            "mime_type": "text/plain"}  # fmt: skip
    return client.post(
        f"/v1/organizations/{org}/vector-stores/{store}/files/upload-base64",
        json={"files": [file]},
        headers={"X-API-Key": api_key},
    )


def test_a_database_outage_is_503_in_each_family_body_and_service_resumes(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reset()
    with own_postgres() as database:
        env = service_env(tmp_path, database.url, fake_openai.base_url, **DEFAULT_SETTINGS)
        with (
            serve(env, log_path=tmp_path / "service.log") as running,
            httpx.Client(base_url=running.base_url, timeout=30) as client,
        ):
            tenant = new_tenant(env)
            store = register_store(client, tenant, fake_openai)
            credentials = f"/v1/organizations/{tenant.org_id}/credentials"
            assert client.get(credentials, headers=tenant.headers).status_code == 200

            database.stop()
            started = time.monotonic()
            org = client.get(credentials, headers=tenant.headers)
            answered_in = time.monotonic() - started
            assert org.status_code == 503, org.text
            body = org.json()
            assert body["success"] is False
            assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
            assert body["error"]["details"] == {"request_id": org.headers["x-request-id"]}
            assert org.headers["retry-after"] == "5"
            assert answered_in < 10, answered_in
            flowise = _flowise_upload(client, tenant.api_key, store, tenant.credential_id)
            assert flowise.status_code == 503, flowise.text
            assert flowise.json()["statusCode"] == 503
            assert flowise.json()["success"] is False
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["reason"].startswith("database")
            assert "Traceback" not in org.text + flowise.text

            database.start()
            eventually(
                lambda: client.get(credentials, headers=tenant.headers).status_code == 200,
                20,
                "served again once the database is back",
            )
            assert client.get("/readyz").status_code == 200
        assert tenant.api_key not in running.log()
        assert staged_leftovers(tmp_path / "tmp") == []


def test_below_the_free_space_floor_readyz_is_503_and_uploads_are_507(
    database_url: str, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reset()
    env = service_env(
        tmp_path,
        database_url,
        fake_openai.base_url,
        **DEFAULT_SETTINGS,
        min_free_disk_bytes=str(2**62),  # more than any disk has
    )
    with (
        serve(env, log_path=tmp_path / "service.log", ready_path="/healthz") as running,
        httpx.Client(base_url=running.base_url, timeout=30) as client,
    ):
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "free space" in ready.json()["reason"]

        tenant = new_tenant(env)
        store = register_store(client, tenant, fake_openai)
        org = _base64_upload(client, tenant.org_id, tenant.api_key, store)
        assert org.status_code == 507, org.text
        assert org.json()["error"]["code"] == "INSUFFICIENT_STORAGE"
        flowise = _flowise_upload(client, tenant.api_key, store, tenant.credential_id)
        assert flowise.status_code == 507, flowise.text
        assert flowise.json() == {
            "statusCode": 507,
            "success": False,
            "message": flowise.json()["message"],
        }
        assert fake_openai.files_for(tenant.openai_key) == []
    assert staged_leftovers(tmp_path / "tmp") == []


def test_an_idempotency_key_whose_request_failed_with_the_database_down_frees_itself(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reset()
    with own_postgres() as database:
        settings = DEFAULT_SETTINGS | {"idempotency_lease_s": "2", "upstream_max_retries": "0"}
        env = service_env(tmp_path, database.url, fake_openai.base_url, **settings)
        with (
            serve(env, log_path=tmp_path / "service.log") as running,
            httpx.Client(base_url=running.base_url, timeout=30) as client,
        ):
            tenant = new_tenant(env)
            store = register_store(client, tenant, fake_openai)
            target = f"/api/v1/openai-assistants-vector-store/{store}"
            headers = {
                "X-API-Key": tenant.api_key,
                "Content-Type": content_type(),
                "Idempotency-Key": "failed-while-the-database-was-down",
            }
            body = multipart_body([Part("a.txt", b"hello\n", "text/plain")])

            def upload() -> httpx.Response:
                params = {"credential": tenant.credential_id}
                return client.post(target, params=params, content=body, headers=headers)

            # The batch is refused late; by then the database is gone, so the failed
            # request cannot give its key back.
            fake_openai.inject("POST", "/vector_stores/[^/]+/file_batches", delay=2, status=500)
            answers: list[httpx.Response] = []
            first = threading.Thread(target=lambda: answers.append(upload()))
            first.start()
            eventually(
                lambda: any(path.endswith("/file_batches") for _, path, _ in fake_openai.requests),
                20,
                "the request reached the batch",
            )
            database.stop()
            first.join(timeout=60)
            assert answers[0].status_code >= 500, answers[0].text
            database.start()
            # Once the key's lease has run out, the same key is taken over and served.
            eventually(lambda: upload().status_code == 200, 30, "the key freed itself")
            replay = upload()
            assert replay.status_code == 200
            assert replay.headers["Idempotent-Replayed"] == "true"
        assert tenant.api_key not in running.log()
