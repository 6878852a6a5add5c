"""Parse and validate one raw event: a typed raw model, or a rejection that says why not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jiter
import orjson
from pydantic import ValidationError

from schemas.enums import RejectCode, RejectStep
from schemas.raw import RAW_EVENT, RawModel

# A payment event is a few hundred bytes; a line this long is a broken producer, and parsing
# it would only cost memory.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
_MAX_REASONS = 3

# Which rule a pydantic error broke, by (field, error type) where the field decides the code,
# then by error type alone.
_FIELD_CODES: dict[tuple[str, str], RejectCode] = {
    ("currency", "literal_error"): RejectCode.WRONG_CURRENCY,
    ("cpr", "string_pattern_mismatch"): RejectCode.INVALID_CPR,
    ("amount_fils", "greater_than"): RejectCode.NON_POSITIVE_AMOUNT,
    ("amount_fils", "less_than_equal"): RejectCode.INVALID_AMOUNT,
    ("ts", "greater_than_equal"): RejectCode.INVALID_TIMESTAMP,
    ("ts", "less_than"): RejectCode.INVALID_TIMESTAMP,
    ("paid_at", "datetime_parsing"): RejectCode.INVALID_TIMESTAMP,
    ("paid_at", "datetime_from_date_parsing"): RejectCode.INVALID_TIMESTAMP,
    ("paid_at", "timezone_aware"): RejectCode.INVALID_TIMESTAMP,
}
_TYPE_CODES: dict[str, RejectCode] = {
    "missing": RejectCode.MISSING_FIELD,
    "union_tag_invalid": RejectCode.UNKNOWN_CHANNEL,
    "union_tag_not_found": RejectCode.UNKNOWN_CHANNEL,
    "int_from_float": RejectCode.WRONG_TYPE,
}
_OWN_CODES = {code.value: code for code in RejectCode}
_VALIDATE_JSON = RAW_EVENT.validator.validate_json
_FROM_JSON = jiter.from_json
# A repeated key is named in the reason up to this many characters (never with its value).
_KEY_SHOWN = 64


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused: one code from `RejectCode` and a sentence for a person."""

    code: RejectCode
    reason: str
    step: RejectStep
    channel: str | None = None
    event_id: str | None = None


def _code_of(error: Any) -> RejectCode:
    error_type: str = error["type"]
    field = str(error["loc"][-1]) if error["loc"] else ""
    own = _OWN_CODES.get(error_type)
    if own is not None:
        return own
    mapped = _FIELD_CODES.get((field, error_type)) or _TYPE_CODES.get(error_type)
    if mapped is not None:
        return mapped
    if error_type.endswith("_type"):
        return RejectCode.WRONG_TYPE
    return RejectCode.INVALID_VALUE


def _unparseable(payload: bytes) -> Rejection:
    """Tell invalid UTF-8, excessive nesting and other malformed JSON apart."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as err:
        return Rejection(
            RejectCode.INVALID_UTF8, f"not UTF-8 at byte {err.start}", RejectStep.PARSE
        )
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        if "depth" in str(err) or "recursion" in str(err):
            return Rejection(
                RejectCode.TOO_DEEPLY_NESTED, "JSON nested too deeply", RejectStep.PARSE
            )
        return Rejection(RejectCode.MALFORMED_JSON, f"malformed JSON: {err}", RejectStep.PARSE)
    # orjson took it, pydantic's parser did not: its nesting limit is the lower one.
    return Rejection(RejectCode.TOO_DEEPLY_NESTED, "JSON nested too deeply", RejectStep.PARSE)


def _describe(errors: list[Any]) -> str:
    parts = []
    for error in errors[:_MAX_REASONS]:
        # The first element of loc is the union branch (the channel); the rest is the field.
        loc = ".".join(str(p) for p in error["loc"][1:]) or "event"
        parts.append(f"{loc}: {error['msg']}")
    more = len(errors) - _MAX_REASONS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _rejection_from(err: ValidationError, payload: bytes) -> Rejection:
    errors = err.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return _unparseable(payload)
    if first["type"] in ("model_attributes_type", "dict_type") and not first["loc"]:
        return Rejection(
            RejectCode.NOT_AN_OBJECT, "an event must be a JSON object", RejectStep.PARSE
        )
    channel = first["loc"][0] if first["loc"] else None
    return Rejection(
        _code_of(first),
        _describe(errors),
        RejectStep.VALIDATE,
        channel=str(channel) if channel is not None else None,
    )


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_repeats(pairs: list[tuple[str, Any]]) -> None:
    """object_pairs_hook of the reference check: raise at the first object repeating a key."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen.add(key)


def _repeated_key_reason(key: str) -> str:
    shown = key[:_KEY_SHOWN] + ("…" if len(key) > _KEY_SHOWN else "")
    # Quoted as JSON so control characters and quotes stay visible; a lone surrogate (which
    # no UTF-8 writer takes) is spelled out instead.
    quoted = json.dumps(shown, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
    return f"an object repeats the key {quoted}: parsers disagree on which value wins"


def _duplicate_key(payload: bytes) -> Rejection | None:
    """A rejection if any object of `payload` (JSON that pydantic read) repeats a key.

    jiter is the parser family pydantic-core validates with, so it reads the same documents,
    and it compares keys after unescaping, at any depth: the cheap exact check for every
    accepted event. Only when it objects (or, against expectation, fails to read the event)
    does the slower reference parser run, to name the key.
    """
    try:
        _FROM_JSON(payload, catch_duplicate_keys=True, cache_mode="keys")
    except Exception as err:  # ValueError is jiter's only error, but nothing may escape here
        complaint = str(err)
    else:
        return None
    try:
        json.loads(payload, object_pairs_hook=_refuse_repeats)
    except _RepeatedKey as repeated:
        return Rejection(
            RejectCode.DUPLICATE_KEY, _repeated_key_reason(repeated.key), RejectStep.PARSE
        )
    except Exception:  # e.g. RecursionError, MemoryError: the check cannot be completed
        if complaint.startswith("Detected duplicate key"):
            return Rejection(RejectCode.DUPLICATE_KEY, "an object repeats a key", RejectStep.PARSE)
        return Rejection(
            RejectCode.MALFORMED_JSON,
            "JSON that could not be checked for repeated keys",
            RejectStep.PARSE,
        )
    if complaint.startswith("Detected duplicate key"):  # the two parsers disagree: refuse it
        return Rejection(RejectCode.DUPLICATE_KEY, "an object repeats a key", RejectStep.PARSE)
    return None  # jiter could not read it, the reference parser found no repeated key


def parse_event(payload: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> RawModel | Rejection:
    """A validated raw event of any channel, or the reason it cannot be one."""
    if len(payload) > max_bytes:
        return Rejection(
            RejectCode.LINE_TOO_LONG,
            f"event of {len(payload)} bytes exceeds the limit of {max_bytes}",
            RejectStep.PARSE,
        )
    try:
        # The core validator itself: TypeAdapter.validate_json only adds a Python call layer.
        event: RawModel = _VALIDATE_JSON(payload)
    except ValidationError as err:
        return _rejection_from(err, payload)
    # pydantic keeps the last of a repeated key; a consumer keeping the first would book
    # another amount. Checked only for events that are otherwise accepted: that is the cost.
    return _duplicate_key(payload) or event
