"""Streaming composites around the core transform: de-duplication with expiring state, and
live per-channel aggregates in event-time windows.

De-duplication takes Arrow blocks of accepted rows, keyed into a few state buckets; the live
aggregates take LivePayments (pre-summed per window by `live_partials`). Windowing, triggers,
lateness and state live inside the composites with their parameters, so tests drive them
with TestStream and no Pub/Sub.
"""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.coders import BytesCoder, StrUtf8Coder
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.enums import RejectCode
from schemas.timekeeping import bahrain_day
from transforms import stats as st
from transforms.aggregate import fils_of, sums
from transforms.blocks import rejected_table
from transforms.columnar import ArrowBlock, decode_ipc, plain_ipc
from transforms.dedup import RecentIds, against_recent, conflict_rejections

DEFAULT_WINDOW_SECONDS = 60
DEFAULT_EARLY_FIRING_SECONDS = 10
# Late payments update the live figures for a few hours; after that the nightly batch
# aggregates (authoritative) carry them. The payment itself is never dropped: Parquet
# writing does not go through these windows.
DEFAULT_ALLOWED_LATENESS_SECONDS = 3 * 3600
DEFAULT_DEDUP_HORIZON_SECONDS = 24 * 3600
# Enough keys for Dataflow to spread de-duplication over workers; few enough that the local
# runner's per-key costs stay small.
DEFAULT_DEDUP_BUCKETS = 4


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
            >> beam.Map(lambda p: ((p.channel, p.status), (p.payments, p.amount_fils)))
            | "SumPerChannelStatus" >> beam.CombinePerKey(_add_pair)
            | "WithWindowAndPane" >> beam.ParDo(_AsLiveAggregate())
        )


_RECENT = userstate.BagStateSpec("recent", BytesCoder())
_VERSION = userstate.ReadModifyWriteStateSpec("version", StrUtf8Coder())
_IDLE = userstate.TimerSpec("idle", TimeDomain.REAL_TIME)
# Beam finds state and timers through these parameter defaults.
_RECENT_PARAM = beam.DoFn.StateParam(_RECENT)
_VERSION_PARAM = beam.DoFn.StateParam(_VERSION)
_IDLE_PARAM = beam.DoFn.TimerParam(_IDLE)
# Compact the stored chunks once this share of what they hold has expired.
_COMPACT_EXPIRED_SHARE = 0.25
# What this process knows of each bucket's state, by (step, bucket): valid only while the
# state's version is the one it was built for. It spares rebuilding the index of every id
# in the horizon for each block; any other worker's write changes the version.
_MEMORY: dict[tuple[str, int], tuple[str, RecentIds]] = {}


def dedup_bucket(event_id: str, buckets: int) -> int:
    """The state bucket of an event id: stable across processes and runs (not `hash()`)."""
    return zlib.crc32(event_id.encode()) % buckets


def by_dedup_bucket(table: pa.Table, buckets: int) -> Iterator[tuple[int, ArrowBlock]]:
    """A block's rows split by the state bucket of their event_id."""
    if table.num_rows == 0:
        return
    keys = np.fromiter((dedup_bucket(i, buckets) for i in table["event_id"].to_pylist()), np.int64)
    for bucket in np.unique(keys).tolist():
        yield bucket, ArrowBlock.of(table.filter(pa.array(keys == bucket)))


