"""Peak server memory for one large upload (default 10 x 50 MiB PDFs) on either route.

Starts the fake OpenAI and `vectorgate serve` (one worker, SQLite) on 127.0.0.1,
streams the body from disk (the client holds none of it in memory: multipart parts or
base64 encoded on the fly), and reports the server's peak RSS (VmHWM) growth over its
idle peak.

    .venv/bin/python bench/upload_memory.py [--route multipart|base64] [--files 10] [--mib 50]
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from vectorgate.testing import samples
from vectorgate.testing.fake_openai import FakeOpenAI
from vectorgate.testing.service import new_tenant, register_store, serve, service_env

MiB = 1024 * 1024
BOUNDARY = "benchboundary9f8e7d"


def multipart_body(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{path.name}"\r\nContent-Type: application/pdf\r\n\r\n'
        ).encode()
        with path.open("rb") as f:
            while chunk := f.read(MiB):
                yield chunk
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def base64_body(paths: list[Path]) -> Iterator[bytes]:
    yield b'{"files": ['
    for i, path in enumerate(paths):
        yield b"," if i else b""
        yield f'{{"filename": "{path.name}", "mime_type": "application/pdf", "content": "'.encode()
        with path.open("rb") as f:
            while chunk := f.read(3 * MiB):  # a multiple of 3 bytes: no padding mid-string
                yield base64.b64encode(chunk)
        yield b'"}'
    yield b"]}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--route", choices=["multipart", "base64"], default="multipart")
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--mib", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as fake:
        root = Path(tmp)
        paths = []
        for i in range(args.files):
            path = root / f"doc{i}.pdf"
            samples.write_pdf(path, args.mib * MiB)
            paths.append(path)
        data_dir = root / "service"
        env = service_env(data_dir, f"sqlite+aiosqlite:///{data_dir}/vg.db", fake.base_url)
        data_dir.mkdir()
        with serve(env, log_path=root / "service.log") as service:
            tenant = new_tenant(env, "bench")
            org, key, cred = tenant.org_id, tenant.api_key, tenant.credential_id
            store = fake.create_vector_store(tenant.openai_key)
            register_store(env, tenant, store)
            if args.route == "multipart":
                url = f"/api/v1/openai-assistants-vector-store/{store}?credential={cred}"
                content, ctype = multipart_body(paths), f"multipart/form-data; boundary={BOUNDARY}"
            else:
                url = f"/v1/organizations/{org}/vector-stores/{store}/files/upload-base64"
                content, ctype = base64_body(paths), "application/json"
            with httpx.Client(base_url=service.base_url, timeout=600) as client:
                client.get("/healthz")
                idle_peak = service.peak_rss_bytes()
                started = time.monotonic()
                response = client.post(
                    url, content=content, headers={"X-API-Key": key, "Content-Type": ctype}
                )
                elapsed = time.monotonic() - started
            peak = service.peak_rss_bytes()
            assert response.status_code == 200, response.text[:500]
            files = response.json() if args.route == "multipart" else response.json()["files"]
            assert len(files) == args.files
        total = args.files * args.mib
        print(f"route: {args.route}")
        print(f"upload: {args.files} x {args.mib} MiB = {total} MiB in {elapsed:.1f}s")
        print(f"server peak RSS: idle {idle_peak / MiB:.1f} MiB, after {peak / MiB:.1f} MiB")
        print(f"server peak RSS growth: {(peak - idle_peak) / MiB:.1f} MiB")


if __name__ == "__main__":
    main()
