"""Compaction as Beam steps: stage each partition's rows anew, verify them, commit like a run.

Each chosen partition (`transforms.core.compaction.select`) is read whole from its committed
files, sorted as every writer sorts a payments file and written under `_staging/<run_id>/`
as `compact-<run_id>-NNNNN.parquet` (`schemas.layout.compacted_part_name`), and each staged
file is read back and scanned by the privacy scanner like any other (`partitions.scanned`).
Then the partition is verified: the old files are read again and the staged ones read back,
and they must hold exactly the same rows (count, event ids, sum of amount, every column) with
the same aggregate figures. One mismatch fails the run with nothing published.

The commit (`commit_compaction`), under the writer lease, moves the staged files into place,
writes the manifest (pipeline "compact": files written, files removed, each partition's
digest) and `_SUCCESS`, then deletes the old files. Committed readers switch from the old
files to the new ones at `_SUCCESS` (`transforms.storage.committed`); a glob reader sees both
from the first move to the last delete, and a compaction killed in between leaves files the
next compaction deletes (`compaction_leftovers`) before it plans anything.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import apache_beam as beam
import pyarrow as pa

from schemas import layout
from schemas.records import SCHEMA_VERSION
from schemas.run import COMPACT, Run
from schemas.timekeeping import BAHRAIN
from transforms.batch.commit import screen_staged
from transforms.core.compaction import (
    DEFAULT_MAX_FILES,
    DEFAULT_TARGET_FILE_MB,
    MEBIBYTE,
    Partition,
    PartitionFiles,
    aggregate_differences,
    chunks,
    differences,
    digest,
    file_count,
    in_file_order,
    select,
    totals,
    touched_partitions,
)
from transforms.core.scanner import SecretInOutput
from transforms.storage import lease
from transforms.storage.committed import committed_files, compaction_leftovers
from transforms.storage.files import delete, delete_tree, read_parquet, replace, sizes, write_text
from transforms.storage.partitions import StagedFile, scanned, stage

log = logging.getLogger(__name__)


class CompactionMismatch(RuntimeError):
    """The rewritten files of a partition do not hold exactly its old rows: nothing is
    published (the message names the partition and what differs)."""


@dataclass(frozen=True)
class CompactedPartition:
    """A partition staged and verified: what the commit moves, removes and records."""

    source: PartitionFiles
    staged: tuple[StagedFile, ...]
    digest: dict[str, Any] = field(default_factory=dict)
    bytes_after: int = 0

    def summary(self) -> dict[str, Any]:
        """The partition's entry in the manifest."""
        return {
            "partition": self.source.name,
            "files_before": len(self.source.files),
            "files_after": len(self.staged),
            "bytes_before": self.source.bytes,
            "bytes_after": self.bytes_after,
            "rows": self.digest,
        }


def partitions_of(
    root: str, named: frozenset[Partition] | None = None, since: date | None = None
) -> list[PartitionFiles]:
    """Every payments partition with its committed files and their bytes, or only those
    `named` and from `since` on (sizes are looked up for those alone: on GCS one request per
    file, which the nightly run should not pay for a whole year's lake)."""
    by_partition: dict[Partition, list[str]] = defaultdict(list)
    for path in committed_files(root, layout.PAYMENTS):
        by_partition[layout.partition_of(path)].append(path)
    kept = {
        key: sorted(paths)
        for key, paths in by_partition.items()
        if (named is None or key in named) and (since is None or key[1] >= since)
    }
    return [
        PartitionFiles(channel, day, tuple(paths), sum(sizes(paths)))
        for (channel, day), paths in sorted(kept.items())
    ]


def heal(root: str) -> list[str]:
    """Delete what a killed compaction left (no reader counts these files), under the lease;
    returns them."""
    leftovers = compaction_leftovers(root)
    if leftovers:
        log.warning(
            "deleting %d payments file(s) a killed compaction left (no reader counts them)",
            len(leftovers),
        )
        delete(leftovers)
    return leftovers


def read_rows(paths: tuple[str, ...] | list[str]) -> pa.Table:
    """The rows of a partition's files, one table (files of earlier releases with fewer
    columns are widened, never narrowed)."""
    tables = [read_parquet(path) for path in paths]
    return pa.concat_tables(tables, promote_options="permissive")


def stage_partition(partition: PartitionFiles, run: Run, target_bytes: int) -> list[StagedFile]:
    """Write a partition's rows, in file order, as `file_count` staged files, each read back
    and scanned."""
    rows = in_file_order(read_rows(partition.files))
    directory = layout.payments_dir(run.output_root, partition.channel, partition.event_date)
    files = []
    for index, chunk in enumerate(chunks(rows, file_count(partition.bytes, target_bytes))):
        final = layout.join(directory, layout.compacted_part_name(run.run_id, index))
        files.append(stage(chunk, final, run.output_root, run.run_id, scan=False))
    return scanned(files)


