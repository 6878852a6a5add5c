"""Streaming composites driven by TestStream: live aggregates per window, expiring dedup."""

from __future__ import annotations

from datetime import date, datetime, timezone

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.arrow import payment_schema
from schemas.catalogue import load_catalogue
from schemas.money import MAX_FILS
from tests.samples import KIOSK_EVENT, MOBILE_EVENT, PORTAL_EVENT, TEST_KEY, run_of
from transforms.core import stats as st
from transforms.core.blocks import RunContext, process_block
from transforms.core.columnar import ArrowBlock, decimal_from_fils
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.streaming.dedup import DeduplicateBlocks
from transforms.streaming.live import LiveAggregates, LivePayment, live_partials

CTX = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), "run", 0)
PORTAL_ID = "portal:PTL-2017-000123456"
MOBILE_ID = "mobile_app:3f0c2a9e-6c1b-4d3e-9a51-0b7d5f9e2c11"
KIOSK_ID = "kiosk:KSK-017:40213"
# 30 June 2017, 20:00 UTC (23:00 in Bahrain): minutes from here in the tests.
BASE = int(datetime(2017, 6, 30, 20, 0, tzinfo=timezone.utc).timestamp())


def _at(minute: float, channel: str = "portal", fils: int = 1000) -> TimestampedValue:
    seconds = BASE + minute * 60
    payment = LivePayment(channel, "SUCCESS", fils, int(seconds * 1_000_000))
    return TimestampedValue(payment, seconds)


def _streaming() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def _figures() -> beam.PTransform:
    """(window minute after BASE, channel, payments, fils, pane timing) of each pane."""
    return beam.Map(
        lambda a: (
            a.window_start_micros // 60_000_000 - BASE // 60,
            a.channel,
            a.payments,
            a.amount_fils,
            a.pane_timing,
        )
    )


def test_out_of_order_payments_count_in_their_own_window() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([_at(1.5), _at(0.5), _at(1.2), _at(0.1)])
        .advance_watermark_to(BASE + 180)
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        figures = p | stream | LiveAggregates(early_firing_seconds=3600) | _figures()
        assert_that(
            figures,
            equal_to([(0, "portal", 2, 2000, "ON_TIME"), (1, "portal", 2, 2000, "ON_TIME")]),
        )


