"""Write one Hive partition of a run: merge with what earlier runs wrote, stage, and summarise.

Nothing is written where readers look: files go to the run's staging folder and `commit`
moves them into place only after every partition of the run has been staged.
"""

from __future__ import annotations

import posixpath
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa

from schemas import layout
from schemas.arrow import payment_file_schema, payment_schema
from schemas.records import PAYMENT_FILE_ORDER
from schemas.run import Run
from transforms.core import stats as st
from transforms.core.aggregate import AGGREGATE_INPUT_COLUMNS, KINDS, fils_of, keyed, sums
from transforms.core.scanner import FileScan
from transforms.dedup.fingerprints import fingerprints, in_sorted
from transforms.dedup.table import CONTENT_COLUMNS, Deduplicated, against_existing
from transforms.storage.committed import current_payment_files
from transforms.storage.files import list_files, list_tree, read_parquet, write_parquet
from transforms.storage.readback import scan_files

DEFAULT_MAX_ROWS_PER_FILE = 2_000_000
# A rejected row carries its redacted raw event (up to 2 KB): ~0.5 KB in memory on the
# benchmark's lines against ~0.1 for a payment row, so a rejected file holds fewer rows. A
# night's rejections (a few hundred) fit in one file; a million-row backfill of a producer's
# broken format is four, and the step that writes them holds about one at a time.
DEFAULT_REJECTED_ROWS_PER_FILE = 250_000
_EXISTING_COLUMNS = list(dict.fromkeys(["event_id", *CONTENT_COLUMNS, *AGGREGATE_INPUT_COLUMNS]))


@dataclass(frozen=True)
class WriteSettings:
    """How a batch run writes: the run (where, and the key that names its files, derived from
    its input) and the size of its files."""

    run: Run
    max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE
    rejected_rows_per_file: int = DEFAULT_REJECTED_ROWS_PER_FILE

    @property
    def root(self) -> str:
        return self.run.output_root

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def input_key(self) -> str:
        return self.run.input_key

    def is_own(self, file_name: str) -> bool:
        """Whether a data file is this input's own (an earlier run of it wrote it, and this
        run overwrites it), so no writer counts its rows as already written."""
        return layout.input_key_of(file_name) == self.input_key


@dataclass(frozen=True)
class StagedFile:
    """A file written to the run's staging folder, to be moved to `final` by the commit.

    `scan` is what the privacy scanner found reading the staged file back after it was written
    (`stage`, `scanned`), by the worker that wrote it: the scans of a run's files then run in
    parallel, not one after another in the commit step. The commit refuses the run if any scan
    found a secret, and scans itself the files that come without one.
    """

    staged: str
    final: str
    scan: FileScan | None = field(default=None, compare=False)
    scan_seconds: float = field(default=0.0, compare=False)


def stored_days(
    root: str,
    channel: str,
    prints: np.ndarray,
    is_own: Callable[[str], bool],
    threads: int = 8,
) -> pa.Table:
    """(event_id, event_date) of the stored payment rows of `channel` whose id's fingerprint
    is in `prints` (sorted, `transforms.dedup.fingerprints`: the caller compares the ids
    themselves), from every partition's files but those `is_own` claims (given a file name):
    read one file's event_id column at a time, so that memory holds the fingerprints and one
    file, never the whole history (measured in the notes of issues #9 and #11)."""
    listed = current_payment_files(root, list_tree(layout.channel_dir(root, channel)))
    paths = [p for p in listed if not is_own(posixpath.basename(p))]

    def matches(path: str) -> pa.Table | None:
        stored = read_parquet(path, ["event_id"])["event_id"].combine_chunks()
        hit = in_sorted(fingerprints(stored), prints)
        if not hit.any():
            return None
        found = stored.filter(pa.array(hit))
        days = pa.array([layout.event_date_of(path)] * len(found), pa.date32())
        return pa.table({"event_id": found, "event_date": days})

    empty = pa.schema([("event_id", pa.string()), ("event_date", pa.date32())]).empty_table()
    with ThreadPoolExecutor(max_workers=threads) as pool:  # on GCS a read is mostly waiting
        found = [t for t in pool.map(matches, paths) if t is not None]
    return pa.concat_tables([empty, *found])


