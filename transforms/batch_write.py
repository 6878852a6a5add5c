"""Batch sinks around the core transform: de-duplicate, stage partitions, commit the run.

Commit protocol: every file is first written under `_staging/<run_id>/`; one final step moves
them into place, removes this input's superseded files, then writes the run manifest and its
`_SUCCESS` marker. A run that dies before that step leaves the published output untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from schemas import layout
from schemas.arrow import payment_schema, rejected_schema
from schemas.enums import RejectCode
from transforms import stats as st
from transforms.blocks import rejected_table
from transforms.columnar import ArrowBlock, concat_blocks
from transforms.dedup import (
    DEFAULT_BUCKETS,
    INDEX_COLUMNS,
    Deduplicated,
    conflict_rejections,
    cross_partition_losers,
    deduplicate,
    drop_losers,
    index_schema,
    loser_schema,
    merge_results,
    split_by_bucket,
    split_by_partition,
)
from transforms.ingest import Outcome
from transforms.partitions import StagedFile, WriteSettings, write_partition
from transforms.storage import write_parquet

log = logging.getLogger(__name__)


class _Lineage:
    """Run id and ingest time, for the rejected rows a sink creates."""

    def __init__(self, run_id: str, ingested_micros: int) -> None:
        self.run_id = run_id
        self.ingested_micros = ingested_micros

    def conflicts(self, result: Deduplicated) -> ArrowBlock:
        table = rejected_table(conflict_rejections(result), self.run_id, self.ingested_micros)
        return ArrowBlock.of(table)


def _index_by_bucket(
    element: tuple[tuple[str, str], ArrowBlock], buckets: int
) -> Iterator[tuple[int, ArrowBlock]]:
    _, block = element
    for bucket, rows in split_by_bucket(block.table(INDEX_COLUMNS), buckets):
        yield bucket, ArrowBlock.of(rows)


def _losers_by_partition(
    element: tuple[int, Iterable[ArrowBlock]],
) -> Iterator[tuple[tuple[str, str], ArrowBlock]]:
    _, blocks = element
    losers = cross_partition_losers(concat_blocks(blocks, index_schema()))
    for key, rows in split_by_partition(losers):
        yield key, ArrowBlock.of(rows)


class StagePartitionFn(beam.DoFn):  # type: ignore[misc]
    """((channel, day), blocks) -> staged files; conflicts and stats tagged.

    Drops rows whose event was first seen in another partition, keeps the first row of each
    event_id, then leaves out events an earlier run already wrote (`write_partition`).
    """

    def __init__(self, settings: WriteSettings, lineage: _Lineage) -> None:
        self._settings = settings
        self._lineage = lineage

    def process(
        self,
        element: tuple[tuple[str, str], Iterable[ArrowBlock]],
        moved: Mapping[tuple[str, str], Iterable[ArrowBlock]],  # a multimap: [] when absent
    ) -> Iterator[Any]:
        (channel, day), blocks = element
        rows = concat_blocks(blocks, payment_schema())
        elsewhere = drop_losers(rows, concat_blocks(moved[(channel, day)], loser_schema()))
        within = deduplicate(elsewhere.winners)
        written = write_partition(channel, date.fromisoformat(day), within.winners, self._settings)
        yield from written.staged
        for stale in written.stale:
            yield pvalue.TaggedOutput("stale", stale)
        result = merge_results(written.result.winners, elsewhere, within, written.result)
        if result.conflicts.num_rows:
            yield pvalue.TaggedOutput(Outcome.REJECTED.value, self._lineage.conflicts(result))
            for ch in result.conflicts["channel"].to_pylist():
                result.stats[st.rejected_key(ch, RejectCode.DUPLICATE_CONFLICT.value)] += 1
        accepted = written.stats.get(st.accepted_key(channel), 0)
        beam.metrics.Metrics.counter("write", "accepted").inc(accepted)
        beam.metrics.Metrics.counter("dedup", "duplicates").inc(
            sum(v for k, v in result.stats.items() if k.startswith("duplicates:"))
        )
        beam.metrics.Metrics.counter("dedup", "conflicts").inc(result.conflicts.num_rows)
        yield pvalue.TaggedOutput(Outcome.STATS.value, {**written.stats, **result.stats})


class DeduplicateAndStage(beam.PTransform):  # type: ignore[misc]
    """Partition-keyed accepted blocks -> one row per event_id, staged as Parquet per Hive
    partition.

    Outputs: `staged` (StagedFile), `stale` (paths this input's earlier run wrote that are now
    superseded), rejected conflicts and stats.
    """

    def __init__(
        self, settings: WriteSettings, ingested_micros: int, buckets: int = DEFAULT_BUCKETS
    ) -> None:
        super().__init__()
        self._buckets = buckets
        self._fn = StagePartitionFn(settings, _Lineage(settings.run_id, ingested_micros))

    def expand(self, accepted: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        buckets = self._buckets
        moved = (
            accepted
            | "IndexByEventBucket" >> beam.FlatMap(_index_by_bucket, buckets)
            | "GroupIndexByBucket" >> beam.GroupByKey()
            | "FindMovedRedeliveries" >> beam.FlatMap(_losers_by_partition)
        )
        return (
            accepted
            | "GroupByPartition" >> beam.GroupByKey()
            | "StagePartition"
            >> beam.ParDo(self._fn, moved=beam.pvalue.AsMultiMap(moved)).with_outputs(
                "stale", Outcome.REJECTED.value, Outcome.STATS.value, main="staged"
            )
        )


def stage_rejected(blocks: list[ArrowBlock], settings: WriteSettings) -> list[StagedFile]:
    """Stage this input's rejected events as one file (none when nothing was rejected, which
    also clears a file an earlier run of the same input left)."""
    table = concat_blocks(blocks, rejected_schema())
    final = layout.rejected_path(settings.root, settings.input_key)
    if table.num_rows == 0:
        return []
    table = table.sort_by(
        [
            ("source_file", "ascending"),
            ("source_line", "ascending"),
            ("source_message_id", "ascending"),
            ("error_code", "ascending"),
        ]
    )
    staged = layout.staged(settings.root, settings.run_id, final)
    write_parquet(table, staged)
    return [StagedFile(staged, final)]


class StageRejected(beam.PTransform):  # type: ignore[misc]
    def __init__(self, settings: WriteSettings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, rejected: beam.PCollection) -> beam.PCollection:
        settings = self._settings
        return (
            rejected
            | "CollectRejected" >> beam.combiners.ToList()
            | "StageRejectedFile" >> beam.FlatMap(lambda tables: stage_rejected(tables, settings))
        )
