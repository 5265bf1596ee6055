"""The streaming content hash (SPEC 11.2) equals hashlib's, however the pieces come."""

from __future__ import annotations

import hashlib
import os

from hypothesis import given
from hypothesis import strategies as st

from vectorgate.uploads.staging import ContentHash

STEP = ContentHash.HASH_STEP


@given(st.lists(st.integers(min_value=0, max_value=3 * STEP), max_size=12))
def test_the_hash_of_pieces_is_the_hash_of_the_whole(sizes: list[int]) -> None:
    data = os.urandom(sum(sizes))
    streamed = ContentHash()
    offset = 0
    for size in sizes:
        piece = memoryview(data)[offset : offset + size]
        streamed.update(piece if size % 2 else bytes(piece))
        offset += size
    assert streamed.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_large_file_is_hashed_in_steps_off_the_caller_and_in_order() -> None:
    pieces = [os.urandom(64 * 1024) for _ in range(200)]  # 12.5 MiB
    streamed = ContentHash()
    for piece in pieces:
        streamed.update(piece)
    assert streamed._running is not None  # a step was handed to the hashing thread
    assert streamed.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_a_small_file_never_leaves_the_caller() -> None:
    streamed = ContentHash()
    streamed.update(b"x" * (STEP - 1))
    assert streamed._running is None
    assert streamed.hexdigest() == hashlib.sha256(b"x" * (STEP - 1)).hexdigest()
