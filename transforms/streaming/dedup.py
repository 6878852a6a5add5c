"""Streaming de-duplication with expiring state: accepted blocks keyed into a few state
buckets of recently seen ids (`transforms.dedup.recent`), so that a redelivered message never
becomes a second row. Tests drive it with TestStream and no Pub/Sub.
"""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue
from apache_beam.coders import BytesCoder, StrUtf8Coder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.run import Run
from transforms.core import stats as st
from transforms.core.columnar import ArrowBlock, decode_ipc, plain_ipc
from transforms.core.outputs import Output
from transforms.dedup.recent import RecentIds, against_recent, id_hashes
from transforms.dedup.table import Deduplicated, rejected_conflicts
from transforms.streaming import acks

DEFAULT_DEDUP_HORIZON_SECONDS = 24 * 3600
# Enough keys for Dataflow to spread de-duplication over workers; few enough that the local
# runner's per-key costs stay small.
DEFAULT_DEDUP_BUCKETS = 4


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

    With `settle` (deferred acks, local runner), a duplicate's stats carry its read and its
    message id: nothing else will be written of it, so it is settled once they are committed.
    """

    def __init__(
        self,
        run: Run,
        horizon_seconds: int,
        now: Callable[[], Timestamp] = Timestamp.now,
        settle: bool = False,
    ) -> None:
        self._run = run
        self._settle = settle
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
        if self._settle:
            duplicates = settled_duplicates(block.table(), result, recent)
            stats = Counter(acks.with_settled(st.with_reads(stats), duplicates))
        if result.conflicts.num_rows:
            rejected, counts = rejected_conflicts(result, self._run)
            yield pvalue.TaggedOutput(Output.REJECTED.value, ArrowBlock.of(rejected))
            stats.update(counts)
        if stats:
            yield pvalue.TaggedOutput(Output.STATS.value, dict(stats))

    @userstate.on_timer(_IDLE)  # type: ignore[untyped-decorator]
    def expire(self, stored: Any = _RECENT_PARAM, version: Any = _VERSION_PARAM) -> None:
        stored.clear()
        version.clear()


def settled_duplicates(table: pa.Table, result: Deduplicated, recent: RecentIds) -> list[str]:
    """The message ids this step ends: the block's rows it neither passed on (winners) nor
    rejected (conflicts). A row redelivered under its first delivery's own message id (its
    deadline ran out in flight) is left out: acknowledging that id now would drop the first
    delivery too before its row is written; the payments writer settles it."""
    ended = acks.not_in(acks.not_in(acks.message_ids(table), result.winners), result.conflicts)
    if not ended:
        return []
    rows = table.filter(pc.is_in(table["source_message_id"], value_set=pa.array(ended)))
    hashes = id_hashes(rows).to_pylist()
    firsts = [
        recent.get(h, event_id)
        for h, event_id in zip(hashes, rows["event_id"].to_pylist(), strict=True)
    ]
    in_flight = {
        message_id
        for first, message_id in zip(firsts, rows["source_message_id"].to_pylist(), strict=True)
        if first is not None and first.first_message_id == message_id
    }
    return [message_id for message_id in ended if message_id not in in_flight]


class DeduplicateBlocks(beam.PTransform):  # type: ignore[misc]
    """ArrowBlocks of accepted rows -> blocks of first deliveries (`first`), rejected conflicts
    (`rejected`) and stats (`stats`), remembering each event_id for the horizon."""

    def __init__(
        self,
        run: Run,
        horizon_seconds: int = DEFAULT_DEDUP_HORIZON_SECONDS,
        buckets: int = DEFAULT_DEDUP_BUCKETS,
        now: Callable[[], Timestamp] = Timestamp.now,
        settle: bool = False,
    ) -> None:
        super().__init__()
        self._fn = DeduplicateBlocksFn(run, horizon_seconds, now, settle)
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
            >> beam.ParDo(self._fn).with_outputs(
                Output.REJECTED.value, Output.STATS.value, main=Output.FIRST.value
            )
        )
