"""transforms.core.validate.parse_event: an object that repeats a key is rejected as
DUPLICATE_KEY."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from schemas.enums import RejectCode
from schemas.raw import KioskEvent, MobileAppEvent, PortalEvent
from tests.samples import KIOSK_EVENT, MOBILE_EVENT, PORTAL_EVENT
from transforms.core import validate
from transforms.core.validate import Rejection, parse_event


def _extended(extra: bytes, base: bytes = PORTAL_EVENT) -> bytes:
    """The event with `extra` (raw JSON text) appended to its top-level object."""
    return base[:-1] + b", " + extra + b"}"


def _duplicate(payload: bytes) -> Rejection:
    outcome = parse_event(payload)
    assert isinstance(outcome, Rejection), f"accepted: {outcome!r}"
    assert outcome.code is RejectCode.DUPLICATE_KEY, outcome
    assert outcome.step == "parse"
    return outcome


def test_repeated_top_level_key_is_duplicate_key() -> None:
    rejection = _duplicate(_extended(b'"amount_fils": 99999'))
    assert '"amount_fils"' in rejection.reason


def test_reason_names_the_key_but_not_its_values() -> None:
    reason = _duplicate(_extended(b'"amount_fils": 99999')).reason
    assert "99999" not in reason
    assert "12500" not in reason


def test_repeated_key_in_a_nested_object_is_duplicate_key() -> None:
    payload = PORTAL_EVENT.replace(b'"entity": "GDT"', b'"entity": "GDT", "code": "OTHER"')
    assert '"code"' in _duplicate(payload).reason


def test_repeated_key_in_an_array_element_is_duplicate_key() -> None:
    rejection = _duplicate(_extended(b'"lines": [{"n": 1}, {"n": 2, "fee": 1, "n": 3}]'))
    assert '"n"' in rejection.reason


def test_repeated_key_in_an_unknown_extra_field_is_duplicate_key() -> None:
    rejection = _duplicate(_extended(b'"added_later": {"note": "a", "note": "b"}'))
    assert '"note"' in rejection.reason


def test_repeated_key_with_an_escaped_spelling_is_duplicate_key() -> None:
    rejection = _duplicate(_extended(b'"amount\\u005ffils": 99999'))
    assert '"amount_fils"' in rejection.reason


def test_repeated_non_ascii_key_spelled_raw_and_escaped_is_duplicate_key() -> None:
    rejection = _duplicate(_extended('"موقع": 1, "\\u0645\\u0648\\u0642\\u0639": 2'.encode()))
    assert '"موقع"' in rejection.reason


def test_repeated_key_with_whitespace_before_the_colon_is_duplicate_key() -> None:
    _duplicate(_extended(b'"amount_fils" \n\t :99999'))


def test_repeated_key_deep_in_nesting_is_duplicate_key() -> None:
    depth = 150
    nested = b'{"a": ' * depth + b'{"z": 1, "z": 2}' + b"}" * depth
    _duplicate(_extended(b'"deep": ' + nested))


@pytest.mark.parametrize(
    ("base", "extra"),
    [
        (MOBILE_EVENT, b'"ts": 1498846503124'),
        (KIOSK_EVENT, b'"card": "4111111111111111"'),
    ],
    ids=["mobile_app", "kiosk"],
)
def test_repeated_key_is_duplicate_key_in_every_channel(base: bytes, extra: bytes) -> None:
    _duplicate(_extended(extra, base))


def test_repeated_key_among_many_keys_is_duplicate_key() -> None:
    many = ", ".join(f'"field_{i}": {i}' for i in range(40))
    assert isinstance(parse_event(_extended(f'"wide": {{{many}}}'.encode())), PortalEvent)
    rejection = _duplicate(_extended(f'"wide": {{{many}, "field_7": 0}}'.encode()))
    assert '"field_7"' in rejection.reason


def test_long_repeated_key_is_truncated_in_the_reason() -> None:
    key = "k" * 5000
    reason = _duplicate(_extended(f'"{key}": 1, "{key}": 2'.encode())).reason
    assert "k" * 64 in reason
    assert "k" * 65 not in reason
    assert len(reason) < 200


def test_same_key_in_two_different_objects_is_accepted() -> None:
    payload = _extended(b'"a": {"code": 1, "id": 2}, "b": [{"code": 3}, {"code": 4, "id": 5}]')
    assert isinstance(parse_event(payload), PortalEvent)


def test_quote_and_colon_inside_a_string_value_is_accepted() -> None:
    payload = _extended(b'"note": "\\"amount_fils\\": 99999, \\"channel\\":"')
    assert isinstance(parse_event(payload), PortalEvent)


def test_key_text_repeated_as_a_value_is_accepted() -> None:
    assert isinstance(parse_event(_extended(b'"note": "amount_fils"')), PortalEvent)


@pytest.mark.parametrize(
    ("payload", "model"),
    [(PORTAL_EVENT, PortalEvent), (MOBILE_EVENT, MobileAppEvent), (KIOSK_EVENT, KioskEvent)],
    ids=["portal", "mobile_app", "kiosk"],
)
def test_contract_example_has_no_repeated_key(payload: bytes, model: type) -> None:
    assert isinstance(parse_event(payload), model)


def test_event_rejected_for_another_reason_keeps_that_reason() -> None:
    payload = _extended(b'"note": 1, "note": 2', PORTAL_EVENT.replace(b'"BHD"', b'"USD"'))
    outcome = parse_event(payload)
    assert isinstance(outcome, Rejection)
    assert outcome.code is RejectCode.WRONG_CURRENCY


@pytest.mark.parametrize(
    "extra",
    [b'"big": 1' + b"0" * 4000, b'"nan": NaN', b'"inf": 1e999', b'"pi": 3.' + b"1" * 5000],
    ids=["huge-integer", "nan", "huge-exponent", "long-fraction"],
)
def test_numbers_pydantic_accepts_pass_the_check(extra: bytes) -> None:
    assert isinstance(parse_event(_extended(extra)), PortalEvent)


def _jiter_fails(*_: Any, **__: Any) -> Any:
    raise ValueError("simulated: jiter cannot read this")


def test_check_falls_back_to_the_reference_parser_when_jiter_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validate, "_FROM_JSON", _jiter_fails)
    assert isinstance(parse_event(PORTAL_EVENT), PortalEvent)
    assert '"amount_fils"' in _duplicate(_extended(b'"amount_fils": 99999')).reason


def test_check_that_cannot_complete_rejects_instead_of_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def reference_fails(*_: Any, **__: Any) -> Any:
        raise RecursionError("simulated")

    monkeypatch.setattr(validate, "_FROM_JSON", _jiter_fails)
    monkeypatch.setattr(validate.json, "loads", reference_fails)
    outcome = parse_event(PORTAL_EVENT)
    assert isinstance(outcome, Rejection)
    assert outcome.code is RejectCode.MALFORMED_JSON


# --- property: the check agrees with a reference detector on random JSON -------------------


@dataclass(frozen=True)
class _Obj:
    """A JSON object as the pairs it is written with: a dict could not repeat a key."""

    pairs: tuple[tuple[str, Any], ...]


# Few characters, so random objects repeat keys by chance too; quotes, colons, backslashes,
# braces and non-ASCII make key-like text inside strings.
_ALPHABET = 'ab:"\\{},é م'
_KEYS = st.text(_ALPHABET, max_size=3)
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.text(_ALPHABET, max_size=8)
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(_KEYS, inner), max_size=5).map(lambda p: _Obj(tuple(p)))
    ),
    max_leaves=25,
)
_DOCUMENTS = st.lists(st.tuples(_KEYS, _VALUES), max_size=6).map(lambda p: _Obj(tuple(p)))


def _spell(text: str, rng: random.Random) -> str:
    """A JSON string literal for `text`, each character raw or \\u-escaped at random."""
    out = []
    for char in text:
        if rng.random() < 0.3:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(json.dumps(char, ensure_ascii=False)[1:-1])
    return '"' + "".join(out) + '"'


def _write(value: Any, rng: random.Random) -> str:
    space = ["", " ", "\n\t "]
    if isinstance(value, _Obj):
        members = [
            f"{_spell(k, rng)}{rng.choice(space)}:{rng.choice(space)}{_write(v, rng)}"
            for k, v in value.pairs
        ]
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_write(v, rng) for v in value) + "]"
    if isinstance(value, str):
        return _spell(value, rng)
    return json.dumps(value)


def _objects(value: Any) -> list[_Obj]:
    if isinstance(value, _Obj):
        return [value, *(o for _, v in value.pairs for o in _objects(v))]
    if isinstance(value, list):
        return [o for v in value for o in _objects(v)]
    return []


def _inject_duplicate(document: _Obj, rng: random.Random) -> _Obj:
    """The document with one of its objects given a second copy of one of its keys."""
    candidates = [o for o in _objects(document) if o.pairs]
    if not candidates:
        return _Obj((*document.pairs, ("x", 1), ("x", 2)))
    target = rng.choice(candidates)
    key = rng.choice(target.pairs)[0]
    copy = _Obj((*target.pairs, (key, "other value")))

    def replace(value: Any) -> Any:
        if value is target:
            return copy
        if isinstance(value, _Obj):
            return _Obj(tuple((k, replace(v)) for k, v in value.pairs))
        if isinstance(value, list):
            return [replace(v) for v in value]
        return value

    return replace(document)  # type: ignore[no-any-return]


def _reference_repeats_a_key(text: str) -> bool:
    repeated = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        keys = [k for k, _ in pairs]
        repeated = repeated or len(set(keys)) < len(keys)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return repeated


@settings(max_examples=300, deadline=None)
@given(document=_DOCUMENTS, inject=st.booleans(), rng=st.randoms(use_true_random=False))
def test_check_agrees_with_a_reference_detector_on_random_json(
    document: _Obj, inject: bool, rng: random.Random
) -> None:
    if inject:
        document = _inject_duplicate(document, rng)
    text = _write(document, rng)
    expected = _reference_repeats_a_key(text)
    event(f"repeats a key: {expected}, injected: {inject}")
    outcome = parse_event(_extended(b'"extra": ' + text.encode()))
    if expected:
        assert isinstance(outcome, Rejection)
        assert outcome.code is RejectCode.DUPLICATE_KEY
    else:
        assert isinstance(outcome, PortalEvent), outcome


def test_payload_starting_with_a_bom_is_left_to_the_reader_and_is_malformed() -> None:
    # transforms.batch.read skips a BOM at the start of a file; one on any other line is bad input.
    outcome = parse_event(b"\xef\xbb\xbf" + PORTAL_EVENT)
    assert isinstance(outcome, Rejection)
    assert outcome.code is RejectCode.MALFORMED_JSON