def test_a_late_payment_within_the_lateness_updates_its_window() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([_at(0.5)])
        .advance_watermark_to(BASE + 120)
        .add_elements([_at(0.7, fils=500)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        figures = p | stream | LiveAggregates(early_firing_seconds=3600) | _figures()
        assert_that(
            figures,
            equal_to([(0, "portal", 1, 1000, "ON_TIME"), (0, "portal", 2, 1500, "LATE")]),
        )


def test_a_payment_later_than_the_lateness_does_not_change_the_figures() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([_at(0.5)])
        .advance_watermark_to(BASE + 60 + 600)
        .add_elements([_at(0.7, fils=500)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        figures = (
            p
            | stream
            | LiveAggregates(allowed_lateness_seconds=300, early_firing_seconds=3600)
            | _figures()
        )
        assert_that(figures, equal_to([(0, "portal", 1, 1000, "ON_TIME")]))


def test_windows_either_side_of_bahrain_midnight_carry_their_bahrain_day() -> None:
    # 20:59:30 UTC is 23:59:30 on 30 June in Bahrain; 21:00:30 UTC is 00:00:30 on 1 July.
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([_at(59.5), _at(60.5)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        days = (
            p
            | stream
            | LiveAggregates(early_firing_seconds=3600)
            | beam.Map(lambda a: (a.event_date, a.payments))
        )
        assert_that(days, equal_to([(date(2017, 6, 30), 1), (date(2017, 7, 1), 1)]))


def _rows(*payloads: bytes, first_message: int = 1) -> ArrowBlock:
    """Accepted rows of the given raw events, as if pulled from Pub/Sub in one message each."""
    ids = [str(n) for n in range(first_message, first_message + len(payloads))]
    result = process_block(RawBlock("sub", list(payloads), message_ids=ids), CTX)
    assert result.accepted.num_rows == len(payloads), result.rejected.to_pylist()
    return ArrowBlock.of(result.accepted)


def _origins(blocks: beam.PCollection) -> beam.PCollection:
    """(event_id, message id) of each row of some blocks."""
    return blocks | beam.FlatMap(
        lambda b: zip(
            b.table()["event_id"].to_pylist(),
            b.table()["source_message_id"].to_pylist(),
            strict=True,
        )
    )


def test_a_redelivery_in_a_later_bundle_is_a_duplicate_not_a_second_payment() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([_rows(PORTAL_EVENT, MOBILE_EVENT)])
        .advance_watermark_to(BASE + 300)
        .add_elements([_rows(PORTAL_EVENT, first_message=3)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        result = p | stream | DeduplicateBlocks(run_of())
        first = [(PORTAL_ID, "1"), (MOBILE_ID, "2")]
        assert_that(_origins(result.first), equal_to(first), label="first")
        duplicates = {st.duplicate_key("portal", "in_input"): 1}
        assert_that(result.stats, equal_to([duplicates]), label="stats")


def test_the_same_id_with_other_content_is_a_rejected_conflict() -> None:
    stream = (
        TestStream()
        .add_elements([_rows(KIOSK_EVENT)])
        .add_elements([_rows(KIOSK_EVENT.replace(b"25.000", b"26.000"), first_message=2)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        result = p | stream | DeduplicateBlocks(run_of())
        assert_that(_origins(result.first), equal_to([(KIOSK_ID, "1")]), label="first")
        rejected = result.rejected | beam.FlatMap(
            lambda b: zip(
                b.table()["error_code"].to_pylist(), b.table()["reason"].to_pylist(), strict=True
            )
        )
        reason = f"event_id {KIOSK_ID} was already accepted; this one differs from the first "
        reason += "delivery (message 1)"
        assert_that(rejected, equal_to([("DUPLICATE_CONFLICT", reason)]), label="rejected")


def test_the_memory_of_an_idle_bucket_expires_after_the_horizon() -> None:
    stream = (
        TestStream()
        .add_elements([_rows(MOBILE_EVENT)])
        .advance_processing_time(120)
        .add_elements([_rows(MOBILE_EVENT, first_message=2)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        # TestStream's processing-time clock starts at the epoch and moves only when told to.
        result = (
            p | stream | DeduplicateBlocks(run_of(), horizon_seconds=60, now=lambda: Timestamp(0))
        )
        first = [(MOBILE_ID, "1"), (MOBILE_ID, "2")]
        assert_that(_origins(result.first), equal_to(first), label="first")


def test_pre_summed_partials_count_every_payment_in_its_own_window() -> None:
    block = _rows(PORTAL_EVENT, MOBILE_EVENT, KIOSK_EVENT)
    partials = sorted(
        (p.value.channel, p.value.payments, p.value.amount_fils, p.timestamp)
        for p in live_partials(block.table(), 60)
    )
    # The portal and the mobile app payment share 30 June 2017 18:15:03 UTC; the kiosk's
    # local 21:15:03 is 18:15:03 UTC too. Each is stamped with its window's start.
    start = Timestamp(int(datetime(2017, 6, 30, 18, 15, tzinfo=timezone.utc).timestamp()))
    assert partials == [
        ("kiosk", 1, 25_000, start),
        ("mobile_app", 1, 12_500, start),
        ("portal", 1, 12_500, start),
    ]


def test_pre_summed_partials_add_up_payments_of_one_window_and_channel() -> None:
    other = PORTAL_EVENT.replace(b"000123456", b"000123457")
    block = _rows(PORTAL_EVENT, other)
    partials = [(p.value.payments, p.value.amount_fils) for p in live_partials(block.table(), 60)]
    assert partials == [(2, 25_000)]


# The largest amount a decimal(18,3) column holds: ten of them add up past int64.
DECIMAL_18_3_MAX_FILS = 10**18 - 1


def _payments_at_base(amounts_fils: list[int]) -> pa.Table:
    """Accepted portal SUCCESS rows at BASE with these amounts: what live_partials reads."""
    n = len(amounts_fils)
    fields = [payment_schema().field(name) for name in ("channel", "status", "amount")]
    return pa.Table.from_arrays(
        [
            pa.array([BASE * 1_000_000] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(["portal"] * n),
            pa.array(["SUCCESS"] * n),
            decimal_from_fils(amounts_fils),
        ],
        schema=pa.schema([pa.field("occurred_at", pa.timestamp("us", tz="UTC")), *fields]),
    )


def test_pre_summed_partials_of_20_largest_payments_are_the_exact_sum() -> None:
    partials = [
        (p.value.payments, p.value.amount_fils)
        for p in live_partials(_payments_at_base([MAX_FILS] * 20), 60)
    ]
    assert partials == [(20, 20 * MAX_FILS)]


def test_pre_summed_partials_beyond_int64_are_exact() -> None:
    table = _payments_at_base([DECIMAL_18_3_MAX_FILS] * 10)
    (partial,) = live_partials(table, 60)
    assert partial.value.amount_fils == 10 * DECIMAL_18_3_MAX_FILS > 2**63


def test_live_window_sum_beyond_int64_is_exact() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([_at(0.1, fils=2**62), _at(0.2, fils=2**62), _at(0.3, fils=2**62)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        figures = p | stream | LiveAggregates(early_firing_seconds=3600) | _figures()
        assert_that(figures, equal_to([(0, "portal", 3, 3 * 2**62, "ON_TIME")]))
