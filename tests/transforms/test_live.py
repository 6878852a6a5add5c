"""Streaming composites driven by TestStream: live aggregates per window, expiring dedup."""

from __future__ import annotations

from datetime import date, datetime, timezone

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.live import DeduplicateById, LiveAggregates, LivePayment

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


def _keyed(event_id: str, content: str, minute: float) -> TimestampedValue:
    return TimestampedValue((event_id, (content, f"{event_id}@{minute}")), BASE + minute * 60)


def test_a_redelivery_in_a_later_window_is_a_duplicate_not_a_second_payment() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(BASE)
        .add_elements([_keyed("portal:1", "same", 0.5), _keyed("portal:2", "x", 0.6)])
        .advance_watermark_to(BASE + 300)
        .add_elements([_keyed("portal:1", "same", 4.5)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        result = p | stream | DeduplicateById()
        assert_that(result.first, equal_to(["portal:1@0.5", "portal:2@0.6"]), label="first")
        assert_that(result.duplicates, equal_to(["portal:1@4.5"]), label="duplicates")


def test_the_same_id_with_other_content_is_a_conflict() -> None:
    stream = (
        TestStream()
        .add_elements([_keyed("kiosk:K:1", "25.000", 0.5)])
        .add_elements([_keyed("kiosk:K:1", "26.000", 0.6)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        result = p | stream | DeduplicateById()
        assert_that(result.first, equal_to(["kiosk:K:1@0.5"]), label="first")
        assert_that(result.conflicts, equal_to([("kiosk:K:1@0.6", "25.000")]), label="conflicts")


def test_the_memory_of_an_id_expires_after_the_horizon() -> None:
    stream = (
        TestStream()
        .add_elements([_keyed("app:1", "same", 0.5)])
        .advance_processing_time(120)
        .add_elements([_keyed("app:1", "same", 0.6)])
        .advance_watermark_to_infinity()
    )
    with _streaming() as p:
        # TestStream's processing-time clock starts at the epoch and moves only when told to.
        result = p | stream | DeduplicateById(horizon_seconds=60, now=lambda: Timestamp(0))
        assert_that(result.first, equal_to(["app:1@0.5", "app:1@0.6"]), label="first")
