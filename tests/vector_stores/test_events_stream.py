"""The status stream's own rules, without a service: its ids and its end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vectorgate.db import utcnow
from vectorgate.errors import AppError
from vectorgate.vector_stores.events_stream import MAX_IDS, parse_ids, stream_end
from vectorgate.vector_stores.stream_slots import StreamSlots


def test_ids_keep_their_order_and_count_once() -> None:
    assert parse_ids("vsf_b,file-a,vsf_b") == ["vsf_b", "file-a"]
    assert parse_ids(",".join(["vsf_x"] * 500)) == ["vsf_x"]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ",",
        "vsf_a,",
        "vsf_a, vsf_b",
        "vsf_\x00",
        "x" * 129,
        ",".join(f"vsf_{i}" for i in range(MAX_IDS + 1)),
    ],
)
def test_malformed_empty_or_too_many_ids_are_400(raw: str) -> None:
    with pytest.raises(AppError) as refused:
        parse_ids(raw)
    assert refused.value.status == 400


def test_a_stream_ends_after_the_batch_deadline_plus_the_grace() -> None:
    assert stream_end(100.0, 600, 60, None) == 760.0


def test_a_stream_ends_when_its_caller_expires_if_that_is_sooner() -> None:
    soon = utcnow() + timedelta(seconds=30)
    assert 129 < stream_end(100.0, 600, 60, soon) <= 130
    late = utcnow() + timedelta(hours=2)
    assert stream_end(100.0, 600, 60, late) == 760.0


def test_stream_slots_are_per_organization_and_given_back_once() -> None:
    slots = StreamSlots()
    first = [slots.take("org_a", 2), slots.take("org_a", 2)]
    with pytest.raises(AppError) as full:
        slots.take("org_a", 2)
    assert full.value.status == 429
    assert full.value.headers["Retry-After"] == "5"
    other = slots.take("org_b", 2)
    first[0].release()
    first[0].release()  # twice: counted once
    again = slots.take("org_a", 2)
    for slot in (first[1], again, other):
        slot.release()
    assert slots.counts == {}
