"""Loaded at start-up by both services of `bench/run.py --only S1|S2` (their PYTHONPATH
names this directory), so that they start alike; in the one started with
`BENCH_NO_HASHING=1` the intake parsers then hash nothing, and the difference between
the two shows what hashing uploads (SPEC 11.2) costs. Never used otherwise.
"""

from __future__ import annotations

import os

from vectorgate.uploads import staging


class _NoHash:
    def update(self, data: object) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * 64


if os.environ.get("BENCH_NO_HASHING") == "1":
    staging.content_hash = _NoHash  # type: ignore[assignment,misc]