class DeduplicateBlocksFn(beam.DoFn):  # type: ignore[misc]
    """(bucket, ArrowBlock of accepted rows) -> the rows whose event_id is new (main), rejected
    conflicts (ArrowBlocks, tag `rejected`) and duplicate/conflict counts (tag `stats`).

    State is kept per bucket of ids, not per event id: the local runner scans every key's
    timers on each step and starts a bundle per key, which held a per-id design to ~40
    events/s. A bucket's state is append-only chunks of the ids it accepted (a bag: each block
    writes only its own new ids), indexed in memory between blocks (`RecentIds`). Expired ids
    are forgotten as blocks arrive and the chunks compacted once a quarter of them expired; a
    bucket idle for a whole horizon is cleared by its timer.
    """

    def __init__(
        self, run_id: str, horizon_seconds: int, now: Callable[[], Timestamp] = Timestamp.now
    ) -> None:
        self._run_id = run_id
        self._horizon = horizon_seconds
        self._now = now  # the runner's processing-time clock; tests give TestStream's
        self._step = uuid.uuid4().hex  # survives pickling: names this step in _MEMORY
        self._slice = max(1, horizon_seconds // 16)  # ids expire in sixteenths of the horizon

    def _recent(self, bucket: int, stored: Any, version: Any, cutoff: int) -> RecentIds:
        known = _MEMORY.get((self._step, bucket))
        current = version.read()
        if known is not None and current is not None and known[0] == current:
            return known[1]
        chunks = (decode_ipc(chunk) for chunk in stored.read())
        return RecentIds.of(chunks, cutoff, self._slice)

    def process(
        self,
        element: tuple[int, ArrowBlock],
        stored: Any = _RECENT_PARAM,
        version: Any = _VERSION_PARAM,
        idle: Any = _IDLE_PARAM,
    ) -> Iterator[Any]:
        bucket, block = element
        now = self._now()
        seconds = int(now.micros // 1_000_000)
        cutoff = seconds - self._horizon
        recent = self._recent(bucket, stored, version, cutoff)
        recent.expire(cutoff)
        result, chunk = against_recent(block.table(), recent, seconds)
        if chunk.num_rows:
            ipc = plain_ipc(chunk)
            stored.add(ipc)
            recent.add(decode_ipc(ipc))  # shares the stored bytes: no second copy
        if recent.expired_since_compaction > _COMPACT_EXPIRED_SHARE * max(len(recent), 1):
            ipc = plain_ipc(recent.table())  # rewrite what is still remembered as one chunk
            stored.clear()
            stored.add(ipc)
            recent = RecentIds.of([decode_ipc(ipc)], cutoff, self._slice)
        written = uuid.uuid4().hex
        version.write(written)
        _MEMORY[(self._step, bucket)] = (written, recent)
        idle.set(now + Duration(seconds=self._horizon))
        if result.winners.num_rows:
            yield ArrowBlock.of(result.winners)
        stats: Counter[str] = Counter(result.stats)
        if result.conflicts.num_rows:
            table = rejected_table(conflict_rejections(result), self._run_id, now.micros)
            yield pvalue.TaggedOutput("rejected", ArrowBlock.of(table))
            for channel in result.conflicts["channel"].to_pylist():
                stats[st.rejected_key(channel, RejectCode.DUPLICATE_CONFLICT.value)] += 1
        if stats:
            yield pvalue.TaggedOutput("stats", dict(stats))

    @userstate.on_timer(_IDLE)  # type: ignore[untyped-decorator]
    def expire(self, stored: Any = _RECENT_PARAM, version: Any = _VERSION_PARAM) -> None:
        stored.clear()
        version.clear()


class DeduplicateBlocks(beam.PTransform):  # type: ignore[misc]
    """ArrowBlocks of accepted rows -> blocks of first deliveries (`first`), rejected conflicts
    (`rejected`) and stats (`stats`), remembering each event_id for the horizon."""

    def __init__(
        self,
        run_id: str,
        horizon_seconds: int = DEFAULT_DEDUP_HORIZON_SECONDS,
        buckets: int = DEFAULT_DEDUP_BUCKETS,
        now: Callable[[], Timestamp] = Timestamp.now,
    ) -> None:
        super().__init__()
        self._fn = DeduplicateBlocksFn(run_id, horizon_seconds, now)
        self._buckets = buckets

    def expand(self, blocks: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        buckets = self._buckets
        return (
            blocks
            | "ByIdBucket"
            >> beam.FlatMap(lambda b: by_dedup_bucket(b.table(), buckets)).with_output_types(
                tuple[int, ArrowBlock]  # an int key: deterministically encoded for state
            )
            | "FirstPerEventId"
            >> beam.ParDo(self._fn).with_outputs("rejected", "stats", main="first")
        )
