"""Batch sinks around the core transform: de-duplicate, stage partitions, commit the run.

Rows reach their partition through fragment files, not through a Beam shuffle: the local
runner holds a whole GroupByKey in memory (six times the data, measured), so each block's
rows are spilled to `_staging/<run_id>/fragments/` and only their paths are grouped by
partition for writing; the event index of each channel is grouped as the paths of files too
(`fragment-index/`: each bundle's fragments' fingerprints). On Dataflow this also keeps the
shuffle small.

Commit protocol: every file is first written under `_staging/<run_id>/`; one final step moves
them into place, removes this input's superseded files, then writes the run manifest and its
`_SUCCESS` marker. A run that dies before that step leaves the published output untouched.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from schemas import layout
from schemas.arrow import payment_schema
from schemas.timekeeping import EPOCH_DATE
from transforms.core import stats as st
from transforms.core.aggregate import merge_month, month_schema
from transforms.core.columnar import ArrowBlock, concat_blocks, decode_ipc, plain_ipc
from transforms.core.outputs import Output
from transforms.dedup.fingerprints import distinct_and_moved, fingerprints, in_sorted
from transforms.dedup.table import (
    INDEX_COLUMNS,
    cross_partition_losers,
    deduplicate,
    drop_losers,
    index_schema,
    loser_schema,
    merge_results,
    rejected_conflicts,
    split_by_partition,
    stored_elsewhere_losers,
)
from transforms.storage.committed import current_aggregates, run_committed
from transforms.storage.files import list_files, read_bytes, read_parquet, write_bytes
from transforms.storage.partitions import (
    StagedFile,
    WriteSettings,
    scanned,
    stage,
    stored_days,
    write_partition,
)

log = logging.getLogger(__name__)
# A staging progress line a worker logs every so many partitions, or sooner once this many
# seconds have passed since its last one: a big run's partitions take tens of seconds.
_PROGRESS_PARTITIONS = 100
_PROGRESS_SECONDS = 10.0
_PRINTS = "prints"


class FragmentPrints(NamedTuple):
    """What the search for moved redeliveries needs of a fragment without reading it: its
    path, its day (days since 1970-01-01) and the fingerprints of its rows' event ids in row
    order (`transforms.dedup.fingerprints`, uint64 bytes, 8 a row)."""

    path: str
    day: int
    prints: bytes


def _losers_by_partition(
    element: tuple[str, Iterable[FragmentPrints]], settings: WriteSettings
) -> list[tuple[tuple[str, str], ArrowBlock]]:
    """Rows of one channel that lose to a row of another partition: of this run (an event
    delivered into two days), or stored by an earlier run (`stored_days`).

    One step for the whole channel, so it runs on one worker: it reads nothing but the
    fingerprints the spill took of each fragment (on every worker at once; reading the
    fragments here cost the 1M-event run 1.6 s of wall time with the other worker idle),
    then decodes only the fragments holding one of the rare events that fingerprints say may be
    in more than one partition, and compares those rows by their ids.
    """
    channel, fragments = element
    unique = sorted(set(fragments))  # a retried bundle reports the same fragment again
    prints = [np.frombuffer(f.prints, np.uint64) for f in unique]
    every = np.concatenate([np.empty(0, np.uint64), *prints])
    days = np.repeat(np.array([f.day for f in unique], np.int32), [len(p) for p in prints])
    bounds = np.cumsum([0, *map(len, prints)])
    del prints
    distinct, moved = distinct_and_moved(every, days)
    del days
    stored = stored_days(settings.root, channel, distinct, settings.is_own)
    del distinct
    wanted = np.union1d(moved, fingerprints(stored["event_id"]))
    if len(wanted) == 0:
        return []
    index, picked = [index_schema().empty_table()], [np.empty(0, np.uint64)]
    for fragment, start, end in zip(unique, bounds[:-1], bounds[1:], strict=True):
        own = every[start:end]
        keep = in_sorted(own, wanted)
        if not keep.any():
            continue
        rows = decode_ipc(read_bytes(fragment.path), INDEX_COLUMNS)
        index.append(rows.filter(keep))
        picked.append(own[keep])
    candidates = pa.concat_tables(index)
    in_run = candidates.filter(in_sorted(np.concatenate(picked), moved))
    losers = pa.concat_tables(
        [cross_partition_losers(in_run), stored_elsewhere_losers(candidates, stored)]
    )
    return [(key, ArrowBlock.of(rows)) for key, rows in split_by_partition(losers)]


def spill(block: ArrowBlock, path_of: Callable[[str], str]) -> str:
    """Write a block to the fragment file `path_of(name)`, and return its path. The name is a
    hash of the content, so a retried bundle rewrites the same file."""
    path = path_of(hashlib.blake2b(block.ipc, digest_size=12).hexdigest())
    write_bytes(path, block.ipc)
    return path


def read_fragments(paths: Iterable[str], schema: pa.Schema) -> pa.Table:
    """The rows of the fragment files `paths` as one table of `schema`, each file once (a
    retried bundle reports the same content-named file again), in path order."""
    fragments = [decode_ipc(read_bytes(p)) for p in sorted(set(paths))]
    return pa.concat_tables([schema.empty_table(), *fragments])


class SpillFragmentFn(beam.DoFn):  # type: ignore[misc]
    """((channel, day), block) -> ((channel, day), fragment path), the block written there;
    at the end of the bundle, (channel, index path) of each channel's fragment index file
    (tagged `prints`: the FragmentPrints of the bundle's fragments, `write_fragment_index`)."""

    def __init__(self, settings: WriteSettings) -> None:
        self._settings = settings
        self._prints: dict[str, list[FragmentPrints]] = {}

    def start_bundle(self) -> None:
        self._prints = {}

    def process(self, element: tuple[tuple[str, str], ArrowBlock]) -> Iterator[Any]:
        (channel, day), block = element
        root, run_id = self._settings.root, self._settings.run_id
        path = spill(block, lambda name: layout.fragment_path(root, run_id, channel, day, name))
        prints = fingerprints(block.table(["event_id"])["event_id"]).tobytes()
        since_epoch = (date.fromisoformat(day) - EPOCH_DATE).days
        self._prints.setdefault(channel, []).append(FragmentPrints(path, since_epoch, prints))
        yield (channel, day), path

    def finish_bundle(self) -> Iterator[WindowedValue]:
        root, run_id = self._settings.root, self._settings.run_id
        for channel, fragments in sorted(self._prints.items()):
            path_of = functools.partial(layout.fragment_index_path, root, run_id, channel)
            index = write_fragment_index(fragments, path_of)
            yield pvalue.TaggedOutput(
                _PRINTS,
                WindowedValue((channel, index), GlobalWindow().max_timestamp(), [GlobalWindow()]),
            )
        self._prints = {}


_INDEX_SCHEMA = pa.schema([("path", pa.string()), ("day", pa.int32()), ("prints", pa.binary())])


def write_fragment_index(fragments: list[FragmentPrints], path_of: Callable[[str], str]) -> str:
    """Write the FragmentPrints of a bundle's fragments to one file, `path_of(name)`, named by
    its content like a fragment (a retried bundle rewrites the same file); return its path.
    One file a bundle and channel, not a Beam element a fragment: the launcher of the local
    runner held every grouped element in memory (+60 MB at 1M events)."""
    table = pa.table(
        [[f.path for f in fragments], [f.day for f in fragments], [f.prints for f in fragments]],
        schema=_INDEX_SCHEMA,
    )
    return spill(ArrowBlock(plain_ipc(table), table.num_rows), path_of)


def read_fragment_index(path: str) -> list[FragmentPrints]:
    table = decode_ipc(read_bytes(path))
    return [
        FragmentPrints(p, d, b)
        for p, d, b in zip(
            table["path"].to_pylist(),
            table["day"].to_pylist(),
            table["prints"].to_pylist(),
            strict=True,
        )
    ]


def _losers_by_index(
    element: tuple[str, Iterable[str]], settings: WriteSettings
) -> list[tuple[tuple[str, str], ArrowBlock]]:
    """`_losers_by_partition` of a channel from its fragment index files."""
    channel, indexes = element
    fragments = [f for path in sorted(set(indexes)) for f in read_fragment_index(path)]
    return _losers_by_partition((channel, fragments), settings)


class StagePartitionFn(beam.DoFn):  # type: ignore[misc]
    """((channel, day), fragment paths) -> staged files; conflicts and stats tagged.

    Drops rows whose event was first seen in another partition, keeps the first row of each
    event_id, then leaves out events an earlier run already wrote (`write_partition`).
    """

    def __init__(self, settings: WriteSettings) -> None:
        self._settings = settings
        self._unscanned: list[StagedFile] = []
        self._partitions = self._rows = 0
        self._last_line = 0.0

    def setup(self) -> None:
        self._last_line = time.monotonic()

    def start_bundle(self) -> None:
        self._unscanned = []

    def _progress(self, rows: int) -> None:
        """Count a staged partition; log this worker's totals at the progress cadence."""
        self._partitions += 1
        self._rows += rows
        now = time.monotonic()
        if self._partitions % _PROGRESS_PARTITIONS and now - self._last_line < _PROGRESS_SECONDS:
            return
        self._last_line = now
        log.info(
            "staged %s partitions (%s payment rows) in this worker",
            f"{self._partitions:,}",
            f"{self._rows:,}",
        )

    def finish_bundle(self) -> Iterator[WindowedValue]:
        """The bundle's staged files, read back and scanned together (`partitions.scanned`)."""
        for staged in scanned(self._unscanned):
            yield WindowedValue(staged, GlobalWindow().max_timestamp(), [GlobalWindow()])
        self._unscanned = []

    def process(
        self,
        element: tuple[tuple[str, str], Iterable[str]],
        moved: Mapping[tuple[str, str], Iterable[ArrowBlock]],  # a multimap: [] when absent
    ) -> Iterator[Any]:
        (channel, day), paths = element
        rows = read_fragments(paths, payment_schema())
        elsewhere = drop_losers(rows, concat_blocks(moved[(channel, day)], loser_schema()))
        within = deduplicate(elsewhere.winners)
        written = write_partition(channel, date.fromisoformat(day), within.winners, self._settings)
        self._unscanned.extend(written.staged)
        for stale in written.stale:
            yield pvalue.TaggedOutput(Output.STALE.value, stale)
        month = day[:7]
        for kind, figures in written.aggregates.items():
            yield pvalue.TaggedOutput(
                Output.AGGREGATES.value, ((kind, month), ArrowBlock.of(figures))
            )
        result = merge_results(written.result.winners, elsewhere, within, written.result)
        if result.conflicts.num_rows:
            rejected, counts = rejected_conflicts(result, self._settings.run)
            yield pvalue.TaggedOutput(Output.REJECTED.value, ArrowBlock.of(rejected))
            result.stats.update(counts)
        accepted = written.stats.get(st.accepted_key(channel), 0)
        beam.metrics.Metrics.counter("write", "accepted").inc(accepted)
        self._progress(accepted)
        beam.metrics.Metrics.counter("dedup", "duplicates").inc(
            st.total_of(result.stats, st.DUPLICATES)
        )
        beam.metrics.Metrics.counter("dedup", "conflicts").inc(result.conflicts.num_rows)
        yield pvalue.TaggedOutput(Output.STATS.value, {**written.stats, **result.stats})


class DeduplicateAndStage(beam.PTransform):  # type: ignore[misc]
    """Partition-keyed accepted blocks -> one row per event_id, staged as Parquet per Hive
    partition.

    Outputs: `staged` (StagedFile), `stale` (paths this input's earlier run wrote that are now
    superseded), `aggregates` (((kind, month), figures) of each touched partition), rejected
    conflicts and stats.
    """

    def __init__(self, settings: WriteSettings) -> None:
        super().__init__()
        self._settings = settings
        self._fn = StagePartitionFn(settings)

    def expand(self, accepted: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        spilled = accepted | "SpillToFragments" >> beam.ParDo(
            SpillFragmentFn(self._settings)
        ).with_outputs(_PRINTS, main="fragments")
        fragments = spilled.fragments
        # Ids of different channels never collide: the event index is built per channel.
        moved = (
            spilled[_PRINTS]
            | "GroupFragmentsByChannel" >> beam.GroupByKey()
            | "FindMovedRedeliveries" >> beam.FlatMap(_losers_by_index, self._settings)
        )
        return (
            fragments
            | "GroupFragmentsByPartition" >> beam.GroupByKey()
            | "StagePartition"
            >> beam.ParDo(self._fn, moved=beam.pvalue.AsMultiMap(moved)).with_outputs(
                Output.STALE.value,
                Output.AGGREGATES.value,
                Output.REJECTED.value,
                Output.STATS.value,
                main=Output.STAGED.value,
            )
        )


def stage_month(
    element: tuple[tuple[str, str], Iterable[ArrowBlock]], settings: WriteSettings
) -> list[StagedFile]:
    """Stage the month's next aggregate version: the newest committed one with this run's
    partitions replaced, the others kept (`schemas.layout.aggregate_path`)."""
    (kind, month), blocks = element
    versions = list_files(layout.aggregate_dir(settings.root, kind, month))
    newest = current_aggregates(versions, lambda run: run_committed(settings.root, run))
    current = next(iter(newest.values()), None)  # the listing is of the month's one folder
    existing = read_parquet(current) if current else month_schema(kind).empty_table()
    merged = merge_month(existing, concat_blocks(blocks, month_schema(kind)))
    if current and merged.equals(existing):
        return []  # nothing changed (the same input run again): no new version
    numbers = [v[0] for v in map(layout.aggregate_version_of, versions) if v is not None]
    version = max(numbers, default=0) + 1
    final = layout.aggregate_path(settings.root, kind, month, version, settings.run_id)
    return [stage(merged, final, settings.root, settings.run_id)]


class StageAggregates(beam.PTransform):  # type: ignore[misc]
    """((kind, month), partition figures) -> one staged aggregate file per kind and month."""

    def __init__(self, settings: WriteSettings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, figures: beam.PCollection) -> beam.PCollection:
        return (
            figures
            | "GroupByMonth" >> beam.GroupByKey()
            | "StageMonthFile" >> beam.FlatMap(stage_month, self._settings)
        )
