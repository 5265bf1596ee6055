"""Baseline servers the benchmark compares vectorgate with, served by the same uvicorn.

- `naive`: what a user would write for the base64 route: a pydantic model with
  `content: str`, each file decoded with `base64.b64decode`, nothing else.
- `drain`: the least any Python ASGI service must do with a body: read it, drop it.

    python -m uvicorn bench.apps:naive --port 9200
    python -m uvicorn bench.apps:drain --port 9201
"""

from __future__ import annotations

import base64

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send


class File(BaseModel):
    filename: str
    content: str
    mime_type: str


class Upload(BaseModel):
    files: list[File]


naive = FastAPI()


@naive.post("/upload")
async def naive_upload(body: Upload) -> dict[str, int]:
    sizes = [len(base64.b64decode(file.content)) for file in body.files]
    return {"files": len(sizes), "bytes": sum(sizes)}


async def drain(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    received = 0
    more = True
    while more:
        message = await receive()
        received += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(received).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
