"""Streaming composites around the core transform: de-duplication with expiring state, and
live per-channel aggregates in event-time windows.

De-duplication takes Arrow blocks of accepted rows, keyed into a few state buckets; the live
aggregates take LivePayments (pre-summed per window by `live_partials`). Windowing, triggers,
lateness and state live inside the composites with their parameters, so tests drive them
with TestStream and no Pub/Sub.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms import trigger, window
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration

from schemas.enums import PaneTiming
from schemas.timekeeping import bahrain_day
from transforms.core.aggregate import fils_of, sums

DEFAULT_WINDOW_SECONDS = 60
DEFAULT_EARLY_FIRING_SECONDS = 10
# Late payments update the live figures for a few hours; after that the nightly batch
# aggregates (authoritative) carry them. The payment itself is never dropped: Parquet
# writing does not go through these windows.
DEFAULT_ALLOWED_LATENESS_SECONDS = 3 * 3600


class LivePayment(NamedTuple):
    """What the live figures need of an accepted payment."""

    channel: str
    status: str
    amount_fils: int
    occurred_micros: int
    payments: int = 1  # more than one: pre-summed payments of one window


def live_partials(table: pa.Table, window_seconds: int) -> Iterator[TimestampedValue]:
    """Accepted rows -> one LivePayment per (window, channel, status) present, stamped with the
    window start: the windowed sums then see a handful of elements per block, not one per
    payment, and every payment still counts in the window of its own event time."""
    if table.num_rows == 0:
        return
    micros = table["occurred_at"].cast(pa.int64()).to_numpy()
    width = window_seconds * 1_000_000
    starts = pa.array(micros - micros % width, pa.int64())
    keyed = pa.table(
        {
            "start": starts,
            "channel": table["channel"],
            "status": table["status"],
            "amount": table["amount"],
        }
    )
    # Exact decimal(38,3) sums taken as Python ints: no int64 fils to wrap around.
    for row in sums(keyed, ["start", "channel", "status"]).to_pylist():
        payment = LivePayment(
            row["channel"], row["status"], fils_of(row["amount"]), row["start"], row["payments"]
        )
        yield TimestampedValue(payment, row["start"] / 1_000_000)


class LiveAggregate(NamedTuple):
    """Payments and amount of one (channel, status) in one event-time window, as of a pane."""

    window_start_micros: int
    window_end_micros: int
    event_date: date  # Bahrain day of the window start
    channel: str
    status: str
    payments: int
    amount_fils: int
    pane_timing: PaneTiming
    pane_index: int


def _add_pair(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    count = fils = 0
    for n, amount in pairs:
        count += n
        fils += amount
    return count, fils


# Beam's PaneInfoTiming values, by number.
_TIMINGS = {0: PaneTiming.EARLY, 1: PaneTiming.ON_TIME, 2: PaneTiming.LATE}


class _AsLiveAggregate(beam.DoFn):  # type: ignore[misc]
    def process(
        self,
        element: tuple[tuple[str, str], tuple[int, int]],
        win: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[LiveAggregate]:
        (channel, status), (payments, fils) = element
        start, end = win.start.micros, win.end.micros
        timing = _TIMINGS.get(pane.timing, PaneTiming.UNKNOWN)
        yield LiveAggregate(
            start, end, bahrain_day(start), channel, status, payments, fils, timing, pane.index
        )


class LiveAggregates(beam.PTransform):  # type: ignore[misc]
    """Timestamped LivePayments -> LiveAggregate panes per (window, channel, status).

    Fixed event-time windows with early firings while the window is open, an on-time pane when
    the watermark passes its end, and a late pane for each late payment within the allowed
    lateness; panes accumulate, so each one carries the window's whole figure so far.
    """

    def __init__(
        self,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        allowed_lateness_seconds: int = DEFAULT_ALLOWED_LATENESS_SECONDS,
        early_firing_seconds: int = DEFAULT_EARLY_FIRING_SECONDS,
    ) -> None:
        super().__init__()
        self._window = window_seconds
        self._lateness = allowed_lateness_seconds
        self._early = early_firing_seconds

    def expand(self, payments: beam.PCollection) -> beam.PCollection:
        return (
            payments
            | "FixedEventTimeWindows"
            >> beam.WindowInto(
                window.FixedWindows(self._window),
                trigger=trigger.AfterWatermark(
                    early=trigger.AfterProcessingTime(self._early),
                    late=trigger.AfterCount(1),
                ),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=Duration(seconds=self._lateness),
            )
            | "KeyByChannelStatus"
            >> beam.Map(lambda p: ((p.channel, p.status), (p.payments, p.amount_fils)))
            | "SumPerChannelStatus" >> beam.CombinePerKey(_add_pair)
            | "WithWindowAndPane" >> beam.ParDo(_AsLiveAggregate())
        )
