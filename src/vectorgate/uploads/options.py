"""File options a client may attach to an upload: `attributes` and `chunking_strategy`.

Both go to OpenAI with the file batch (SPEC 11.1), so they are checked here against
OpenAI's own rules first: a refusal from OpenAI would come after the files had been
uploaded, and a client's mistake should cost a 400 before anything leaves the service.

OpenAI's rules, as the `openai` SDK states them (`types/vector_stores/
file_batch_create_params.py`, `static_file_chunking_strategy_param.py`):

* `attributes`: "Set of 16 key-value pairs ... Keys are strings with a maximum length of
  64 characters. Values are strings with a maximum length of 512 characters, booleans,
  or numbers." The type is `Optional[Dict[str, Union[str, float, bool]]]`: `null` means
  no attributes.
* `chunking_strategy`: `{"type": "auto"}` or `{"type": "static", "static":
  {"max_chunk_size_tokens", "chunk_overlap_tokens"}}`, both `int` and required; "The
  minimum value is `100` and the maximum value is `4096`", and "the overlap must not
  exceed half of `max_chunk_size_tokens`".

Where the SDK leaves room, this module is strict (docs/DECISIONS.md, "Attributes and
chunking options"): keys need at least one character; lengths count Unicode code points;
a string must be encodable as UTF-8 (no lone surrogates); numbers are finite and a bool
is never a number; token counts are JSON integers (`800.0` is refused, as OpenAI refuses
non-integers); no key beyond those listed; JSON text with NaN/Infinity or a key given
twice is refused.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from vectorgate.errors import bad_request

__all__ = [
    "ATTRIBUTES",
    "CHUNKING_STRATEGY",
    "MAX_ATTRIBUTE_KEYS",
    "MAX_ATTRIBUTE_KEY_CHARS",
    "MAX_ATTRIBUTE_VALUE_CHARS",
    "MAX_CHUNK_SIZE_TOKENS",
    "MIN_CHUNK_SIZE_TOKENS",
    "OPTION_NAMES",
    "AttributeValue",
    "parse_option_text",
    "validate_attributes",
    "validate_chunking_strategy",
]

ATTRIBUTES = "attributes"
CHUNKING_STRATEGY = "chunking_strategy"
OPTION_NAMES = (ATTRIBUTES, CHUNKING_STRATEGY)

MAX_ATTRIBUTE_KEYS = 16
MAX_ATTRIBUTE_KEY_CHARS = 64
MAX_ATTRIBUTE_VALUE_CHARS = 512
MIN_CHUNK_SIZE_TOKENS = 100
MAX_CHUNK_SIZE_TOKENS = 4096

AttributeValue = str | int | float | bool


def _refuse(where: str, problem: str) -> NoReturn:
    raise bad_request(f"Invalid '{where}': {problem}", field=where)


def _kind(value: object) -> str:
    """A JSON name for a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        return False
    return True


