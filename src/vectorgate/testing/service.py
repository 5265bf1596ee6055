"""Run the real service (`vectorgate serve`) and the real CLI as subprocesses.

Used by the end-to-end tests and the benchmark: the service under test is exactly what
an operator runs, talking over real HTTP to whatever OpenAI base URL it is given.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(
    data_dir: Path, database_url: str, openai_base_url: str, **settings: str
) -> dict[str, str]:
    """A clean environment for the service: only what is given, plus PATH and the like."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VECTORGATE_")}
    env.pop("OPENAI_BASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    env.update(
        VECTORGATE_DATA_DIR=str(data_dir),
        VECTORGATE_DATABASE_URL=database_url,
        VECTORGATE_OPENAI_BASE_URL=openai_base_url,
    )
    env.update({f"VECTORGATE_{key.upper()}": value for key, value in settings.items()})
    return env


_cli_lock = threading.Lock()


def run_cli(env: Mapping[str, str], *args: str, stdin: str | None = None) -> dict[str, Any]:
    """Run `vectorgate ARGS --json` with `env` as its environment; its JSON object.

    In this process (the command's `main`, with the environment, stdin and stdout it
    would have had): a new interpreter costs most of a second per command, and tests
    make hundreds. One command at a time, as those are the process's. `vectorgate serve`
    always runs as a process of its own."""
    from vectorgate.cli import main

    out = io.StringIO()
    with _cli_lock:
        saved_environ, saved_stdin = dict(os.environ), sys.stdin
        os.environ.clear()
        os.environ.update(env)
        sys.stdin = io.StringIO(stdin or "")
        try:
            with contextlib.redirect_stdout(out):
                code = main([*args, "--json"])
        finally:
            os.environ.clear()
            os.environ.update(saved_environ)
            sys.stdin = saved_stdin
    if code != 0:
        raise RuntimeError(f"vectorgate {' '.join(args)} failed: {out.getvalue()}")
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def run_cli_process(env: Mapping[str, str], *args: str, stdin: str | None = None) -> dict[str, Any]:
    """`run_cli`, but in a new interpreter, exactly as an operator's shell runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "vectorgate", *args, "--json"],
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"vectorgate {' '.join(args)} failed: {done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@dataclass
class Tenant:
    """An organization with an API key and a credential holding (fake) `openai_key`."""

    org_id: str
    api_key: str
    credential_id: str
    openai_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


def new_tenant(env: Mapping[str, str], name: str = "tenant") -> Tenant:
    """Make a tenant with the CLI, as an operator would."""
    org = run_cli(env, "orgs", "create", name)["id"]
    key = run_cli(env, "api-keys", "create", "--org", org)["key"]
    openai_key = f"sk-test-{uuid.uuid4().hex}"
    credential = run_cli(
        env, "credentials", "create", "--org", org, "--name", "main", stdin=openai_key
    )["id"]
    return Tenant(org, key, credential, openai_key)


def register_store(env: Mapping[str, str], tenant: Tenant, vector_store_id: str) -> None:
    """Register an existing upstream vector store for the tenant with the CLI."""
    run_cli(
        env, "vector-stores", "register", "--org", tenant.org_id,
        "--credential", tenant.credential_id, "--id", vector_store_id,
    )  # fmt: skip


@dataclass
class RunningService:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set size so far (VmHWM), Linux only."""
        return _proc_status_kib(self.pid, "VmHWM") * 1024

    def rss_bytes(self) -> int:
        return _proc_status_kib(self.pid, "VmRSS") * 1024


def _proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


@contextmanager
def serve(
    env: Mapping[str, str], *, workers: int = 1, log_path: Path, ready_path: str = "/readyz"
) -> Iterator[RunningService]:
    """Start `vectorgate serve` on a free port; stop it (SIGTERM, then SIGKILL) on exit.

    It counts as started when `ready_path` answers 200 (`/healthz` for a service that
    is meant not to be ready)."""
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vectorgate",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = RunningService(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_until_ready(service, ready_path)
        yield service
    finally:
        stop(service)


def stop(service: RunningService, sig: int = signal.SIGTERM) -> None:
    if service.process.poll() is None:
        os.killpg(service.process.pid, sig)
        try:
            service.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(timeout=15)


def _wait_until_ready(service: RunningService, ready_path: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"vectorgate serve exited early:\n{service.log()}")
        try:
            with urllib.request.urlopen(f"{service.base_url}{ready_path}", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"vectorgate serve was not ready within {timeout_s}s:\n{service.log()}")
