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
import pyarrow as pa
from apache_beam import pvalue

from schemas import layout
from schemas.arrow import rejected_schema
from transforms import stats as st
from transforms.blocks import rejected_table
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


def _concat(tables: Iterable[pa.Table]) -> pa.Table:
    return pa.concat_tables(list(tables))


class _Lineage:
    """Run id and ingest time, for the rejected rows a sink creates."""

    def __init__(self, run_id: str, ingested_micros: int) -> None:
        self.run_id = run_id
        self.ingested_micros = ingested_micros

    def conflicts(self, result: Deduplicated) -> pa.Table:
        return rejected_table(conflict_rejections(result), self.run_id, self.ingested_micros)


class DeduplicateBucketFn(beam.DoFn):  # type: ignore[misc]
    """(bucket, tables) -> winners keyed by partition; conflicts and stats tagged."""

    def __init__(self, lineage: _Lineage) -> None:
        self._lineage = lineage

    def process(self, element: tuple[int, Iterable[pa.Table]]) -> Iterator[Any]:
        _, tables = element
        result = deduplicate(_concat(tables))
        yield from split_by_partition(result.winners)
        if result.conflicts.num_rows:
            conflicts = self._lineage.conflicts(result)
            yield pvalue.TaggedOutput(Outcome.REJECTED.value, conflicts)
            for channel in conflicts["channel"].to_pylist():
                result.stats[st.rejected_key(channel, "DUPLICATE_CONFLICT")] += 1
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
            | "KeyByEventBucket" >> beam.FlatMap(lambda t: split_by_bucket(t, buckets))
            | "GroupByEventBucket" >> beam.GroupByKey()
            | "KeepFirstPerEvent"
            >> beam.ParDo(DeduplicateBucketFn(self._lineage)).with_outputs(
                Outcome.REJECTED.value, Outcome.STATS.value, main="winners"
            )
        )


class StagePartitionFn(beam.DoFn):  # type: ignore[misc]
    """((channel, day), tables) -> staged files; conflicts with earlier runs and stats tagged."""

    def __init__(self, settings: WriteSettings, lineage: _Lineage) -> None:
        self._settings = settings
        self._lineage = lineage

    def process(self, element: tuple[tuple[str, str], Iterable[pa.Table]]) -> Iterator[Any]:
        (channel, day), tables = element
        written = write_partition(channel, date.fromisoformat(day), _concat(tables), self._settings)
        yield from written.staged
        for stale in written.stale:
            yield pvalue.TaggedOutput("stale", stale)
        if written.conflicts is not None and written.conflicts.num_rows:
            result = Deduplicated(
                written.conflicts, written.conflicts, written.conflict_winner_hash, written.stats
            )
            rejected = self._lineage.conflicts(result)
            yield pvalue.TaggedOutput(Outcome.REJECTED.value, rejected)
            for ch in rejected["channel"].to_pylist():
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


def stage_rejected(tables: list[pa.Table], settings: WriteSettings) -> list[StagedFile]:
    """Stage this input's rejected events as one file (none when nothing was rejected, which
    also clears a file an earlier run of the same input left)."""
    table = pa.concat_tables([rejected_schema().empty_table(), *tables])
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