def verify_partition(partition: PartitionFiles, staged: list[StagedFile]) -> CompactedPartition:
    """Read the old files again and the staged ones back; raise CompactionMismatch unless they
    hold the same rows and give the same aggregate figures."""
    old = read_rows(partition.files)
    new = read_rows([s.staged for s in staged])
    problems = differences(old, new)
    problems += [f"{kind} figures differ" for kind in aggregate_differences(old, new)]
    if problems:
        raise CompactionMismatch(
            f"the rewritten files of {partition.name} did not hold exactly its rows: "
            + "; ".join(problems)
            + ". Nothing was published."
        )
    after = sum(sizes([s.staged for s in staged]))
    return CompactedPartition(partition, tuple(staged), digest(old).as_dict(), after)


class StagePartitionFn(beam.DoFn):  # type: ignore[misc]
    """PartitionFiles -> (PartitionFiles, its staged files)."""

    def __init__(self, run: Run, target_bytes: int) -> None:
        self._run = run
        self._target = target_bytes

    def process(self, partition: PartitionFiles) -> Iterator[Any]:
        yield partition, stage_partition(partition, self._run, self._target)


def verified_or_left(
    partition: PartitionFiles, staged: list[StagedFile]
) -> Iterator[CompactedPartition]:
    """`verify_partition`, for compaction inside a batch run: a partition that does not verify
    is left as it is (logged and counted) instead of failing a run that has committed."""
    try:
        yield verify_partition(partition, staged)
    except CompactionMismatch as mismatch:
        log.error("%s The partition is left as it was.", mismatch)
        beam.metrics.Metrics.counter("compact", "mismatches").inc()


class RewritePartitions(beam.PTransform):  # type: ignore[misc]
    """PartitionFiles -> CompactedPartition: staged, scanned and verified, not yet published.
    With `leave_mismatches`, a partition that does not verify is left out, not raised."""

    def __init__(self, run: Run, target_bytes: int, leave_mismatches: bool = False) -> None:
        super().__init__()
        self._run = run
        self._target = target_bytes
        self._leave = leave_mismatches

    def expand(self, partitions: beam.PCollection) -> beam.PCollection:
        staged = (
            partitions
            | "SpreadPartitions" >> beam.Reshuffle()
            | "StagePartition" >> beam.ParDo(StagePartitionFn(self._run, self._target))
        )
        if self._leave:
            return staged | "VerifyPartition" >> beam.FlatMapTuple(verified_or_left)
        return staged | "VerifyPartition" >> beam.MapTuple(verify_partition)


def compaction_manifest(
    run: Run,
    partitions: list[CompactedPartition],
    scanned: dict[str, Any],
    target_mb: int,
    planned_after: str,
) -> dict[str, Any]:
    """The manifest of a compaction: the shape of a run's where readers look (`run_id`,
    `pipeline`, `output_root`, `files_written`, `files_removed`), what it verified, and the
    newest committed run when it chose its partitions (`planned_after`: committed readers
    apply its removals after that run's files, whatever the two run ids)."""
    summaries = [p.summary() for p in sorted(partitions, key=lambda p: p.source.name)]
    return {
        "run_id": run.run_id,
        "pipeline": COMPACT,
        "schema_version": SCHEMA_VERSION,
        "output_root": run.output_root,
        "started_at": run.started_at_text,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [],
        "planned_after": planned_after,
        "target_file_mb": target_mb,
        "counts": totals(summaries),
        # Every partition was verified before the commit: same rows, ids, amount, figures.
        "reconciles": True,
        "partitions": summaries,
        "files_written": sorted(s.final for p in partitions for s in p.staged),
        "files_removed": sorted(f for p in partitions for f in p.source.files),
        "privacy_scan": scanned,
    }


def still_committed(root: str, partitions: list[CompactedPartition]) -> list[CompactedPartition]:
    """The partitions whose files are all still committed. Inside a template-launched batch
    job the partitions were chosen before the commit took the lease: one that another writer
    compacted meanwhile is left out (its rows are in that writer's files already)."""
    current = set(committed_files(root, layout.PAYMENTS))
    kept = [p for p in partitions if all(f in current for f in p.source.files)]
    for gone in (p for p in partitions if p not in kept):
        log.warning("%s changed since it was chosen: not compacted this time", gone.source.name)
    return kept


