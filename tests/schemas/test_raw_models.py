"""schemas.raw through transforms.core.validate.parse_event: the contract's shapes, every
reject code."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.enums import RejectCode
from schemas.raw import KioskEvent, MobileAppEvent, PortalEvent
from tests.samples import KIOSK_EVENT as KIOSK
from tests.samples import MOBILE_EVENT as MOBILE_APP
from tests.samples import PORTAL_EVENT as PORTAL
from transforms.core.validate import DEFAULT_MAX_EVENT_BYTES, Rejection, parse_event

# The three examples of contract.md.
BASES = {"portal": PORTAL, "mobile_app": MOBILE_APP, "kiosk": KIOSK}


def _with(base: bytes, path: str, value: Any) -> bytes:
    """The event with the dotted field `path` set to `value`."""
    event = orjson.loads(base)
    *parents, last = path.split(".")
    target = event
    for name in parents:
        target = target[name]
    target[last] = value
    return orjson.dumps(event)


def _without(base: bytes, path: str) -> bytes:
    """The event with the dotted field `path` removed."""
    event = orjson.loads(base)
    *parents, last = path.split(".")
    target = event
    for name in parents:
        target = target[name]
    del target[last]
    return orjson.dumps(event)


def _nested(depth: int, opening: bytes, leaf: bytes, closing: bytes) -> bytes:
    return opening * depth + leaf + closing * depth


def _rejected(payload: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Rejection:
    outcome = parse_event(payload, max_bytes)
    assert isinstance(outcome, Rejection), f"accepted: {outcome!r}"
    return outcome


@pytest.mark.parametrize(
    ("payload", "model"),
    [(PORTAL, PortalEvent), (MOBILE_APP, MobileAppEvent), (KIOSK, KioskEvent)],
    ids=["portal", "mobile_app", "kiosk"],
)
def test_contract_example_is_accepted(payload: bytes, model: type) -> None:
    assert isinstance(parse_event(payload), model)


@pytest.mark.parametrize("channel", sorted(BASES))
def test_extra_unknown_fields_are_ignored(channel: str) -> None:
    payload = _with(BASES[channel], "added_by_source_later", {"any": ["thing", 1]})
    assert not isinstance(parse_event(payload), Rejection)


def test_unknown_field_inside_a_nested_object_is_ignored() -> None:
    assert not isinstance(parse_event(_with(PORTAL, "service.sector", "Interior")), Rejection)


def test_arabic_kiosk_site_is_accepted() -> None:
    event = parse_event(_with(KIOSK, "site", "مدينة عيسى"))
    assert isinstance(event, KioskEvent)
    assert event.site == "مدينة عيسى"


def test_kiosk_without_cpr_is_accepted() -> None:
    assert "cpr" not in orjson.loads(KIOSK)
    assert isinstance(parse_event(KIOSK), KioskEvent)


def test_kiosk_with_cpr_is_accepted() -> None:
    assert isinstance(parse_event(_with(KIOSK, "cpr", "850101234")), KioskEvent)


def test_kiosk_without_card_is_accepted() -> None:
    assert isinstance(parse_event(_without(KIOSK, "card")), KioskEvent)


def test_portal_without_gateway_ref_is_accepted() -> None:
    assert isinstance(parse_event(_without(PORTAL, "gateway_ref")), PortalEvent)


def test_paid_at_in_utc_with_z_is_accepted() -> None:
    assert isinstance(parse_event(_with(PORTAL, "paid_at", "2017-06-30T18:15:03Z")), PortalEvent)


def test_nesting_within_pydantic_limit_is_accepted() -> None:
    payload = PORTAL[:-1] + b', "extra": ' + _nested(100, b"[", b"1", b"]") + b"}"
    assert isinstance(parse_event(payload), PortalEvent)


def test_invalid_utf8_is_rejected() -> None:
    rejection = _rejected(PORTAL[:30] + b"\xff\xfe" + PORTAL[30:])
    assert rejection.code is RejectCode.INVALID_UTF8
    assert rejection.step == "parse"


@pytest.mark.parametrize(
    "payload", [b"{", b"", b"{'channel': 'portal'}", PORTAL[:-1], b'{"channel": portal}']
)
def test_malformed_json_is_rejected(payload: bytes) -> None:
    rejection = _rejected(payload)
    assert rejection.code is RejectCode.MALFORMED_JSON
    assert rejection.step == "parse"


@pytest.mark.parametrize("payload", [b"[1,2]", b'"x"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_rejected(payload: bytes) -> None:
    assert _rejected(payload).code is RejectCode.NOT_AN_OBJECT


def test_payload_over_max_bytes_is_too_long() -> None:
    payload = _with(PORTAL, "padding", "x" * DEFAULT_MAX_EVENT_BYTES)
    rejection = _rejected(payload)
    assert rejection.code is RejectCode.LINE_TOO_LONG
    assert str(len(payload)) in rejection.reason


def test_max_bytes_parameter_is_an_inclusive_limit() -> None:
    assert isinstance(parse_event(PORTAL, max_bytes=len(PORTAL)), PortalEvent)
    assert _rejected(PORTAL, max_bytes=len(PORTAL) - 1).code is RejectCode.LINE_TOO_LONG


def test_too_long_is_decided_before_parsing() -> None:
    assert _rejected(b"\xff" * 100, max_bytes=10).code is RejectCode.LINE_TOO_LONG


def test_five_thousand_nested_arrays_are_too_deeply_nested() -> None:
    rejection = _rejected(_nested(5000, b"[", b"", b"]"))
    assert rejection.code is RejectCode.TOO_DEEPLY_NESTED


@pytest.mark.parametrize(
    ("opening", "closing"), [(b"[", b"]"), (b'{"a": ', b"}")], ids=["arrays", "objects"]
)
def test_valid_looking_event_nested_300_deep_is_too_deeply_nested(
    opening: bytes, closing: bytes
) -> None:
    payload = PORTAL[:-1] + b', "extra": ' + _nested(300, opening, b"1", closing) + b"}"
    assert _rejected(payload).code is RejectCode.TOO_DEEPLY_NESTED


@pytest.mark.parametrize("payload", [b"{}", _without(PORTAL, "channel")])
def test_missing_channel_is_unknown_channel(payload: bytes) -> None:
    assert _rejected(payload).code is RejectCode.UNKNOWN_CHANNEL


@pytest.mark.parametrize("channel", ["bank", "Portal", "", 5, None])
def test_unknown_channel_is_rejected(channel: Any) -> None:
    assert _rejected(_with(PORTAL, "channel", channel)).code is RejectCode.UNKNOWN_CHANNEL


# (channel, field, bad value, expected code): one minimal bad event per rule.
BAD_VALUES = [
    ("portal", "amount_fils", "12500", RejectCode.WRONG_TYPE),
    ("portal", "amount_fils", 12500.0, RejectCode.WRONG_TYPE),
    ("portal", "amount_fils", True, RejectCode.WRONG_TYPE),
    ("portal", "payer.cpr", 850101234, RejectCode.WRONG_TYPE),
    ("mobile_app", "ts", "1498846503123", RejectCode.WRONG_TYPE),
    ("mobile_app", "ts", 1498846503123.0, RejectCode.WRONG_TYPE),
    ("mobile_app", "payment.amount", 12.5, RejectCode.WRONG_TYPE),
    ("kiosk", "seq", "40213", RejectCode.WRONG_TYPE),
    ("portal", "status", "paid", RejectCode.INVALID_VALUE),
    ("portal", "status", "SUCCESS", RejectCode.INVALID_VALUE),
    ("portal", "method", "CASH", RejectCode.INVALID_VALUE),
    ("mobile_app", "payment.method", "CASH", RejectCode.INVALID_VALUE),
    ("mobile_app", "app.os", "windows", RejectCode.INVALID_VALUE),
    ("mobile_app", "payment.outcome", "ok", RejectCode.INVALID_VALUE),
    ("kiosk", "result", "FAIL", RejectCode.INVALID_VALUE),
    ("kiosk", "seq", -1, RejectCode.INVALID_VALUE),
    ("kiosk", "kiosk_id", "", RejectCode.INVALID_VALUE),
    ("kiosk", "service", "bad code!", RejectCode.INVALID_VALUE),
    ("mobile_app", "payment.amount", "12.5000", RejectCode.INVALID_AMOUNT),
    ("mobile_app", "payment.amount", "1e3", RejectCode.INVALID_AMOUNT),
    ("mobile_app", "payment.amount", "NaN", RejectCode.INVALID_AMOUNT),
    ("kiosk", "amount", "25,000", RejectCode.INVALID_AMOUNT),
    ("kiosk", "amount", " 25.000", RejectCode.INVALID_AMOUNT),
    ("portal", "amount_fils", 10**18, RejectCode.INVALID_AMOUNT),
    ("portal", "amount_fils", 0, RejectCode.NON_POSITIVE_AMOUNT),
    ("portal", "amount_fils", -12500, RejectCode.NON_POSITIVE_AMOUNT),
    ("mobile_app", "payment.amount", "0.000", RejectCode.NON_POSITIVE_AMOUNT),
    ("mobile_app", "payment.amount", "-12.500", RejectCode.NON_POSITIVE_AMOUNT),
    ("kiosk", "amount", "0", RejectCode.NON_POSITIVE_AMOUNT),
    ("portal", "currency", "USD", RejectCode.WRONG_CURRENCY),
    ("portal", "currency", "bhd", RejectCode.WRONG_CURRENCY),
    ("mobile_app", "payment.currency", "SAR", RejectCode.WRONG_CURRENCY),
    ("portal", "paid_at", "2017-06-30T21:15:03", RejectCode.INVALID_TIMESTAMP),
    ("portal", "paid_at", "2017-02-30T21:15:03+03:00", RejectCode.INVALID_TIMESTAMP),
    ("portal", "paid_at", "1990-06-30T21:15:03+03:00", RejectCode.INVALID_TIMESTAMP),
    ("kiosk", "local_time", "2017-06-30T21:15:03", RejectCode.INVALID_TIMESTAMP),
    ("kiosk", "local_time", "30/06/2017 21:15:03", RejectCode.INVALID_TIMESTAMP),
    ("kiosk", "local_time", "2017-06-30 21:15:03+03:00", RejectCode.INVALID_TIMESTAMP),
    ("kiosk", "local_time", "2017-02-30 21:15:03", RejectCode.INVALID_TIMESTAMP),
    ("mobile_app", "ts", 646_790_400_000, RejectCode.INVALID_TIMESTAMP),  # 1990-07-01
    ("mobile_app", "ts", 1_498_846_503, RejectCode.INVALID_TIMESTAMP),  # seconds, not ms
    ("portal", "payer.cpr", "85010123", RejectCode.INVALID_CPR),
    ("portal", "payer.cpr", "8501012345", RejectCode.INVALID_CPR),
    ("mobile_app", "user.cpr", "85010123a", RejectCode.INVALID_CPR),
    ("kiosk", "cpr", "CPR850101", RejectCode.INVALID_CPR),
]


@pytest.mark.parametrize(
    ("channel", "field", "value", "code"),
    BAD_VALUES,
    ids=[f"{c}-{f}-{v!r}" for c, f, v, _ in BAD_VALUES],
)
def test_bad_value_is_rejected_with_its_code(
    channel: str, field: str, value: Any, code: RejectCode
) -> None:
    rejection = _rejected(_with(BASES[channel], field, value))
    assert rejection.code is code
    assert rejection.step == "validate"


@pytest.mark.parametrize(
    ("channel", "field", "value"),
    [(c, f, v) for c, f, v, _ in BAD_VALUES],
    ids=[f"{c}-{f}-{v!r}" for c, f, v, _ in BAD_VALUES],
)
def test_reason_names_the_field(channel: str, field: str, value: Any) -> None:
    assert _rejected(_with(BASES[channel], field, value)).reason.startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        ("portal", "txn_id"),
        ("portal", "amount_fils"),
        ("portal", "paid_at"),
        ("portal", "payer"),
        ("portal", "service.code"),
        ("mobile_app", "payment.amount"),
        ("mobile_app", "user.cpr"),
        ("mobile_app", "ts"),
        ("kiosk", "local_time"),
        ("kiosk", "seq"),
    ],
)
def test_missing_field_is_rejected_and_named(channel: str, field: str) -> None:
    rejection = _rejected(_without(BASES[channel], field))
    assert rejection.code is RejectCode.MISSING_FIELD
    assert field in rejection.reason


@pytest.mark.parametrize("channel", sorted(BASES))
def test_validation_rejection_carries_the_claimed_channel(channel: str) -> None:
    amount_field = {"portal": "amount_fils", "mobile_app": "payment.amount", "kiosk": "amount"}
    rejection = _rejected(_with(BASES[channel], amount_field[channel], None))
    assert rejection.channel == channel


def test_parse_rejection_has_no_channel() -> None:
    assert _rejected(PORTAL[:-1]).channel is None


def test_reason_is_a_readable_sentence_not_a_code() -> None:
    reason = _rejected(_with(PORTAL, "currency", "USD")).reason
    assert reason != RejectCode.WRONG_CURRENCY.value
    assert " " in reason
    assert "BHD" in reason


def test_reason_lists_several_broken_fields() -> None:
    payload = _with(_with(PORTAL, "status", "paid"), "method", "CASH")
    reason = _rejected(payload).reason
    assert "status" in reason
    assert "method" in reason


def test_cpr_in_arabic_indic_digits_is_invalid_cpr() -> None:
    assert _rejected(_with(MOBILE_APP, "user.cpr", "٨٥٠١٠١٢٣٤")).code is RejectCode.INVALID_CPR
