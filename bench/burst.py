"""A burst of single-file uploads to one vector store under OpenAI's write limit.

    .venv/bin/python -m bench.burst [--uploads 600] [--limit 60] [--concurrency 50]

Starts the fake OpenAI limiting writes to a vector store to `--limit` per minute (a file
batch is one write; each batch call takes 0.2 s, as OpenAI's take a while) and
`vectorgate serve` (one worker, SQLite), then sends `--uploads` base64 requests of one
small text file each, `--concurrency` at a time, honouring a 429's `Retry-After` from
vectorgate's own limits. Prints the answers by status (-429: 429s honoured and retried),
the total time, and the time the limit itself would impose on one batch call per request
(uploads / limit minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.run import bench_setup, fake_openai
from vectorgate.testing.service import serve, service_env


async def burst(url: str, api_key: str, uploads: int, concurrency: int) -> collections.Counter[int]:
    statuses: collections.Counter[int] = collections.Counter()
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600) as client:

        async def one(i: int) -> None:
            body = {
                "files": [
                    {"filename": f"{i}.txt", "content": "aGVsbG8K", "mime_type": "text/plain"}
                ]
            }
            async with gate:
                while True:
                    response = await client.post(url, json=body, headers={"X-API-Key": api_key})
                    if response.status_code != 429:
                        statuses[response.status_code] += 1
                        return
                    statuses[-429] += 1  # a 429 honoured (retried): not an answer
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))

        await asyncio.gather(*(one(i) for i in range(uploads)))
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--uploads", type=int, default=600)
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vg-burst-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        (root / "spool").mkdir()
        fake = stack.enter_context(
            fake_openai(
                root / "spool",
                "--attach-limit-per-store-per-minute",
                str(args.limit),
                "--batch-delay",
                "0.2",
            )  # fmt: skip
        )
        data_dir = root / "service"
        data_dir.mkdir()
        env = service_env(data_dir, f"sqlite+aiosqlite:///{data_dir}/vg.db", fake.url) | {
            "VECTORGATE_MAX_CONCURRENT_UPLOADS_PER_ORG": "100"
        }
        service = stack.enter_context(serve(env, log_path=root / "service.log"))
        setup = bench_setup(env, service, fake.url)
        url = (
            f"{setup.service_url}/v1/organizations/{setup.org}/vector-stores/{setup.store}"
            "/files/upload-base64"
        )
        started = time.perf_counter()
        statuses = asyncio.run(burst(url, setup.api_key, args.uploads, args.concurrency))
        took = time.perf_counter() - started
        imposed = args.uploads / args.limit * 60
        print(
            f"{args.uploads} uploads, {args.concurrency} at a time, limit {args.limit} writes/min"
        )
        print(f"answers: {dict(sorted(statuses.items()))}")
        print(f"total {took:.1f} s; one batch call per request would take at least {imposed:.0f} s")


if __name__ == "__main__":
    main()
