"""Streaming payments files: each pane's rows join the run's open file of their partition.

Writing one new file per partition and pane left ~1,000 one- or two-row files in a portal
partition per day at the published rate (benchmarks/RESULTS.md, issue #12), and after a
restart every pane read every one of them twice. Here:

- **Rolling.** A run keeps one open file per partition: each pane rewrites it with the
  pane's rows added (staged whole, renamed over it: a reader sees the old version or the new
  one, both whole), until it is `Rolling.seconds` old (an hour) or holds `Rolling.rows` rows;
  then the next pane opens a new one. A partition gets at most ~24 files a day from a run
  (one more per restart), at the cost of re-reading and re-writing one small file a pane. The
  row bound is what bounds that cost at high rates (a rewrite costs per row, ~2.5 ms per
  thousand here; measured in benchmarks/RESULTS.md): compressed size says little of it. An
  earlier day's partition, which only late payments reach, keeps its file open for
  `Rolling.late_seconds` (a day) instead: it would otherwise get a new file for every hour a
  few late payments arrive in (a 30-day lake held up to 66 files in a partition that way),
  and gets one a day of its ~5 days of lateness.
  Whether a file is still open is told from its name (the second it was opened,
  `schemas.layout.rolled_part_name`) and its row count (the Parquet footer), so nothing but
  the files holds this state: a restarted or moved writer simply opens a new one.
- **Compaction.** Only a file that still counts (`current_payment_files`) and has not changed
  since the pane read it is rewritten, under the writer lease that compaction also holds for
  its whole run: a file a compaction removed is never written again under its old name
  (committed readers would no longer count it); the pane opens a new file instead.
- **Other writers' rows** are read once per file version: the event ids of every other file of
  the partition are kept (`CommittedIds`, bounded), and only files new or changed since are
  read, so a restarted run reads the partition once, not on every pane. Full rows are read
  only from files holding one of the pane's ids (a redelivery or a conflict).
"""

from __future__ import annotations

import posixpath
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from schemas import layout
from schemas.arrow import payment_file_schema, payment_schema
from schemas.records import PAYMENT_FILE_ORDER
from schemas.timekeeping import bahrain_day
from transforms.dedup.table import CONTENT_COLUMNS
from transforms.storage import lease
from transforms.storage.committed import current_payment_files
from transforms.storage.files import (
    FileVersion,
    list_versions,
    parquet_rows,
    read_parquet,
    replace,
    write_parquet,
    write_text,
)

DEFAULT_ROLL_SECONDS = 3600
DEFAULT_ROLL_ROWS = 50_000
# How long a file of an earlier day's partition (late payments only) stays open.
LATE_ROLL_SECONDS = 86_400
# The event ids kept of other writers' files, per process: ~50 bytes an id, so a million ids.
DEFAULT_ID_CACHE_BYTES = 64 * 2**20
DEDUP_COLUMNS = ["event_id", *CONTENT_COLUMNS]


@dataclass(frozen=True)
class Rolling:
    """When a run's open file of a partition stops taking panes: at this age (seconds) or
    once it holds this many rows."""

    seconds: int = DEFAULT_ROLL_SECONDS
    rows: int = DEFAULT_ROLL_ROWS
    late_seconds: int = LATE_ROLL_SECONDS  # for a partition of a day before the file's

    def open_for(self, opened: float, partition_day: date) -> int:
        """How long a file opened at `opened` (epoch seconds) stays open in the partition
        of `partition_day`: a day's own partition rolls every `seconds`, an earlier day's
        (late payments only) every `late_seconds`."""
        opened_day = bahrain_day(int(opened * 1_000_000))
        return self.seconds if partition_day >= opened_day else self.late_seconds

    @classmethod
    def of(cls, seconds: int, rows: int) -> Rolling:
        if seconds < 1 or rows < 1:
            raise ValueError("a roll needs at least 1 second and 1 row")
        return cls(seconds, rows, max(seconds, LATE_ROLL_SECONDS))


