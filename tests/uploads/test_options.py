"""The `attributes` and `chunking_strategy` validators, by example and against an oracle.

The oracle functions below restate OpenAI's rules (openai SDK, `file_batch_create_params`
and `static_file_chunking_strategy_param`, plus the strict choices in docs/DECISIONS.md)
in plain Python, written without looking at the module's structure; the property tests
check that both agree on accept/refuse for arbitrary JSON-like values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.options import (
    ATTRIBUTES,
    CHUNKING_STRATEGY,
    OPTION_NAMES,
    parse_option_text,
    validate_attributes,
    validate_chunking_strategy,
)


def rejected(call: Callable[[], object], where: str = "attributes") -> AppError:
    with pytest.raises(AppError) as info:
        call()
    error = info.value
    assert (error.status, error.code) == (400, ErrorCode.INVALID_REQUEST), error.message
    assert where in error.message
    assert str(error.details["field"]).startswith(where)
    return error


def attrs(n: int) -> dict[str, object]:
    return {f"k{i}": i for i in range(n)}


def static(size: object, overlap: object) -> dict[str, object]:
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


def test_constants() -> None:
    assert (ATTRIBUTES, CHUNKING_STRATEGY) == ("attributes", "chunking_strategy")
    assert OPTION_NAMES == (ATTRIBUTES, CHUNKING_STRATEGY)


# --- attributes ---------------------------------------------------------------------------


def test_none_is_no_attributes_and_empty_object_is_kept() -> None:
    assert validate_attributes(None, "attributes") is None
    assert validate_attributes({}, "attributes") == {}


def test_sixteen_keys_pass_seventeen_do_not() -> None:
    assert validate_attributes(attrs(16), "attributes") == attrs(16)
    error = rejected(lambda: validate_attributes(attrs(17), "files[2].attributes"), "files[2]")
    assert "16" in error.message
    assert "17" in error.message


@pytest.mark.parametrize("key", ["k" * 64, "é" * 64, "😀" * 64, "日本" * 32, "a"])
def test_keys_of_1_to_64_characters_pass(key: str) -> None:
    assert validate_attributes({key: "v"}, "attributes") == {key: "v"}


@pytest.mark.parametrize("key", ["", "k" * 65, "é" * 65, "😀" * 65])
def test_empty_and_65_character_keys_are_refused(key: str) -> None:
    rejected(lambda: validate_attributes({key: "v"}, "attributes"))


def test_a_non_string_key_is_refused() -> None:
    rejected(lambda: validate_attributes({1: "v"}, "attributes"))


@pytest.mark.parametrize("value", ["", "x" * 512, "é" * 512, "😀" * 512])
def test_strings_up_to_512_characters_pass(value: str) -> None:
    assert validate_attributes({"k": value}, "attributes") == {"k": value}


@pytest.mark.parametrize("value", ["x" * 513, "😀" * 513])
def test_513_character_strings_are_refused(value: str) -> None:
    error = rejected(lambda: validate_attributes({"k": value}, "attributes"))
    assert "513" in error.message


@pytest.mark.parametrize("value", [True, False, 0, -1, 2**53, 1.5, -0.0, 1e308, 10**300])
def test_booleans_and_finite_numbers_pass_with_their_types(value: object) -> None:
    result = validate_attributes({"k": value}, "attributes")
    assert result == {"k": value}
    assert result is not None
    assert type(result["k"]) is type(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_numbers_are_refused(value: object) -> None:
    rejected(lambda: validate_attributes({"k": value}, "attributes"))


@pytest.mark.parametrize("value", [None, {}, {"a": 1}, [], ["a"], (1,), b"x", object()])
def test_null_nested_and_other_values_are_refused(value: object) -> None:
    rejected(lambda: validate_attributes({"k": value}, "attributes"))


@pytest.mark.parametrize("value", ["a", 1, 1.5, True, [], [{"a": 1}]])
def test_attributes_must_be_an_object(value: object) -> None:
    rejected(lambda: validate_attributes(value, "attributes"))


def test_lone_surrogates_are_refused_in_keys_and_values() -> None:
    rejected(lambda: validate_attributes({"\ud800": "v"}, "attributes"))
    rejected(lambda: validate_attributes({"k": "a\udfffb"}, "attributes"))


def test_the_result_is_a_copy() -> None:
    given_value: dict[str, object] = {"k": "v"}
    result = validate_attributes(given_value, "attributes")
    assert result == given_value
    assert result is not given_value


# --- chunking_strategy --------------------------------------------------------------------


def test_none_and_auto() -> None:
    assert validate_chunking_strategy(None, "chunking_strategy") is None
    assert validate_chunking_strategy({"type": "auto"}, "chunking_strategy") == {"type": "auto"}


@pytest.mark.parametrize(
    ("size", "overlap"),
    [(100, 0), (100, 50), (4096, 2048), (800, 400), (101, 50), (4095, 2047), (1000, 0)],
)
def test_static_within_bounds_is_normalized(size: int, overlap: int) -> None:
    given_value = static(size, overlap)
    result = validate_chunking_strategy(given_value, "chunking_strategy")
    assert result == given_value
    assert result is not given_value


@pytest.mark.parametrize(
    ("size", "overlap", "field"),
    [
        (99, 0, "max_chunk_size_tokens"),
        (4097, 0, "max_chunk_size_tokens"),
        (0, 0, "max_chunk_size_tokens"),
        (-100, 0, "max_chunk_size_tokens"),
        (100, 51, "chunk_overlap_tokens"),
        (101, 51, "chunk_overlap_tokens"),  # half of 101 rounds down to 50
        (4095, 2048, "chunk_overlap_tokens"),
        (4096, 2049, "chunk_overlap_tokens"),
        (800, -1, "chunk_overlap_tokens"),
    ],
)
def test_static_out_of_bounds_is_refused(size: int, overlap: int, field: str) -> None:
    error = rejected(
        lambda: validate_chunking_strategy(static(size, overlap), "chunking_strategy"),
        "chunking_strategy",
    )
    assert error.details["field"] == f"chunking_strategy.static.{field}"


@pytest.mark.parametrize(
    ("size", "overlap"),
    [(800.0, 400), (800, 400.0), (True, 0), (800, False), ("800", 400), (800, None), (None, 0)],
)
def test_token_counts_must_be_integers(size: object, overlap: object) -> None:
    rejected(
        lambda: validate_chunking_strategy(static(size, overlap), "chunking_strategy"),
        "chunking_strategy",
    )


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"type": "AUTO"},
        {"type": "other"},
        {"type": None},
        {"type": "auto", "static": {}},
        {"type": "auto", "extra": 1},
        {"type": "static"},
        {"type": "static", "static": None},
        {"type": "static", "static": [800, 400]},
        {"type": "static", "static": {"max_chunk_size_tokens": 800}},
        {"type": "static", "static": {"chunk_overlap_tokens": 400}},
        {**static(800, 400), "extra": 1},
        {
            "type": "static",
            "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400, "x": 1},
        },
        "auto",
        ["auto"],
        1,
        True,
    ],
)
def test_malformed_strategies_are_refused(value: object) -> None:
    rejected(lambda: validate_chunking_strategy(value, "files[0].chunking_strategy"), "files[0]")


# --- parse_option_text --------------------------------------------------------------------


def test_parse_option_text_parses_and_validates() -> None:
    assert parse_option_text(ATTRIBUTES, b'{"a": "b", "n": 1.5}', "attributes") == {
        "a": "b",
        "n": 1.5,
    }
    assert parse_option_text(ATTRIBUTES, '{"é": "日本"}'.encode(), "attributes") == {"é": "日本"}
    assert parse_option_text(CHUNKING_STRATEGY, b' {"type":"auto"} ', "chunking_strategy") == {
        "type": "auto"
    }
    assert parse_option_text(ATTRIBUTES, b"null", "attributes") is None
    assert parse_option_text(CHUNKING_STRATEGY, b"null", "chunking_strategy") is None


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{",
        b"{'a': 1}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": 1, "a": 2}',
        b'{"a": "\xff"}',
        b"\xef\xbb\xbf{}",
        b'{"a": "\\ud800"}',
        b'"text"',
        b"[" * 100_000,
    ],
)
def test_parse_option_text_refuses_bad_text(text: bytes) -> None:
    rejected(lambda: parse_option_text(ATTRIBUTES, text, "attributes"))


def test_parse_option_text_uses_the_chunking_rules() -> None:
    rejected(
        lambda: parse_option_text(CHUNKING_STRATEGY, json.dumps(static(99, 0)).encode(), "cs"),
        "cs",
    )
    rejected(lambda: parse_option_text(CHUNKING_STRATEGY, b'{"a": 1}', "cs"), "cs")


def test_parse_option_text_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="not a file option"):
        parse_option_text("metadata", b"{}", "metadata")


# --- property tests against an independent oracle -----------------------------------------


def oracle_accepts_attributes(value: object) -> bool:
    """OpenAI: an object of at most 16 keys of at most 64 characters (we add: at least
    one); values strings of at most 512 characters, numbers or booleans."""

    def text_ok(s: str) -> bool:
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in s)

    def value_ok(v: object) -> bool:
        if type(v) is bool:
            return True
        if type(v) is int:
            return abs(v) <= 1.7976931348623157e308
        if type(v) is float:
            return v == v and v not in (float("inf"), float("-inf"))
        if type(v) is str:
            return len(v) <= 512 and text_ok(v)
        return False

    if value is None:
        return True
    if type(value) is not dict or len(value) > 16:
        return False
    return all(
        type(k) is str and 0 < len(k) < 65 and text_ok(k) and value_ok(v) for k, v in value.items()
    )


def oracle_accepts_chunking(value: object) -> bool:
    """OpenAI: {"type": "auto"}, or static with integer max 100..4096 and overlap from 0
    to half of max; nothing else, no other key."""
    if value is None or (type(value) is dict and value == {"type": "auto"}):
        return True
    if type(value) is not dict or set(value) != {"type", "static"} or value["type"] != "static":
        return False
    inner = value["static"]
    if type(inner) is not dict or set(inner) != {"max_chunk_size_tokens", "chunk_overlap_tokens"}:
        return False
    size, overlap = inner["max_chunk_size_tokens"], inner["chunk_overlap_tokens"]
    if type(size) is not int or type(overlap) is not int:
        return False
    return 100 <= size <= 4096 and 0 <= overlap and 2 * overlap <= size


def accepts(validate: Callable[[object, str], object], value: object) -> bool:
    try:
        validate(value, "where")
    except AppError as error:
        refusal = error
    else:
        return True
    assert (refusal.status, refusal.code) == (400, ErrorCode.INVALID_REQUEST)
    assert "where" in refusal.message
    return False


edge_ints = st.sampled_from(
    [0, 1, -1, 49, 50, 51, 99, 100, 101, 400, 800, 2047, 2048, 2049, 4095, 4096, 4097, 10**400]
)
numbers = st.one_of(
    edge_ints,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([800.0, 100.0, -0.0, 1.5]),
)
edge_text = st.one_of(
    st.text(max_size=3),
    st.integers(0, 3).map(lambda n: "😀" * (64 + n - 1)),
    st.integers(0, 3).map(lambda n: "x" * (511 + n)),
    st.sampled_from(["", "\ud800", "auto", "static", "type"]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, edge_text)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(edge_text, inner, max_size=3)
    ),
    max_leaves=8,
)


def rarely(draw: st.DrawFn) -> bool:
    """True about one time in eight: one flaw per candidate finds boundary bugs best."""
    return draw(st.integers(0, 7)) == 0


good_keys = st.one_of(
    st.integers(0, 99).map(lambda i: f"key{i}"),
    st.integers(1, 64).map(lambda n: "k" * n),
    st.sampled_from(["日" * 64, "😀" * 64, "é"]),
)
edge_keys = st.one_of(
    st.integers(63, 66).map(lambda n: "k" * n),
    st.integers(63, 66).map(lambda n: "日" * n),
    st.sampled_from(["", "\udc00"]),
)
good_values = st.one_of(
    st.booleans(),
    edge_ints,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(509, 512).map(lambda n: "x" * n),
    st.integers(509, 512).map(lambda n: "😀" * n),
    st.text(max_size=5).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
)


@st.composite
def attribute_candidates(draw: st.DrawFn) -> object:
    """Mostly valid objects near the limits, each with at most a flaw or two."""
    count = draw(st.sampled_from([0, 1, 2, 15, 16, 16, 16, 17]))
    keys = draw(st.lists(good_keys, min_size=count, max_size=count, unique=True))
    value: dict[object, object] = {key: draw(good_values) for key in keys}
    if value and rarely(draw):
        value[draw(st.sampled_from(keys))] = draw(st.one_of(scalars, json_like))
    if value and rarely(draw):
        del value[draw(st.sampled_from(keys))]
        value[draw(edge_keys)] = draw(good_values)
    if rarely(draw):
        value[draw(st.sampled_from([1, 1.5, None, True]))] = "v"
    return value


# Each example takes well under a millisecond: many examples make boundary hits certain
# also under the fixed replay of the CI profile.
many = settings(max_examples=1000)


@many
@given(attribute_candidates())
def test_attributes_agree_with_the_oracle(value: object) -> None:
    assert accepts(validate_attributes, value) == oracle_accepts_attributes(value)


@given(json_like)
def test_attributes_of_any_json_agree_with_the_oracle(value: object) -> None:
    assert accepts(validate_attributes, value) == oracle_accepts_attributes(value)


@st.composite
def chunking_candidates(draw: st.DrawFn) -> object:
    shape = draw(st.sampled_from(["auto", "static", "static", "static", "any"]))
    if shape == "any":
        return draw(json_like)
    kind = draw(st.sampled_from(["auto", "x", None])) if rarely(draw) else shape
    value: dict[str, object] = {"type": kind}
    if shape == "static":
        inner: dict[str, object] = {}
        size = draw(scalars) if rarely(draw) else draw(st.one_of(edge_ints, st.integers()))
        if not rarely(draw):
            inner["max_chunk_size_tokens"] = size
        if not rarely(draw):
            near_half = edge_ints
            if type(size) is int:
                near_half = st.sampled_from([0, False, size // 2 - 1, size // 2, size // 2 + 1])
            inner["chunk_overlap_tokens"] = draw(scalars) if rarely(draw) else draw(near_half)
        if rarely(draw):
            inner["extra"] = 1
        value["static"] = None if rarely(draw) else inner
    if rarely(draw):
        value["extra"] = draw(scalars)
    return value


@many
@given(chunking_candidates())
def test_chunking_strategies_agree_with_the_oracle(value: object) -> None:
    accepted = accepts(validate_chunking_strategy, value)
    assert accepted == oracle_accepts_chunking(value)
    if accepted and value is not None:
        assert validate_chunking_strategy(value, "where") == value


def refuse_constant(name: str) -> object:
    raise ValueError(name)


@given(st.one_of(attribute_candidates(), json_like))
def test_parse_option_text_agrees_for_every_json_text(value: object) -> None:
    try:
        text = json.dumps(value, allow_nan=True).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return  # not representable as UTF-8 JSON text: nothing for a client to send
    try:
        reparsed = json.loads(text, parse_constant=refuse_constant)
    except ValueError:
        expected = False  # NaN or Infinity: not JSON
    else:
        expected = oracle_accepts_attributes(reparsed)
    assert accepts(lambda v, w: parse_option_text(ATTRIBUTES, text, w), value) == expected
