"""transforms.core.normalise: each channel's raw event -> the one normalised payment shape."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from schemas.catalogue import load_catalogue
from schemas.records import SCHEMA_VERSION, PaymentRecord
from schemas.timekeeping import EPOCH_DATE, to_utc_micros
from tests.samples import KIOSK_EVENT as KIOSK
from tests.samples import MOBILE_EVENT as MOBILE_APP
from tests.samples import PORTAL_EVENT as PORTAL
from transforms.core.blocks import RunContext, process_block
from transforms.core.normalise import NormalisedPayment, Normaliser, to_record
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.core.validate import Rejection, parse_event
from transforms.dedup.table import differing

KEY = b"test-pseudonym-key-0123456789abcdef"
CPR = "850101234"
PAN = "4111111111111111"
RUN_ID = "run-test"
INGESTED_MICROS = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
UNKNOWN_CODE = "NOT-IN-CATALOGUE"

BASES = {"portal": PORTAL, "mobile_app": MOBILE_APP, "kiosk": KIOSK}
STATUS_FIELD = {"portal": "status", "mobile_app": "payment.outcome", "kiosk": "result"}
AMOUNT_FIELD = {"portal": "amount_fils", "mobile_app": "payment.amount", "kiosk": "amount"}
SERVICE_FIELD = {"portal": "service.code", "mobile_app": "service_code", "kiosk": "service"}

# 2017-06-30 21:15:03 in Bahrain is 18:15:03 UTC.
CONTRACT_INSTANT = datetime(2017, 6, 30, 18, 15, 3, tzinfo=timezone.utc)


def _with(base: bytes, path: str, value: Any) -> bytes:
    event = orjson.loads(base)
    *parents, last = path.split(".")
    target = event
    for name in parents:
        target = target[name]
    target[last] = value
    return orjson.dumps(event)


@pytest.fixture(scope="module")
def normalise() -> Normaliser:
    return Normaliser(Pseudonymiser(KEY), load_catalogue())


def _normalised(normalise: Normaliser, payload: bytes) -> NormalisedPayment:
    event = parse_event(payload)
    assert not isinstance(event, Rejection), event
    return normalise(event)


def _record(payment: NormalisedPayment) -> PaymentRecord:
    return to_record(
        payment, ingested_micros=INGESTED_MICROS, run_id=RUN_ID, source_file="in/a.jsonl"
    )


def _day_number(day: date) -> int:
    return (day - EPOCH_DATE).days


@pytest.mark.parametrize(
    ("payload", "event_id"),
    [
        (PORTAL, "portal:PTL-2017-000123456"),
        (MOBILE_APP, "mobile_app:3f0c2a9e-6c1b-4d3e-9a51-0b7d5f9e2c11"),
        (KIOSK, "kiosk:KSK-017:40213"),
    ],
    ids=["portal", "mobile_app", "kiosk"],
)
def test_event_id_is_channel_prefixed_source_id(
    normalise: Normaliser, payload: bytes, event_id: str
) -> None:
    assert _normalised(normalise, payload).event_id == event_id


@pytest.mark.parametrize("channel", sorted(BASES))
def test_channel_is_the_canonical_name(normalise: Normaliser, channel: str) -> None:
    assert _normalised(normalise, BASES[channel]).channel == channel


@pytest.mark.parametrize(
    ("channel", "raw_status", "status"),
    [
        ("portal", "PAID", "SUCCESS"),
        ("portal", "DECLINED", "FAILED"),
        ("portal", "REFUNDED", "REFUNDED"),
        ("mobile_app", "success", "SUCCESS"),
        ("mobile_app", "failure", "FAILED"),
        ("mobile_app", "refund", "REFUNDED"),
        ("kiosk", "OK", "SUCCESS"),
        ("kiosk", "DECLINED", "FAILED"),
        ("kiosk", "CANCELLED", "CANCELLED"),
        ("kiosk", "REFUNDED", "REFUNDED"),
    ],
)
def test_raw_status_maps_to_normalised_status(
    normalise: Normaliser, channel: str, raw_status: str, status: str
) -> None:
    payload = _with(BASES[channel], STATUS_FIELD[channel], raw_status)
    assert _normalised(normalise, payload).status == status


@pytest.mark.parametrize(
    ("channel", "amount", "fils"),
    [
        ("portal", 12500, 12_500),
        ("portal", 1, 1),
        ("mobile_app", "12.500", 12_500),
        ("mobile_app", "12.5", 12_500),
        ("mobile_app", "0.001", 1),
        ("mobile_app", "68.123", 68_123),
        ("kiosk", "25", 25_000),
        ("kiosk", "999999999.999", 999_999_999_999),
    ],
)
def test_amount_is_exact_fils(
    normalise: Normaliser, channel: str, amount: int | str, fils: int
) -> None:
    payload = _with(BASES[channel], AMOUNT_FIELD[channel], amount)
    assert _normalised(normalise, payload).amount_fils == fils


@pytest.mark.parametrize("channel", sorted(BASES))
def test_currency_is_bhd(normalise: Normaliser, channel: str) -> None:
    assert _normalised(normalise, BASES[channel]).currency == "BHD"


@pytest.mark.parametrize(
    ("payload", "method"),
    [(PORTAL, "DEBIT_CARD"), (MOBILE_APP, "APPLE_PAY"), (KIOSK, "CARD")],
    ids=["portal", "mobile_app", "kiosk"],
)
def test_payment_method_is_normalised(normalise: Normaliser, payload: bytes, method: str) -> None:
    assert _normalised(normalise, payload).payment_method == method


def test_portal_paid_at_is_converted_to_utc(normalise: Normaliser) -> None:
    assert _normalised(normalise, PORTAL).occurred_micros == to_utc_micros(CONTRACT_INSTANT)


def test_mobile_app_ts_milliseconds_are_utc_microseconds(normalise: Normaliser) -> None:
    assert _normalised(normalise, MOBILE_APP).occurred_micros == 1_498_846_503_123_000


def test_kiosk_local_time_is_bahrain_wall_clock(normalise: Normaliser) -> None:
    assert _normalised(normalise, KIOSK).occurred_micros == to_utc_micros(CONTRACT_INSTANT)


def test_portal_offset_other_than_bahrain_is_honoured(normalise: Normaliser) -> None:
    payload = _with(PORTAL, "paid_at", "2017-06-30T18:15:03+00:00")
    assert _normalised(normalise, payload).occurred_micros == to_utc_micros(CONTRACT_INSTANT)


@pytest.mark.parametrize(
    ("channel", "when"),
    [
        ("portal", "2017-07-01T02:00:00+03:00"),
        ("mobile_app", 1_498_863_600_000),  # 2017-06-30T23:00:00Z
        ("kiosk", "2017-07-01 02:00:00"),
    ],
)
def test_event_day_is_the_bahrain_day_not_the_utc_day(
    normalise: Normaliser, channel: str, when: str | int
) -> None:
    time_field = {"portal": "paid_at", "mobile_app": "ts", "kiosk": "local_time"}[channel]
    payment = _normalised(normalise, _with(BASES[channel], time_field, when))
    assert payment.occurred_micros == to_utc_micros(
        datetime(2017, 6, 30, 23, 0, tzinfo=timezone.utc)
    )
    assert payment.event_day == _day_number(date(2017, 7, 1))


def test_late_evening_kiosk_payment_stays_on_its_day(normalise: Normaliser) -> None:
    payment = _normalised(normalise, _with(KIOSK, "local_time", "2017-06-30 22:30:00"))
    assert payment.event_day == _day_number(date(2017, 6, 30))


@pytest.mark.parametrize("payload", [PORTAL, MOBILE_APP], ids=["portal", "mobile_app"])
def test_payer_key_is_the_pseudonym_of_the_cpr(normalise: Normaliser, payload: bytes) -> None:
    assert _normalised(normalise, payload).payer_key == Pseudonymiser(KEY)(CPR)


def test_kiosk_cpr_is_pseudonymised_when_present(normalise: Normaliser) -> None:
    payment = _normalised(normalise, _with(KIOSK, "cpr", CPR))
    assert payment.payer_key == Pseudonymiser(KEY)(CPR)


def test_kiosk_without_cpr_has_no_payer_key(normalise: Normaliser) -> None:
    assert _normalised(normalise, KIOSK).payer_key is None


@pytest.mark.parametrize(
    "payload",
    [PORTAL, MOBILE_APP, _with(_with(KIOSK, "cpr", CPR), "card", PAN)],
    ids=["portal", "mobile_app", "kiosk"],
)
def test_no_field_holds_the_cpr_or_the_card_number(normalise: Normaliser, payload: bytes) -> None:
    for value in _normalised(normalise, payload):
        assert CPR not in str(value)
        assert PAN not in str(value)


def test_masked_card_keeps_last_four(normalise: Normaliser) -> None:
    payment = _normalised(normalise, KIOSK)
    assert payment.card_last4 == "1234"
    assert not payment.unmasked_card


def test_full_card_number_keeps_only_last_four_and_is_flagged(normalise: Normaliser) -> None:
    payment = _normalised(normalise, _with(KIOSK, "card", PAN))
    assert payment.card_last4 == "1111"
    assert payment.unmasked_card


@pytest.mark.parametrize("payload", [PORTAL, MOBILE_APP], ids=["portal", "mobile_app"])
def test_channels_without_card_have_no_last4(normalise: Normaliser, payload: bytes) -> None:
    assert _normalised(normalise, payload).card_last4 is None


@pytest.mark.parametrize("channel", sorted(BASES))
def test_unknown_service_code_is_kept_and_flagged(normalise: Normaliser, channel: str) -> None:
    assert UNKNOWN_CODE not in load_catalogue()
    payment = _normalised(normalise, _with(BASES[channel], SERVICE_FIELD[channel], UNKNOWN_CODE))
    assert payment.service_code == UNKNOWN_CODE
    assert payment.unknown_service
    assert payment.service_name_en is None
    assert payment.service_name_ar is None
    assert payment.service_entity is None


@pytest.mark.parametrize("channel", sorted(BASES))
def test_known_service_code_is_enriched_from_the_catalogue(
    normalise: Normaliser, channel: str
) -> None:
    payment = _normalised(normalise, BASES[channel])
    service = load_catalogue().get(payment.service_code)
    assert service is not None
    assert not payment.unknown_service
    assert payment.service_name_en == service.name_en
    assert payment.service_name_ar == service.name_ar
    assert payment.service_entity == service.entity


def test_lower_case_service_code_is_enriched_as_the_canonical_code(
    normalise: Normaliser,
) -> None:
    payment = _normalised(normalise, _with(MOBILE_APP, "service_code", "gdt-fine"))
    assert payment.service_code == "GDT-FINE"
    assert not payment.unknown_service


def test_mobile_app_extras_carry_the_app(normalise: Normaliser) -> None:
    payment = _normalised(normalise, MOBILE_APP)
    assert (payment.app_id, payment.app_version, payment.app_os) == ("traffic", "4.2.1", "ios")
    assert (payment.kiosk_id, payment.kiosk_site) == (None, None)


def test_kiosk_extras_carry_the_kiosk(normalise: Normaliser) -> None:
    payment = _normalised(normalise, _with(KIOSK, "site", "مدينة عيسى"))
    assert (payment.kiosk_id, payment.kiosk_site) == ("KSK-017", "مدينة عيسى")
    assert (payment.app_id, payment.app_version, payment.app_os) == (None, None, None)


def _content_diff(first: bytes, second: bytes) -> list[str]:
    """Content columns in which two events' normalised rows differ (transforms.dedup.table)."""
    ctx = RunContext(Normaliser(Pseudonymiser(KEY), load_catalogue()), "run", 0)
    a = process_block(RawBlock("a", [first], line_numbers=[1]), ctx).accepted
    b = process_block(RawBlock("b", [second], line_numbers=[1]), ctx).accepted
    return differing(a, b)[0]


