"""File operations on local paths and gs:// URIs alike, through Beam's FileSystems.

Kept in one module so the commit protocol (stage, then rename into place) has one
implementation, whatever the store.
"""

from __future__ import annotations

import os
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.layout import join

# Readers like few, large files with statistics; zstd is compact and fast to decode.
COMPRESSION = "zstd"
ROW_GROUP_ROWS = 256 * 1024


def _is_local(path: str) -> bool:
    return "://" not in path


def write_parquet(table: pa.Table, path: str) -> None:
    """Write one Parquet file (zstd, statistics on, bounded row groups)."""
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        pq.write_table(
            table,
            handle,
            compression=COMPRESSION,
            row_group_size=ROW_GROUP_ROWS,
            write_statistics=True,
        )


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return pq.read_table(handle, columns=columns)


def list_files(directory: str, pattern: str = "*.parquet") -> list[str]:
    """Paths of files directly in a directory matching a glob (empty if it does not exist)."""
    result = FileSystems.match([join(directory, pattern)])[0]
    return sorted(m.path for m in result.metadata_list)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        data: bytes = handle.read()
    return data


def exists(path: str) -> bool:
    return bool(FileSystems.exists(path))


def replace(staged: list[str], final: list[str]) -> None:
    """Move staged files over their final names. Locally each move is an atomic rename; on GCS
    each object appears whole (a copy), so a reader never sees a partial file either way."""
    if not staged:
        return
    for path in final:
        if _is_local(path):
            os.makedirs(posixpath.dirname(path), exist_ok=True)
    FileSystems.rename(staged, final)


def delete(paths: list[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)
