"""Loaded at start-up by the second `vectorgate serve` of `bench/run.py --only S1|S2`
(its PYTHONPATH names this directory): the intake parsers then hash nothing, so the two
services side by side show what hashing uploads (SPEC 11.2) costs. Never used otherwise.
"""

from __future__ import annotations

from vectorgate.uploads import staging


class _NoHash:
    def update(self, data: object) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * 64


staging.content_hash = _NoHash  # type: ignore[assignment]