@pytest.mark.parametrize("channel", sorted(BASES))
def test_identical_events_have_the_same_content(channel: str) -> None:
    assert _content_diff(BASES[channel], BASES[channel]) == []


@pytest.mark.parametrize(
    ("channel", "amount"), [("portal", 12501), ("mobile_app", "12.501"), ("kiosk", "25.001")]
)
def test_content_differs_when_the_amount_differs(channel: str, amount: int | str) -> None:
    changed = _with(BASES[channel], AMOUNT_FIELD[channel], amount)
    assert _content_diff(BASES[channel], changed) == ["amount"]


@pytest.mark.parametrize("channel", sorted(BASES))
def test_content_differs_when_the_status_differs(channel: str) -> None:
    other = {"portal": "REFUNDED", "mobile_app": "refund", "kiosk": "REFUNDED"}[channel]
    changed = _with(BASES[channel], STATUS_FIELD[channel], other)
    assert _content_diff(BASES[channel], changed) == ["status"]


def test_content_ignores_unknown_extra_fields() -> None:
    assert _content_diff(PORTAL, _with(PORTAL, "delivery_attempt", 2)) == []


@pytest.mark.parametrize("channel", sorted(BASES))
def test_to_record_gives_a_valid_payment_record(normalise: Normaliser, channel: str) -> None:
    record = _record(_normalised(normalise, BASES[channel]))
    assert isinstance(record, PaymentRecord)
    assert PaymentRecord.model_validate(record.model_dump()) == record