def _finite_number(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond the range of a double
        return False


def validate_attributes(value: object, where: str) -> dict[str, AttributeValue] | None:
    """A copy of `value` if it is a valid `attributes` object; None for None; else 400."""
    if value is None:
        return None
    if not isinstance(value, dict):
        _refuse(where, f"expected an object, got {_kind(value)}.")
    if len(value) > MAX_ATTRIBUTE_KEYS:
        _refuse(where, f"at most {MAX_ATTRIBUTE_KEYS} keys are allowed, got {len(value)}.")
    result: dict[str, AttributeValue] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            _refuse(where, "keys must be strings.")
        if not 1 <= len(key) <= MAX_ATTRIBUTE_KEY_CHARS or not _utf8(key):
            _refuse(
                where,
                f"keys must be 1 to {MAX_ATTRIBUTE_KEY_CHARS} characters of valid text, "
                f"got one of {len(key)}.",
            )
        result[key] = _attribute_value(item, f"{where}.{key}" if _utf8(key) else where)
    return result


def _attribute_value(item: object, where: str) -> AttributeValue:
    if isinstance(item, bool):
        return item
    if isinstance(item, int | float):
        if not _finite_number(item):
            _refuse(where, "numbers must be finite.")
        return item
    if isinstance(item, str):
        if len(item) > MAX_ATTRIBUTE_VALUE_CHARS:
            _refuse(
                where,
                f"strings may have at most {MAX_ATTRIBUTE_VALUE_CHARS} characters, "
                f"got {len(item)}.",
            )
        if not _utf8(item):
            _refuse(where, "the string is not valid text (a lone surrogate).")
        return item
    _refuse(where, f"values must be strings, numbers or booleans, got {_kind(item)}.")


def _exact_keys(value: dict[Any, Any], keys: set[str], where: str) -> None:
    extra = sorted(str(k) for k in value if k not in keys)
    if extra:
        _refuse(where, f"unknown key(s) {', '.join(map(repr, extra))}.")
    missing = sorted(keys - set(value))
    if missing:
        _refuse(where, f"missing key(s) {', '.join(map(repr, missing))}.")


def _token_count(value: object, where: str) -> int:
    # JSON integers only: a bool is not a count, and 800.0 is refused as OpenAI refuses it.
    if isinstance(value, bool) or not isinstance(value, int):
        _refuse(where, f"expected an integer, got {_kind(value)}.")
    return value


def validate_chunking_strategy(value: object, where: str) -> dict[str, object] | None:
    """A normalized copy of a valid `chunking_strategy`; None for None; else 400."""
    if value is None:
        return None
    if not isinstance(value, dict):
        _refuse(where, f"expected an object, got {_kind(value)}.")
    kind = value.get("type")
    if kind == "auto":
        _exact_keys(value, {"type"}, where)
        return {"type": "auto"}
    if kind != "static":
        _refuse(where, "'type' must be 'auto' or 'static'.")
    _exact_keys(value, {"type", "static"}, where)
    static = value["static"]
    static_where = f"{where}.static"
    if not isinstance(static, dict):
        _refuse(static_where, f"expected an object, got {_kind(static)}.")
    _exact_keys(static, {"max_chunk_size_tokens", "chunk_overlap_tokens"}, static_where)
    size = _token_count(static["max_chunk_size_tokens"], f"{static_where}.max_chunk_size_tokens")
    if not MIN_CHUNK_SIZE_TOKENS <= size <= MAX_CHUNK_SIZE_TOKENS:
        _refuse(
            f"{static_where}.max_chunk_size_tokens",
            f"must be between {MIN_CHUNK_SIZE_TOKENS} and {MAX_CHUNK_SIZE_TOKENS}, got {size}.",
        )
    overlap = _token_count(static["chunk_overlap_tokens"], f"{static_where}.chunk_overlap_tokens")
    if not 0 <= overlap <= size // 2:
        _refuse(
            f"{static_where}.chunk_overlap_tokens",
            f"must be between 0 and half of max_chunk_size_tokens ({size // 2}), got {overlap}.",
        )
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap},
    }


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} is given twice")
        result[key] = item
    return result


def parse_option_text(name: str, text: bytes, where: str) -> object:
    """Parse a multipart text part's value as strict JSON and validate it as option `name`.

    `null` is None (no option). The caller bounds the size of `text`.
    """
    validators = {ATTRIBUTES: validate_attributes, CHUNKING_STRATEGY: validate_chunking_strategy}
    validate = validators.get(name)
    if validate is None:
        raise ValueError(f"not a file option: {name!r}")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        _refuse(where, "the value is not UTF-8 text.")
    try:
        value = json.loads(decoded, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        _refuse(where, f"the value is not valid JSON ({exc}).")
    return validate(value, where)


def validate_option(name: str, value: object, where: str) -> object:
    """Validate `value` as option `name` (one of OPTION_NAMES)."""
    if name == ATTRIBUTES:
        return validate_attributes(value, where)
    return validate_chunking_strategy(value, where)


# The two options as keys of the base64 route's JSON body (OpenAPI).
OPTIONS_SCHEMA: dict[str, Any] = {
    ATTRIBUTES: {
        "type": "object",
        "description": "Up to 16 keys of 1-64 characters; strings (<= 512), numbers, booleans",
        "maxProperties": MAX_ATTRIBUTE_KEYS,
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
    CHUNKING_STRATEGY: {
        "type": "object",
        "description": '{"type": "auto"} or {"type": "static", "static": '
        '{"max_chunk_size_tokens": 100-4096, "chunk_overlap_tokens": <= half}}',
    },
}

# The two options as text parts of the multipart route (OpenAPI): JSON text, which a form
# (the /docs page's, a browser's) sends as typed; an empty part is no option. The
# examples change nothing, so a form that sends them as they are uploads as without.
OPTION_PARTS_SCHEMA: dict[str, Any] = {
    ATTRIBUTES: {
        "type": "string",
        "description": f"JSON text: {OPTIONS_SCHEMA[ATTRIBUTES]['description']}",
        "example": "{}",
    },
    CHUNKING_STRATEGY: {
        "type": "string",
        "description": f"JSON text: {OPTIONS_SCHEMA[CHUNKING_STRATEGY]['description']}",
        "example": '{"type": "auto"}',
    },
}
