"""The rejected files of a batch run: every rejected event of its input, in input order, in
files of a bounded number of rows.

Rejected rows are spilled to fragment files where they are found (each block's invalid lines,
each partition's conflicts), and one step writes them out. That step must not hold them all at
once: a row carries its redacted raw event (up to 2 KB), and a night whose million events were
all rejected (a producer's format change) held 2.1 GB in that one process when it read every
fragment into one table and sorted it (benchmarks/RESULTS.md); ten million would have needed
~20 GB. So each fragment is sorted when it is spilled, its first key travels with its path, and
the step merges the fragments in order of their first keys: a row is final once it sorts
before the first key of every fragment not yet read. A block's fragment covers a range of lines
that no other block's overlaps, so what waits is about one fragment; a partition's conflicts
span the input, but there are few of them.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa

from schemas import layout
from schemas.arrow import rejected_schema
from transforms.batch.stage import read_fragments, spill
from transforms.core.columnar import ArrowBlock
from transforms.storage.partitions import StagedFile, WriteSettings, scanned, stage

log = logging.getLogger(__name__)

# The order of rows in the rejected files: where each came from, as an operator looks it up.
REJECTED_FILE_ORDER = ("source_file", "source_line", "source_message_id", "error_code")
_SORT_KEYS = [(column, "ascending") for column in REJECTED_FILE_ORDER]

# A row's position in REJECTED_FILE_ORDER, comparable in Python: each value as (is null, value),
# so nulls sort last, as Arrow's sort puts them by default.
Key = tuple[tuple[bool, Any], ...]


class RejectedFragment(NamedTuple):
    """A spilled fragment of rejected rows, sorted, and the key of its first row."""

    first: Key
    path: str


def key_at(table: pa.Table, row: int) -> Key:
    return tuple(
        (value is None, value)
        for value in (table.column(column)[row].as_py() for column in REJECTED_FILE_ORDER)
    )


def in_file_order(table: pa.Table) -> pa.Table:
    return table.sort_by(_SORT_KEYS)


def merged_in_order(
    fragments: Sequence[RejectedFragment], load: Callable[[str], pa.Table]
) -> Iterator[pa.Table]:
    """The rows of every fragment (each sorted), as tables that follow one another in
    REJECTED_FILE_ORDER. `load` reads a fragment; each is read once, in order of first keys,
    and only the rows that may still be overtaken by an unread fragment are held."""
    ordered = sorted(fragments, key=lambda f: f.first)
    waiting: pa.Table | None = None
    for n, fragment in enumerate(ordered):
        rows = load(fragment.path)
        waiting = rows if waiting is None else in_file_order(pa.concat_tables([waiting, rows]))
        if n + 1 == len(ordered):
            break
        held, bound = waiting, ordered[n + 1].first
        cut = bisect.bisect_left(range(held.num_rows), bound, key=lambda r: key_at(held, r))
        if cut:
            yield waiting.slice(0, cut)
            waiting = waiting.slice(cut)
    if waiting is not None and waiting.num_rows:
        yield waiting


def in_files_of(tables: Iterable[pa.Table], rows_per_file: int) -> Iterator[pa.Table]:
    """The rows of `tables`, in order, as tables of `rows_per_file` rows (the last may hold
    fewer), each compacted so it holds no part of the tables it was cut from."""
    held: list[pa.Table] = []
    count = 0
    for table in tables:
        held.append(table)
        count += table.num_rows
        while count >= rows_per_file:
            rows = pa.concat_tables(held)
            yield rows.slice(0, rows_per_file).combine_chunks()
            rest = rows.slice(rows_per_file)
            held, count = ([rest] if rest.num_rows else []), rest.num_rows
    if count:
        yield pa.concat_tables(held).combine_chunks()


def spill_rejected(block: ArrowBlock, settings: WriteSettings) -> RejectedFragment:
    """A block of rejected rows, sorted, written to a fragment file."""
    rows = in_file_order(block.table())
    root, run_id = settings.root, settings.run_id
    path = spill(
        ArrowBlock.of(rows), lambda name: layout.rejected_fragment_path(root, run_id, name)
    )
    return RejectedFragment(key_at(rows, 0) if rows.num_rows else (), path)


def stage_rejected(
    fragments: Iterable[RejectedFragment], settings: WriteSettings
) -> Iterator[StagedFile]:
    """Stage this input's rejected events, spilled to `fragments`, as its rejected files (none
    when nothing was rejected: the commit then removes those an earlier run of the input left).
    A fragment reported twice (a retried bundle rewrites the same content-named file) counts
    once. The files are not scanned here: `ScanRejectedFile` reads them back on every worker."""
    unique = list({f.path: f for f in fragments}.values())
    schema = rejected_schema()
    started = time.monotonic()
    merged = merged_in_order(unique, lambda path: read_fragments([path], schema))
    for index, rows in enumerate(in_files_of(merged, settings.rejected_rows_per_file)):
        final = layout.rejected_path(settings.root, settings.input_key, index)
        yield stage(rows, final, settings.root, settings.run_id, scan=False)
        log.info(
            "staged rejected file %d (%s rows, %.1f s since the first of %s fragments)",
            index,
            f"{rows.num_rows:,}",
            time.monotonic() - started,
            f"{len(unique):,}",
        )


def scan_rejected_file(staged: StagedFile) -> StagedFile:
    """A staged rejected file read back and scanned with the privacy rule."""
    [file] = scanned([staged])
    return file


class StageRejected(beam.PTransform):  # type: ignore[misc]
    """(rejected blocks of the events, rejected conflicts of the partitions) -> the staged,
    scanned rejected files.

    Each block is spilled to a fragment file in the step that made it, and only paths (and
    first keys) go further: the local runner keeps every element passed between stages in the
    launcher's memory, and a Flatten of the two inputs is such a boundary (a night whose 1M
    events were all rejected held 1.6 GB there; issue #11's note). Collecting the blocks
    themselves (`ToList`) once held every rejected row in one process, several times over.
    Rows lost on the way, seen once (60,000 of 999,985, cause not established), are caught by
    `commit.check_rejected_rows`.
    """

    def __init__(self, settings: WriteSettings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, rejected: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        settings = self._settings
        events, conflicts = rejected
        spilled = (
            events | "SpillRejectedEvents" >> beam.Map(spill_rejected, settings),
            conflicts | "SpillConflicts" >> beam.Map(spill_rejected, settings),
        )
        return (
            spilled
            | "AllFragments" >> beam.Flatten()
            | "CollectRejected" >> beam.combiners.ToList()
            | "StageRejectedFile" >> beam.FlatMap(stage_rejected, settings)
            | "SpreadRejectedFiles" >> beam.Reshuffle()
            | "ScanRejectedFile" >> beam.Map(scan_rejected_file)
        )