@pytest.mark.parametrize(
    ("payload", "amount"),
    [(PORTAL, "12.500"), (MOBILE_APP, "12.500"), (KIOSK, "25.000")],
    ids=["portal", "mobile_app", "kiosk"],
)
def test_record_amount_is_decimal_with_three_places(
    normalise: Normaliser, payload: bytes, amount: str
) -> None:
    record_amount = _record(_normalised(normalise, payload)).amount
    assert isinstance(record_amount, Decimal)
    assert str(record_amount) == amount
    assert record_amount.as_tuple().exponent == -3


@pytest.mark.parametrize("payload", [PORTAL, KIOSK], ids=["portal", "kiosk"])
def test_record_occurred_at_is_aware_utc(normalise: Normaliser, payload: bytes) -> None:
    occurred_at = _record(_normalised(normalise, payload)).occurred_at
    assert occurred_at.utcoffset() is not None
    assert occurred_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert occurred_at == CONTRACT_INSTANT


def test_record_event_date_is_the_bahrain_date(normalise: Normaliser) -> None:
    payment = _normalised(normalise, _with(KIOSK, "local_time", "2017-07-01 02:00:00"))
    event_date = _record(payment).event_date
    assert type(event_date) is date
    assert event_date == date(2017, 7, 1)


def test_record_carries_lineage(normalise: Normaliser) -> None:
    record = _record(_normalised(normalise, PORTAL))
    assert record.run_id == RUN_ID
    assert record.source_file == "in/a.jsonl"
    assert record.source_line is None
    assert record.schema_version == SCHEMA_VERSION
    assert record.ingested_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "payload",
    [PORTAL, MOBILE_APP, _with(_with(KIOSK, "cpr", CPR), "card", PAN)],
    ids=["portal", "mobile_app", "kiosk"],
)
def test_record_json_never_contains_the_cpr_or_card_number(
    normalise: Normaliser, payload: bytes
) -> None:
    text = _record(_normalised(normalise, payload)).model_dump_json()
    assert CPR not in text
    assert PAN not in text