def commit_compaction(
    run: Run,
    partitions: list[CompactedPartition],
    target_mb: int,
    planned_after: str,
    lease_owner: str | None = None,
) -> dict[str, Any]:
    """Under the writer lease: refuse on a secret in a staged file (SecretInOutput), move the
    staged files into place, write the manifest and `_SUCCESS`, then delete the old files.

    `lease_owner` is the batch run whose lease covers a compaction inside its graph (its
    launcher's, or for a template launch one the commit takes itself): then what a killed
    compaction left is deleted here first, and with nothing to rewrite nothing more is
    written (no manifest). Returns the manifest, empty when none was written."""
    staged = [s for p in partitions for s in p.staged]
    owner, pipeline = (lease_owner, lease.BATCH) if lease_owner else (run.run_id, COMPACT)
    with lease.commit_guard(run.output_root, owner, pipeline=pipeline) as still_held:
        if lease_owner:
            heal(run.output_root)
            partitions = still_committed(run.output_root, partitions)
        if not partitions:
            delete_tree(layout.staging_dir(run.output_root, run.run_id))
            return {}
        scan = screen_staged(run, staged)
        still_held()
        replace([s.staged for s in staged], [s.final for s in staged])
        manifest = compaction_manifest(run, partitions, scan, target_mb, planned_after)
        run_dir = layout.run_dir(run.output_root, run.run_id)
        still_held()
        write_text(layout.join(run_dir, layout.MANIFEST), json.dumps(manifest, indent=2))
        write_text(layout.success_marker(run.output_root, run.run_id), "")
        delete_replaced(manifest["files_removed"])
        delete_tree(layout.staging_dir(run.output_root, run.run_id))
    log.info(
        "committed compaction %s: %d partitions, %d files -> %d",
        run.run_id,
        manifest["counts"]["partitions"],
        manifest["counts"]["files_before"],
        manifest["counts"]["files_after"],
    )
    return manifest


def delete_replaced(paths: list[str]) -> None:
    """Delete the files the committed compaction replaced. Committed readers already ignore
    them; a failure leaves glob readers a partition counted twice until the next compaction
    deletes them (`compaction_leftovers`), so it is logged, not raised."""
    try:
        delete(paths)
    except Exception as err:
        log.warning(
            "could not delete %d replaced payments file(s) (%s: %s); committed readers are not "
            "affected, and the next compaction deletes them",
            len(paths),
            type(err).__name__,
            err,
        )


class CommitCompactionFn(beam.DoFn):  # type: ignore[misc]
    def __init__(
        self, run: Run, target_mb: int, planned_after: str, lease_owner: str | None = None
    ) -> None:
        self._run = run
        self._target_mb = target_mb
        self._planned_after = planned_after
        self._lease_owner = lease_owner

    def process(self, partitions: list[CompactedPartition]) -> Iterator[dict[str, Any]]:
        try:
            manifest = commit_compaction(
                self._run, partitions, self._target_mb, self._planned_after, self._lease_owner
            )
        except (SecretInOutput, lease.LeaseError) as refused:
            if self._lease_owner is None:
                if isinstance(refused, SecretInOutput):
                    raise RuntimeError(str(refused)) from refused
                raise
            # Inside a batch run that has committed: its compaction publishes nothing, and
            # the run stands (the next compaction tries again).
            log.error("compaction %s published nothing: %s", self._run.run_id, refused)
            return
        if manifest:
            yield manifest


class CommitCompaction(beam.PTransform):  # type: ignore[misc]
    """Every CompactedPartition -> the compaction's manifest (one element), once all are in."""

    def __init__(
        self, run: Run, target_mb: int, planned_after: str, lease_owner: str | None = None
    ) -> None:
        super().__init__()
        self._fn = CommitCompactionFn(run, target_mb, planned_after, lease_owner)

    def expand(self, partitions: beam.PCollection) -> beam.PCollection:
        return (
            partitions
            | "CollectPartitions" >> beam.combiners.ToList()
            | "PublishCompaction" >> beam.ParDo(self._fn)
        )


def choose_after_run(
    manifest: dict[str, Any], yesterday: date, target_bytes: int
) -> list[PartitionFiles]:
    """The partitions a committed batch run compacts (`touched_partitions`) that hold more
    files than they need."""
    root = str(manifest["output_root"])
    named = set(touched_partitions(manifest["files_written"], root, yesterday))
    return select(partitions_of(root, frozenset(named)), DEFAULT_MAX_FILES, target_bytes, named)


class CompactAfterRun(beam.PTransform):  # type: ignore[misc]
    """A batch run's manifest (one element, once it has committed) -> the manifest of the
    compaction of what it touched (none when nothing needed it): inside the batch job, so a
    job launched from a template compacts too. Under the batch run's lease; a partition that
    does not verify, a secret or a busy root publish nothing and fail nothing."""

    def __init__(self, batch_run: Run, compaction: Run) -> None:
        super().__init__()
        self._batch = batch_run
        self._compaction = compaction
        self._yesterday = batch_run.started_at.astimezone(BAHRAIN).date() - timedelta(days=1)

    def expand(self, manifest: beam.PCollection) -> beam.PCollection:
        target = DEFAULT_TARGET_FILE_MB * MEBIBYTE
        return (
            manifest
            | "ChoosePartitions" >> beam.FlatMap(choose_after_run, self._yesterday, target)
            | "RewritePartitions"
            >> RewritePartitions(self._compaction, target, leave_mismatches=True)
            | "CommitCompaction"
            >> CommitCompaction(
                self._compaction,
                DEFAULT_TARGET_FILE_MB,
                planned_after=self._batch.run_id,
                lease_owner=self._batch.run_id,
            )
        )
