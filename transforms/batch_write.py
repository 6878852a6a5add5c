"""Batch sinks around the core transform: de-duplicate, stage partitions, commit the run.

Commit protocol: every file is first written under `_staging/<run_id>/`; one final step moves
them into place, removes this input's superseded files, then writes the run manifest and its
`_SUCCESS` marker. A run that dies before that step leaves the published output untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from schemas import layout
from schemas.arrow import payment_schema, rejected_schema
from transforms import stats as st
from transforms.blocks import rejected_table
from transforms.columnar import ArrowBlock, concat_blocks
from transforms.dedup import (
    DEFAULT_BUCKETS,
    Deduplicated,
    conflict_rejections,
    deduplicate,
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


class DeduplicateBucketFn(beam.DoFn):  # type: ignore[misc]
    """(bucket, blocks) -> winners keyed by partition; conflicts and stats tagged."""

    def __init__(self, lineage: _Lineage) -> None:
        self._lineage = lineage

    def process(self, element: tuple[int, Iterable[ArrowBlock]]) -> Iterator[Any]:
        _, blocks = element
        result = deduplicate(concat_blocks(blocks, payment_schema()))
        for key, rows in split_by_partition(result.winners):
            yield key, ArrowBlock.of(rows)
        if result.conflicts.num_rows:
            yield pvalue.TaggedOutput(Outcome.REJECTED.value, self._lineage.conflicts(result))
            for channel in result.conflicts["channel"].to_pylist():
                result.stats[st.rejected_key(channel, "DUPLICATE_CONFLICT")] += 1
        beam.metrics.Metrics.counter("dedup", "duplicates_in_input").inc(
            sum(result.stats.values()) - result.conflicts.num_rows
        )
        yield pvalue.TaggedOutput(Outcome.STATS.value, dict(result.stats))


class DeduplicateBatch(beam.PTransform):  # type: ignore[misc]
    """Accepted tables -> one row per event_id, grouped by Hive partition."""

    def __init__(self, run_id: str, ingested_micros: int, buckets: int = DEFAULT_BUCKETS) -> None:
        super().__init__()
        self._buckets = buckets
        self._lineage = _Lineage(run_id, ingested_micros)

    def expand(self, accepted: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        buckets = self._buckets
        return (
            accepted
            | "KeyByEventBucket"
            >> beam.FlatMap(
                lambda block: (
                    (bucket, ArrowBlock.of(rows))
                    for bucket, rows in split_by_bucket(block.table(), buckets)
                )
            )
            | "GroupByEventBucket" >> beam.GroupByKey()
            | "KeepFirstPerEvent"
            >> beam.ParDo(DeduplicateBucketFn(self._lineage)).with_outputs(
                Outcome.REJECTED.value, Outcome.STATS.value, main="winners"
            )
        )


class StagePartitionFn(beam.DoFn):  # type: ignore[misc]
    """((channel, day), blocks) -> staged files; conflicts with earlier runs and stats tagged."""

    def __init__(self, settings: WriteSettings, lineage: _Lineage) -> None:
        self._settings = settings
        self._lineage = lineage

    def process(self, element: tuple[tuple[str, str], Iterable[ArrowBlock]]) -> Iterator[Any]:
        (channel, day), blocks = element
        rows = concat_blocks(blocks, payment_schema())
        written = write_partition(channel, date.fromisoformat(day), rows, self._settings)
        yield from written.staged
        for stale in written.stale:
            yield pvalue.TaggedOutput("stale", stale)
        if written.conflicts is not None and written.conflicts.num_rows:
            result = Deduplicated(
                written.conflicts, written.conflicts, written.conflict_winner_hash, written.stats
            )
            yield pvalue.TaggedOutput(Outcome.REJECTED.value, self._lineage.conflicts(result))
            for ch in written.conflicts["channel"].to_pylist():
                written.stats[st.rejected_key(ch, "DUPLICATE_CONFLICT")] += 1
        beam.metrics.Metrics.counter("write", "accepted").inc(
            written.stats.get(st.accepted_key(channel), 0)
        )
        yield pvalue.TaggedOutput(Outcome.STATS.value, dict(written.stats))


class StagePartitions(beam.PTransform):  # type: ignore[misc]
    """Partition-keyed winners -> staged Parquet files (payments and aggregates)."""

    def __init__(self, settings: WriteSettings, ingested_micros: int) -> None:
        super().__init__()
        self._fn = StagePartitionFn(settings, _Lineage(settings.run_id, ingested_micros))

    def expand(self, winners: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            winners
            | "GroupByPartition" >> beam.GroupByKey()
            | "StagePartition"
            >> beam.ParDo(self._fn).with_outputs(
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
