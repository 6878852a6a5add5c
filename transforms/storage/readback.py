"""Written files read back for the privacy scan (`transforms.core.scanner`): local or
gs://, a Parquet file's text columns, any other file as lines of text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.core.scanner import (
    FileScan,
    Leak,
    origin_of,
    scan_table,
    scan_tables,
    strength_of,
)
from transforms.storage.files import read_bytes

PARQUET_MAGIC = b"PAR1"
TEXT_COLUMN = "text"


_LINEAGE_COLUMNS = frozenset({"source_file", "source_line", "source_message_id"})


def _is_text(field: pa.Field) -> bool:
    value_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    return bool(pa.types.is_string(value_type) or pa.types.is_large_string(value_type))


def read_back(path: str) -> pa.Table:
    """A written file as a table (local or gs://) of what the scan reads: a Parquet file's
    string columns (not those the product itself fills, `SYSTEM_COLUMNS`: a third of the bytes
    of a payments file), any other file as text, one row per line of a `text` column. A file
    that starts like Parquet but does not read as Parquet raises: it cannot be checked."""
    data = read_bytes(path)
    if data.startswith(PARQUET_MAGIC):
        schema = pq.read_schema(pa.BufferReader(data))
        text = [f.name for f in schema if _is_text(f) and strength_of(f.name) is not None]
        # Text as dictionaries, the way Parquet stores most of it: the scan then reads each
        # distinct value once (a day's service names, statuses, sites), not once per row.
        parquet = pq.ParquetFile(pa.BufferReader(data), read_dictionary=text)
        # In the caller's thread: the workers that call this are the parallelism, and the
        # cost the benchmark reports is this thread's CPU time.
        return parquet.read(columns=text, use_threads=False)
    lines = data.decode("utf-8", "replace").splitlines()
    return pa.table({TEXT_COLUMN: pa.array(lines, pa.string())})


def _lineage_of(path: str) -> pa.Table | None:
    """The lineage columns of a written Parquet file (None for another file): read only when
    the scan found a leak, to say where its rows came from."""
    data = read_bytes(path)
    if not data.startswith(PARQUET_MAGIC):
        return None
    names = pq.read_schema(pa.BufferReader(data)).names
    return pq.read_table(pa.BufferReader(data), columns=[n for n in names if n in _LINEAGE_COLUMNS])


def _file_scan(path: str, table: pa.Table, leaks: list[Leak]) -> FileScan:
    lineage = _lineage_of(path) if leaks else None
    origins = {leak.row: origin_of(lineage, leak.row) for leak in leaks} if lineage else {}
    return FileScan(path, table.num_rows, leaks, {r: o for r, o in origins.items() if o})


def scan_file(path: str, name: str | None = None) -> FileScan:
    """Read a written file back (`read_back`) and scan every string column (nothing written
    goes unscanned). `name` is how leaks name the file (default: its path), e.g. the final
    path of a staged file."""
    table = read_back(path)
    return _file_scan(path, table, scan_table(table, name or path))


def scan_files(
    files: Sequence[tuple[str, str]],
    read: Callable[[str], pa.Table | None] = read_back,
    threads: int = 8,
    group: int = 64,
) -> list[FileScan]:
    """`scan_file(path, name)` for each (path, name), `group` files at a time: read by
    `threads` threads (on GCS a read is mostly waiting), pre-filtered together. `read` may
    return None for a file to skip (e.g. one already published by an earlier attempt)."""
    scans: list[FileScan] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(files), group):
            batch = files[start : start + group]
            paths = [path for path, _ in batch]
            # One thread reads in the caller's own (local files: no waiting to overlap).
            tables = list(map(read, paths) if threads == 1 else pool.map(read, paths))
            kept = [(f, t) for f, t in zip(batch, tables, strict=True) if t is not None]
            leaks = scan_tables([(table, name) for (_, name), table in kept])
            scans.extend(
                _file_scan(path, table, found)
                for ((path, _), table), found in zip(kept, leaks, strict=True)
            )
    return scans
