"""transforms.core.privacy: keyed CPR pseudonyms, card last four, and redaction of rejected
input."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from tests.samples import MOBILE_EVENT as MOBILE_APP
from tests.samples import PORTAL_EVENT as PORTAL
from transforms.core import privacy
from transforms.core.privacy import (
    Pseudonymiser,
    card_last4,
    raw_findings,
    redact_raw,
    redact_text,
)

KEY = b"test-pseudonym-key-0123456789abcdef"
OTHER_KEY = b"another-pseudonym-key-fedcba9876543210"
CPR = "850101234"
PAN = "4111111111111111"
LAST4 = "1111"

KIOSK_FULL_PAN = (
    b'{"channel": "kiosk", "kiosk_id": "KSK-017", "seq": 40213, "site": "Isa Town",'
    b' "service": "VEH-REG-RENEW", "amount": "25.000", "cpr": "850101234",'
    b' "local_time": "2017-07-01 02:00:00", "result": "OK", "card": "4111111111111111"}'
)
FREE_TEXT = (
    b'{"channel": "kiosk", "note": "payer 850101234 paid with 4111 1111 1111 1111,'
    b' retried 4111-1111-1111-1111 then 4111111111111111", "local_time": "2017-07-01 02:00:00"}'
)

# Payloads holding the CPR and/or the full card number.
PARSEABLE_WITH_PERSONAL_DATA = {
    "portal": PORTAL,
    "mobile_app": MOBILE_APP,
    "kiosk_full_pan": KIOSK_FULL_PAN,
    "free_text": FREE_TEXT,
    "cpr_by_key_upper": b'{"CPR": "850101234"}',
    "cpr_by_other_key": b'{"national_id": "850101234", "cpr_number": "850101234"}',
    "cpr_nested": b'{"a": {"b": [{"c": {"cpr": "850101234"}}]}}',
    "cpr_bare_number": b'{"payer": 850101234}',
    "cpr_bare_number_in_list": b'{"ids": [1, 850101234]}',
    "cpr_number_by_key": b'{"payer": {"cpr": 850101234}}',
    "pan_bare_number": b'{"x": 4111111111111111}',
    "pan_by_key_spaces": b'{"pan": "4111 1111 1111 1111"}',
    "pan_by_key_dashes": b'{"card_number": "4111-1111-1111-1111"}',
    "pan_in_text_spaces": b'{"note": "card 4111 1111 1111 1111 used"}',
    "pan_in_text_dashes": b'{"note": "card 4111-1111-1111-1111 used"}',
    "top_level_string": b'"850101234 4111111111111111"',
}
MALFORMED_WITH_PERSONAL_DATA = {
    "malformed_portal": PORTAL[:-1],
    "malformed_kiosk": KIOSK_FULL_PAN[:-20],
    "malformed_free_text": FREE_TEXT[:-2],
    "malformed_pan_spaces": b'{"card": "4111 1111 1111 1111", ',
    "malformed_pan_dashes": b'{"note": "4111-1111-1111-1111" ,,',
    "malformed_cpr_number": b'{"payer": {"cpr": 850101234',
    "invalid_utf8": b'{"cpr": "850101234", "x": "\xff\xfe", "card": "4111111111111111"',
}
WITH_PERSONAL_DATA = {**PARSEABLE_WITH_PERSONAL_DATA, **MALFORMED_WITH_PERSONAL_DATA}

# Every form in which the test CPR or card number could still be read.
LEAKS = [
    CPR,
    PAN,
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
]


def _assert_no_personal_data(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked in {text!r}"


def test_pseudonym_is_hmac_sha256_of_the_cpr_truncated_to_128_bits() -> None:
    expected = hmac.new(KEY, CPR.encode(), hashlib.sha256).hexdigest()[:32]
    assert Pseudonymiser(KEY)(CPR) == expected


def test_pseudonym_is_32_hex_characters() -> None:
    pseudonym = Pseudonymiser(KEY)(CPR)
    assert len(pseudonym) == 32
    int(pseudonym, 16)


def test_pseudonym_differs_with_another_key() -> None:
    assert Pseudonymiser(KEY)(CPR) != Pseudonymiser(OTHER_KEY)(CPR)


def test_pseudonym_is_not_a_plain_hash_of_the_cpr() -> None:
    pseudonym = Pseudonymiser(KEY)(CPR)
    plain = hashlib.sha256(CPR.encode()).hexdigest()
    assert pseudonym != plain
    assert not plain.startswith(pseudonym)


def test_pseudonym_does_not_contain_the_cpr() -> None:
    assert CPR not in Pseudonymiser(KEY)(CPR)


def test_pseudonym_differs_between_cprs() -> None:
    pseudonymise = Pseudonymiser(KEY)
    assert pseudonymise(CPR) != pseudonymise("850101235")


def test_pseudonym_is_stable_across_instances_and_calls() -> None:
    first = Pseudonymiser(KEY)
    assert first(CPR) == first(CPR) == Pseudonymiser(KEY)(CPR)


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 15])
def test_key_shorter_than_16_bytes_is_refused(key: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymiser(key)


def test_key_of_exactly_16_bytes_is_accepted() -> None:
    assert len(Pseudonymiser(b"k" * 16)(CPR)) == 32


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ("************1234", ("1234", False)),
        ("1234", ("1234", False)),
        (PAN, (LAST4, True)),
        ("4111 1111 1111 1111", (LAST4, True)),
        ("4111-1111-1111-1111", (LAST4, True)),
        ("411111******1111", (LAST4, True)),
        (None, (None, False)),
        ("", (None, False)),
        ("****", (None, False)),
        ("**12", (None, False)),
    ],
)
def test_card_last4_gives_last_four_and_reports_unmasked(
    card: str | None, expected: tuple[str | None, bool]
) -> None:
    assert card_last4(card) == expected


@pytest.mark.parametrize("name", sorted(WITH_PERSONAL_DATA))
def test_redact_raw_removes_cpr_and_full_card_numbers(name: str) -> None:
    _assert_no_personal_data(redact_raw(WITH_PERSONAL_DATA[name]))


@pytest.mark.parametrize("name", sorted(MALFORMED_WITH_PERSONAL_DATA))
def test_redact_raw_of_malformed_input_returns_text(name: str) -> None:
    payload = MALFORMED_WITH_PERSONAL_DATA[name]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payload)
    assert redact_raw(payload)


def test_redact_raw_keeps_the_last_four_of_a_card_by_key() -> None:
    assert orjson.loads(redact_raw(KIOSK_FULL_PAN))["card"] == "************1111"


def test_redact_raw_marks_a_cpr_by_key_as_redacted() -> None:
    assert orjson.loads(redact_raw(PORTAL))["payer"]["cpr"] == "<redacted-cpr>"


def test_redact_raw_of_parseable_input_is_json() -> None:
    redacted = orjson.loads(redact_raw(MOBILE_APP))
    assert redacted["channel"] == "mobile_app"
    assert redacted["payment"] == orjson.loads(MOBILE_APP)["payment"]


def test_redact_raw_keeps_a_bahrain_local_time() -> None:
    assert "2017-07-01 02:00:00" in redact_raw(KIOSK_FULL_PAN)


def test_redact_raw_keeps_a_local_time_in_malformed_input() -> None:
    assert "2017-07-01 02:00:00" in redact_raw(FREE_TEXT[:-2])


def test_redact_raw_keeps_an_iso_timestamp_with_offset() -> None:
    assert "2017-06-30T21:15:03+03:00" in redact_raw(PORTAL)


def test_redact_raw_keeps_an_epoch_millisecond_timestamp() -> None:
    assert orjson.loads(redact_raw(MOBILE_APP))["ts"] == 1498846503123


def test_redact_raw_keeps_amounts() -> None:
    redacted = orjson.loads(redact_raw(PORTAL))
    assert redacted["amount_fils"] == 12500


@pytest.mark.parametrize("parseable", [True, False])
def test_redact_raw_bounds_the_output_of_a_one_mebibyte_line(parseable: bool) -> None:
    body = b'{"note": "' + b"850101234 4111111111111111 " * 40_000 + b'"'
    payload = body + b"}" if parseable else body
    assert len(payload) > 1024 * 1024
    redacted = redact_raw(payload)
    assert len(redacted) <= 2048 + 64
    assert redacted.endswith(f"[cut: {len(payload)} bytes in all]")
    _assert_no_personal_data(redacted)


@pytest.mark.parametrize("at", range(2030, 2050))
@pytest.mark.parametrize("digits", ["1234 5678 9 1111 2222", "12345 6789 55 4444"])
def test_a_long_raw_cut_inside_digit_groups_holds_nothing_the_scan_refuses(
    at: int, digits: str
) -> None:
    # Cut at 2,048 characters, `1234 5678 9 1111` left `1234 5678 9`, and `12345 6789` left
    # `12345…[3064`: nine digits in two or three groups, which the scan of the written
    # rejected file took for a CPR, so one event refused the whole run.
    payload = ('{"note": "' + "x" * (at - 11) + " " + digits + " " + "y" * 1000 + '"}').encode()
    redacted = redact_raw(payload)
    assert raw_findings(redacted) == []
    assert redacted.endswith(f"[cut: {len(payload)} bytes in all]")


def test_redact_raw_does_not_cut_a_short_event() -> None:
    assert "bytes in all" not in redact_raw(PORTAL)


def test_redact_text_keeps_dates_and_times() -> None:
    text = "at 2017-07-01 02:00:00, i.e. 2017-06-30T23:00:00Z"
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpr 850101234.", "cpr <redacted-cpr>."),
        ("4111111111111111", "************1111"),
        ("4111 1111 1111 1111", "************1111"),
        ("4111-1111-1111-1111", "************1111"),
        ("3782 822463 10005", "***********0005"),
    ],
)
def test_redact_text_masks_cprs_and_card_numbers(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_text_leaves_short_numbers_alone() -> None:
    assert redact_text("seq 40213, 12500 fils, KSK-017") == "seq 40213, 12500 fils, KSK-017"


def test_redact_raw_removes_a_cpr_used_as_an_object_key() -> None:
    _assert_no_personal_data(redact_raw(b'{"payments_by_cpr": {"850101234": 2}}'))


def test_redact_raw_removes_a_card_number_sent_as_a_float() -> None:
    _assert_no_personal_data(redact_raw(b'{"x": 4111111111111111.0}'))


def test_a_cpr_sent_as_a_json_number_is_masked_and_the_rest_keeps_its_digits() -> None:
    # Its mask has no quotes either: taken again for a CPR value, it was masked pass after
    # pass until every digit of the event was starred, its id and amount among them.
    payload = PORTAL.replace(b'"cpr": "850101234"', b'"cpr": 850101234')
    assert b'"cpr": 850101234' in payload
    redacted = redact_raw(payload)
    assert '"cpr": <redacted-cpr>' in redacted
    assert "PTL-2017-000123456" in redacted
    assert '"amount_fils": 12500' in redacted


@pytest.mark.parametrize("key_length", [16, 64, 65, 200])
def test_pseudonym_is_standard_hmac_sha256_for_any_key_length(key_length: int) -> None:
    key = bytes(range(256))[:key_length]
    expected = hmac.new(key, b"850101234", hashlib.sha256).hexdigest()[:32]
    assert Pseudonymiser(key)("850101234") == expected


@pytest.mark.parametrize("key_length", [16, 64, 65, 200])
def test_pseudonyms_of_a_block_are_each_cprs_own_pseudonym(key_length: int) -> None:
    pseudonymise = Pseudonymiser(bytes(range(256))[:key_length])
    cprs = ["850101234", None, "850101235", "850101234", ""]
    assert pseudonymise.of_each(cprs) == [None if c is None else pseudonymise(c) for c in cprs]


# --- the chains the rule looks at ----------------------------------------------------------------

_CHAIN_TEXT = hs.text(alphabet='0123456789٠١٢٣٤٥٦٧٨٩ -.,/:"{}a\ufffd*', max_size=60)


@given(_CHAIN_TEXT, hs.sampled_from(list(privacy.Strength)))
def test_the_chains_left_unread_are_exactly_those_of_fewer_than_nine_digits(
    text: str, strength: privacy.Strength
) -> None:
    every = list(privacy._chains_within(text, 0, len(text)))
    read = list(privacy._chains(text))
    assert read == [c for c in every if sum(len(run.digits) for run in c) >= 9]
    for chain in every:
        if chain not in read:
            groups = [run.digits for run in chain]
            assert privacy._pattern_findings(text, chain, groups, strength) == []
