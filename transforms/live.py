"""Streaming composites around the core transform: de-duplication with expiring state, and
live per-channel aggregates in event-time windows.

Both take per-payment elements; windowing, triggers, lateness and state live inside the
composites with their parameters, so tests drive them with TestStream and no Pub/Sub.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.timekeeping import bahrain_day

DEFAULT_WINDOW_SECONDS = 60
DEFAULT_EARLY_FIRING_SECONDS = 10
# Late payments update the live figures for a few hours; after that the nightly batch
# aggregates (authoritative) carry them. The payment itself is never dropped: Parquet
# writing does not go through these windows.
DEFAULT_ALLOWED_LATENESS_SECONDS = 3 * 3600
DEFAULT_DEDUP_HORIZON_SECONDS = 24 * 3600


class LivePayment(NamedTuple):
    """What the live figures need of an accepted payment."""

    channel: str
    status: str
    amount_fils: int
    occurred_micros: int


class LiveAggregate(NamedTuple):
    """Payments and amount of one (channel, status) in one event-time window, as of a pane."""

    window_start_micros: int
    window_end_micros: int
    event_date: date  # Bahrain day of the window start
    channel: str
    status: str
    payments: int
    amount_fils: int
    pane_timing: str  # EARLY | ON_TIME | LATE
    pane_index: int


def _add_pair(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    count = fils = 0
    for n, amount in pairs:
        count += n
        fils += amount
    return count, fils


class _AsLiveAggregate(beam.DoFn):  # type: ignore[misc]
    def process(
        self,
        element: tuple[tuple[str, str], tuple[int, int]],
        win: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[LiveAggregate]:
        (channel, status), (payments, fils) = element
        start, end = win.start.micros, win.end.micros
        timing = {0: "EARLY", 1: "ON_TIME", 2: "LATE"}.get(pane.timing, "UNKNOWN")
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
            >> beam.Map(lambda p: ((p.channel, p.status), (1, p.amount_fils)))
            | "SumPerChannelStatus" >> beam.CombinePerKey(_add_pair)
            | "WithWindowAndPane" >> beam.ParDo(_AsLiveAggregate())
        )


_FIRST_CONTENT = userstate.ReadModifyWriteStateSpec("first_content", PickleCoder())
_EXPIRY = userstate.TimerSpec("expiry", TimeDomain.REAL_TIME)
# Beam finds state and timers through these parameter defaults.
_FIRST_PARAM = beam.DoFn.StateParam(_FIRST_CONTENT)
_EXPIRY_PARAM = beam.DoFn.TimerParam(_EXPIRY)


class DeduplicateByIdFn(beam.DoFn):  # type: ignore[misc]
    """(event_id, (content, item)) -> item the first time an id is seen; later items with the
    same content are counted as duplicates (tag `duplicates`), others are conflicts (tag
    `conflicts`, with the first content). The memory of an id expires after the horizon."""

    def __init__(self, horizon_seconds: int, now: Callable[[], Timestamp] = Timestamp.now) -> None:
        self._horizon = horizon_seconds
        self._now = now  # the runner's processing-time clock; tests give TestStream's

    def process(
        self,
        element: tuple[str, tuple[Any, Any]],
        first: Any = _FIRST_PARAM,
        expiry: Any = _EXPIRY_PARAM,
    ) -> Iterator[Any]:
        _, (content, item) = element
        seen = first.read()
        if seen is None:
            first.write(content)
            expiry.set(self._now() + Duration(seconds=self._horizon))
            yield item
        elif seen == content:
            yield pvalue.TaggedOutput("duplicates", item)
        else:
            yield pvalue.TaggedOutput("conflicts", (item, seen))

    @userstate.on_timer(_EXPIRY)  # type: ignore[untyped-decorator]
    def expire(self, first: Any = _FIRST_PARAM) -> None:
        first.clear()


class DeduplicateById(beam.PTransform):  # type: ignore[misc]
    """Keyed (event_id, (content, item)) -> first items (main), `duplicates`, `conflicts`."""

    def __init__(
        self,
        horizon_seconds: int = DEFAULT_DEDUP_HORIZON_SECONDS,
        now: Callable[[], Timestamp] = Timestamp.now,
    ) -> None:
        super().__init__()
        self._fn = DeduplicateByIdFn(horizon_seconds, now)

    def expand(self, keyed: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return keyed | "FirstPerEventId" >> beam.ParDo(self._fn).with_outputs(
            "duplicates", "conflicts", main="first"
        )