class CommittedIds:
    """The event_id column of data files, by path and version: read once, kept while the
    file is unchanged, least recently used dropped beyond `budget` bytes."""

    def __init__(self, budget: int = DEFAULT_ID_CACHE_BYTES) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[FileVersion, pa.Array]] = OrderedDict()
        self._bytes = 0
        self.reads = 0  # files read: what a test or benchmark checks

    def of(self, path: str, version: FileVersion) -> pa.Array:
        with self._lock:
            kept = self._files.get(path)
            if kept is not None and kept[0] == version:
                self._files.move_to_end(path)
                return kept[1]
        ids = read_parquet(path, ["event_id"])["event_id"].combine_chunks()
        with self._lock:
            self.reads += 1
            old = self._files.pop(path, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            self._files[path] = (version, ids)
            self._bytes += ids.nbytes
            while self._bytes > self._budget and len(self._files) > 1:
                _, (_, dropped) = self._files.popitem(last=False)
                self._bytes -= dropped.nbytes
        return ids


COMMITTED_IDS = CommittedIds()


@dataclass(frozen=True)
class PartitionFiles:
    """The files of a partition that count, with their versions, as one writer sees them."""

    directory: str
    run_id: str
    versions: dict[str, FileVersion]

    @classmethod
    def listed(cls, directory: str, run_id: str) -> PartitionFiles:
        versions = list_versions(directory)
        current = current_payment_files(layout.root_of_partition(directory), list(versions))
        return cls(directory, run_id, {path: versions[path] for path in current})

    def is_own(self, path: str) -> bool:
        return layout.run_of_pane_part(posixpath.basename(path)) == self.run_id

    @property
    def others(self) -> list[str]:
        """Files other writers committed: this run's own rows are de-duplicated in its state."""
        return [path for path in self.versions if not self.is_own(path)]

    def committed_hits(self, ids: pa.Array, cache: CommittedIds = COMMITTED_IDS) -> list[str]:
        """Other writers' files holding any of `ids`."""
        return [
            path
            for path in self.others
            if pc.any(pc.is_in(cache.of(path, self.versions[path]), value_set=ids)).as_py()
        ]

    def existing_rows(self, ids: pa.Array, cache: CommittedIds = COMMITTED_IDS) -> pa.Table:
        """Rows other writers committed whose event_id is among `ids` (the columns
        de-duplication compares), read only from the files that hold one."""
        schema = payment_schema()
        empty = pa.schema([schema.field(c) for c in DEDUP_COLUMNS]).empty_table()
        tables = []
        for path in self.committed_hits(ids, cache):
            rows = read_parquet(path, DEDUP_COLUMNS)
            tables.append(rows.filter(pc.is_in(rows["event_id"], value_set=ids)))
        return pa.concat_tables([empty, *tables], promote_options="permissive")

    def open_file(self, rolling: Rolling, now: float) -> str | None:
        """This run's newest file here if it still takes rows (younger than `rolling` says,
        and fewer rows)."""
        day = layout.event_date_of(layout.join(self.directory, "file"))
        open_ones = []
        for path in self.versions:
            opened = layout.rolled_opened_at(posixpath.basename(path))
            if opened is None or not self.is_own(path):
                continue
            if 0 <= now - opened < rolling.open_for(opened, day):
                open_ones.append((opened, path))
        if not open_ones:
            return None
        newest = max(open_ones)[1]
        return newest if parquet_rows(newest) < rolling.rows else None


@dataclass(frozen=True)
class OpenFile:
    """The run's open file of a partition as a pane read it: its path, version and rows."""

    path: str
    version: FileVersion
    rows: pa.Table

    @classmethod
    def read(cls, files: PartitionFiles, rolling: Rolling, now: float) -> OpenFile | None:
        path = files.open_file(rolling, now)
        if path is None:
            return None
        return cls(path, files.versions[path], read_parquet(path))

    def holds(self, ids: pa.Array) -> pa.Array:
        """Which of `ids` the file already holds: rows of this very pane, committed by an
        earlier attempt of it (a retried bundle)."""
        return pc.is_in(ids, value_set=self.rows["event_id"].combine_chunks())


class CommittedMeanwhile(RuntimeError):
    """Another writer committed some of a pane's rows after the pane read the partition."""


def publish_rows(
    rows: pa.Table,
    files: PartitionFiles,
    opened: OpenFile | None,
    root: str,
    run_id: str,
    now: float,
    stats_text: str | None = None,
) -> str:
    """Under the root's writer lease, add `rows` (payment file columns) to the run's open
    file of the partition, or write them to a new file; with `stats_text`, stage that stats
    file too and rename it into place right after the data file. Returns the data file's path.

    The partition is listed again under the lease: if another writer committed one of these
    event ids since `files` was listed, nothing is published and CommittedMeanwhile is raised
    (Beam retries the pane, and the retry leaves them out). The open file is rewritten only if
    it still counts and is the version read; otherwise (a compaction took it) the rows go to a
    new file, and the open file's rows are where the compaction put them."""
    with lease.pane_lease(root, run_id):
        now_files = PartitionFiles.listed(files.directory, run_id)
        if now_files.committed_hits(rows["event_id"].combine_chunks()):
            raise CommittedMeanwhile(
                f"another writer committed some of this pane's payments to {files.directory} "
                "after the pane read it; the pane is not published, and its retry leaves them out"
            )
        if opened is not None and now_files.versions.get(opened.path) == opened.version:
            final = opened.path
            body = pa.concat_tables([opened.rows, rows], promote_options="permissive")
            body = body.sort_by(list(PAYMENT_FILE_ORDER)).select(payment_file_schema().names)
        else:
            final = _new_name(now_files, run_id, now)
            body = rows
        sources, targets = [layout.staged(root, run_id, final)], [final]
        write_parquet(body, sources[0])
        if stats_text is not None:
            stats_path = layout.pane_stats_path(root, run_id)
            sources.append(layout.staged(root, run_id, stats_path))
            targets.append(stats_path)
            write_text(sources[-1], stats_text)
        replace(sources, targets)
    return final


def _new_name(files: PartitionFiles, run_id: str, now: float) -> str:
    """A new rolled file's path, none of the partition's files' (its name has a random part)."""
    taken = set(files.versions)
    while (path := layout.join(files.directory, layout.rolled_part_name(run_id, now))) in taken:
        pass
    return path
