"""schemas.money: BHD amounts are exact fils with three decimals, positive, at most MAX_FILS."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import pytest

from schemas.enums import RejectCode
from schemas.money import (
    CURRENCY,
    MAX_FILS,
    AmountError,
    check_fils,
    fils_from_text,
    fils_to_decimal,
    format_bhd,
)
from tests.samples import KIOSK_EVENT, MOBILE_EVENT, PORTAL_EVENT
from transforms.core.validate import Rejection, parse_event

LARGEST_AMOUNT_TEXT = "999999999.999"  # the largest single payment: 9 integer digits, 3 decimals
ABOVE_LARGEST_TEXT = "1000000000.000"  # one fils more
# Each channel's contract example and the path of its amount (integer fils on the portal,
# decimal BHD text elsewhere).
AMOUNT_FIELDS: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "portal": (PORTAL_EVENT, ("amount_fils",)),
    "mobile_app": (MOBILE_EVENT, ("payment", "amount")),
    "kiosk": (KIOSK_EVENT, ("amount",)),
}


def _code_of(text: str) -> str:
    with pytest.raises(AmountError) as caught:
        fils_from_text(text)
    return caught.value.code


def test_currency_is_bhd() -> None:
    assert CURRENCY == "BHD"


@pytest.mark.parametrize(
    ("text", "fils"),
    [
        ("12.500", 12_500),
        ("12.5", 12_500),
        ("12.50", 12_500),
        ("12", 12_000),
        ("0.001", 1),
        ("0.010", 10),
        ("68.123", 68_123),
        ("007.5", 7_500),
    ],
)
def test_decimal_text_gives_exact_fils(text: str, fils: int) -> None:
    assert fils_from_text(text) == fils


def test_largest_payment_is_999_999_999_999_bhd() -> None:
    assert MAX_FILS == 999_999_999_999
    assert format_bhd(MAX_FILS) == LARGEST_AMOUNT_TEXT


def test_largest_payment_text_is_accepted() -> None:
    assert fils_from_text(LARGEST_AMOUNT_TEXT) == MAX_FILS


def test_one_fils_above_the_largest_payment_text_is_invalid() -> None:
    assert _code_of(ABOVE_LARGEST_TEXT) == "INVALID_AMOUNT"


def test_ten_integer_digits_are_invalid() -> None:
    assert _code_of("1000000000") == "INVALID_AMOUNT"


def test_amount_above_the_largest_payment_reason_names_the_limit() -> None:
    with pytest.raises(AmountError, match=re.escape("999999999.999 BHD")):
        fils_from_text(ABOVE_LARGEST_TEXT)


@pytest.mark.parametrize(
    ("text", "fils"), [("0000000001.500", 1_500), ("000999999999.999", MAX_FILS)]
)
def test_leading_zeros_do_not_count_against_the_limit(text: str, fils: int) -> None:
    assert fils_from_text(text) == fils


def test_a_thousand_digit_amount_is_invalid() -> None:
    assert _code_of("9" * 1000) == "INVALID_AMOUNT"


@pytest.mark.parametrize("text", ["12.5000", "12.0001", "0.0001", "12.3456"])
def test_fourth_decimal_is_rejected_not_rounded(text: str) -> None:
    assert _code_of(text) == "INVALID_AMOUNT"


def test_fourth_decimal_reason_says_bhd_has_three() -> None:
    with pytest.raises(AmountError, match="more than 3 decimals"):
        fils_from_text("12.5001")


@pytest.mark.parametrize(
    "text",
    ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e3", "1E3", "12.5e-1", "0x10", "1_000"],
)
def test_special_values_and_exponents_are_invalid(text: str) -> None:
    assert _code_of(text) == "INVALID_AMOUNT"


@pytest.mark.parametrize("text", ["+12", "+12.500"])
def test_plus_sign_is_invalid(text: str) -> None:
    assert _code_of(text) == "INVALID_AMOUNT"


@pytest.mark.parametrize("text", [" 12", "12 ", "1 2", "12. 5", "\t12.500", "12.500\n"])
def test_spaces_are_invalid(text: str) -> None:
    assert _code_of(text) == "INVALID_AMOUNT"


@pytest.mark.parametrize("text", ["", ".", "12.", ".5", "12,5", "twelve", "12.5.0"])
def test_empty_or_malformed_text_is_invalid(text: str) -> None:
    assert _code_of(text) == "INVALID_AMOUNT"


@pytest.mark.parametrize("text", ["0", "0.000", "0.0", "000"])
def test_zero_is_non_positive(text: str) -> None:
    assert _code_of(text) == "NON_POSITIVE_AMOUNT"


@pytest.mark.parametrize("text", ["-12", "-12.500", "-0.001", "-0"])
def test_negative_text_is_non_positive(text: str) -> None:
    assert _code_of(text) == "NON_POSITIVE_AMOUNT"


def test_more_than_fifteen_integer_digits_is_invalid() -> None:
    assert _code_of("1000000000000000") == "INVALID_AMOUNT"


@pytest.mark.parametrize("text", ["١٢.٥٠٠", "１２.５００"])
def test_non_ascii_digits_are_invalid(text: str) -> None:
    assert _code_of(text) == "INVALID_AMOUNT"


@pytest.mark.parametrize("fils", [1, 12_500, MAX_FILS])
def test_check_fils_returns_positive_storable_fils(fils: int) -> None:
    assert check_fils(fils) == fils


@pytest.mark.parametrize("fils", [0, -1, -12_500])
def test_check_fils_refuses_zero_and_negative(fils: int) -> None:
    with pytest.raises(AmountError) as caught:
        check_fils(fils)
    assert caught.value.code == "NON_POSITIVE_AMOUNT"


def test_check_fils_refuses_beyond_the_largest_payment() -> None:
    with pytest.raises(AmountError) as caught:
        check_fils(MAX_FILS + 1)
    assert caught.value.code == "INVALID_AMOUNT"


def test_amount_error_is_a_value_error() -> None:
    assert issubclass(AmountError, ValueError)


@pytest.mark.parametrize(
    ("fils", "expected"),
    [
        (12_500, "12.500"),
        (1, "0.001"),
        (25_000, "25.000"),
        (MAX_FILS, LARGEST_AMOUNT_TEXT),
    ],
)
def test_fils_to_decimal_is_exact_with_three_places(fils: int, expected: str) -> None:
    amount = fils_to_decimal(fils)
    assert amount == Decimal(expected)
    assert amount.as_tuple().exponent == -3
    assert str(amount) == expected


@pytest.mark.parametrize("text", ["12.500", "0.001", "68.123", LARGEST_AMOUNT_TEXT])
def test_text_to_fils_to_decimal_round_trips(text: str) -> None:
    assert str(fils_to_decimal(fils_from_text(text))) == text


@pytest.mark.parametrize(
    ("fils", "expected"),
    [
        (12_500, "12.500"),
        (1, "0.001"),
        (0, "0.000"),
        (30_000_000_000, "30000000.000"),
        (-1_500, "-1.500"),
        (-1, "-0.001"),
    ],
)
def test_format_bhd_gives_three_decimals(fils: int, expected: str) -> None:
    assert format_bhd(fils) == expected


def _event_with_amount(channel: str, fils: int) -> bytes:
    base, path = AMOUNT_FIELDS[channel]
    event = orjson.loads(base)
    target: Any = event
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = fils if channel == "portal" else format_bhd(fils)
    return orjson.dumps(event)


@pytest.mark.parametrize("channel", sorted(AMOUNT_FIELDS))
def test_a_payment_of_max_fils_is_accepted_on_every_channel(channel: str) -> None:
    outcome: Any = parse_event(_event_with_amount(channel, MAX_FILS))
    assert not isinstance(outcome, Rejection), outcome
    *parents, last = AMOUNT_FIELDS[channel][1]
    for name in parents:
        outcome = getattr(outcome, name)
    assert (outcome[last] if isinstance(outcome, dict) else getattr(outcome, last)) == MAX_FILS


@pytest.mark.parametrize("channel", sorted(AMOUNT_FIELDS))
def test_a_payment_of_max_fils_plus_one_is_invalid_amount_on_every_channel(channel: str) -> None:
    outcome = parse_event(_event_with_amount(channel, MAX_FILS + 1))
    assert isinstance(outcome, Rejection)
    assert outcome.code is RejectCode.INVALID_AMOUNT