def stage(table: pa.Table, final: str, root: str, run_id: str, scan: bool = True) -> StagedFile:
    """Write `table` where the run stages `final`; with `scan`, read it back and scan it
    (`StagedFile`), else leave that to `scanned` (many files at once)."""
    staged = layout.staged(root, run_id, final)
    write_parquet(table, staged)
    written = StagedFile(staged, final)
    return scanned([written])[0] if scan else written


def scanned(files: Sequence[StagedFile]) -> list[StagedFile]:
    """The files with what reading each back found (`transforms.core.scanner.scan_files`). Many
    files at once cost far less than one at a time: a scan's fixed cost (opening the file, a
    regex compiled per pyarrow call) is ~4 ms, more than its rows cost in most partitions."""
    started = time.thread_time()  # CPU time of this thread: the cost, not the waits
    scans = scan_files([(f.staged, f.final) for f in files], threads=1)
    each = (time.thread_time() - started) / max(len(files), 1)
    return [StagedFile(f.staged, f.final, scan, each) for f, scan in zip(files, scans, strict=True)]


@dataclass
class PartitionWrite:
    """What staging one partition produced, for the commit step and the manifest."""

    result: Deduplicated  # rows left out because an earlier run wrote them already
    aggregates: dict[str, pa.Table] = field(default_factory=dict)  # kind -> keyed figures
    staged: list[StagedFile] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # own files of an earlier run, now superseded
    stats: st.Stats = field(default_factory=Counter)  # accepted rows and amounts


def existing_rows(directory: str, is_own: Callable[[str], bool]) -> tuple[pa.Table, list[str]]:
    """Rows other writers already committed to a partition (the columns de-duplication and
    aggregates need), and the paths of the files `is_own` (given a file name) claims. Files a
    compaction wrote or removed count as `current_payment_files` says (never both copies)."""
    others: list[str] = []
    own: list[str] = []
    for path in current_payment_files(layout.root_of_partition(directory), list_files(directory)):
        (own if is_own(posixpath.basename(path)) else others).append(path)
    schema = payment_schema()
    empty = pa.schema([schema.field(c) for c in _EXISTING_COLUMNS]).empty_table()
    tables = [read_parquet(p, _EXISTING_COLUMNS) for p in others]
    return (pa.concat_tables([empty, *tables], promote_options="permissive")), own


def write_partition(
    channel: str, event_date: date, rows: pa.Table, settings: WriteSettings
) -> PartitionWrite:
    """Stage a partition's new rows and its recomputed aggregates; count what was accepted."""
    directory = layout.payments_dir(settings.root, channel, event_date)
    existing, own = existing_rows(directory, settings.is_own)
    result = against_existing(rows, existing)
    out = PartitionWrite(result)
    new = result.winners.sort_by(list(PAYMENT_FILE_ORDER))
    file_rows = new.select(payment_file_schema().names)
    written: set[str] = set()
    for index, start in enumerate(range(0, new.num_rows, settings.max_rows_per_file)):
        final = layout.join(directory, layout.part_name(settings.input_key, index))
        chunk = file_rows.slice(start, settings.max_rows_per_file)
        out.staged.append(stage(chunk, final, settings.root, settings.run_id, scan=False))
        written.add(final)
    out.stale = [p for p in own if p not in written]

    everything = pa.concat_tables(
        [existing.select(AGGREGATE_INPUT_COLUMNS), new.select(AGGREGATE_INPUT_COLUMNS)]
    )
    for kind, aggregate in KINDS.items():
        out.aggregates[kind] = keyed(aggregate(everything), kind, channel, event_date)

    out.stats.update(accepted_stats(channel, new))
    return out


def accepted_stats(channel: str, rows: pa.Table) -> st.Stats:
    """The accepted count and amounts per status of rows written for a channel."""
    stats: st.Stats = Counter({st.accepted_key(channel): rows.num_rows})
    # Summed as decimal(38,3), then taken as Python ints: exact, however many rows.
    for row in sums(rows, ["status"]).to_pylist():
        stats[st.accepted_fils_key(channel, row["status"])] += fils_of(row["amount"])
    return stats
