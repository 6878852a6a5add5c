"""File operations on local paths and gs:// URIs alike: the product's only I/O module.

Data files (Parquet, Arrow fragments) go through Beam's FileSystems, which streams them
whatever the store. On gs:// the small objects of the commit protocol (manifests, stats,
`_SUCCESS`), folder listings and deletes go through google-cloud-storage (`transforms.storage.gcs`);
locally everything stays on FileSystems. Kept in one module so the commit protocol (stage,
then move into place) has one implementation, whatever the store.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.layout import join
from transforms.storage import gcs

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


def parquet_rows(path: str) -> int:
    """The number of rows of a Parquet file, from its footer alone."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        rows: int = pq.ParquetFile(handle).metadata.num_rows
    return rows


def list_files(directory: str, pattern: str = "*.parquet") -> list[str]:
    """Paths of files directly in a directory matching a glob (empty if it does not exist)."""
    if gcs.is_gcs(directory):
        return gcs.list_files(directory, pattern)
    if _is_local(directory):
        # One scandir of the folder: Beam's match lists the whole tree under it and compiles
        # a regular expression for every folder (1.3 ms a partition staged, issue #11).
        return sorted(path for path, _ in _local_files(directory, pattern))
    result = FileSystems.match([join(directory, pattern)])[0]
    return sorted(m.path for m in result.metadata_list)


def _local_files(directory: str, pattern: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path, status) of the files directly in a local folder whose names match a glob (a
    leading dot included, as Beam's match does); none if the folder does not exist."""
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    with entries:
        for entry in entries:
            if fnmatch.fnmatchcase(entry.name, pattern):
                with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                    if entry.is_file():
                        yield join(directory, entry.name), entry.stat()


# (bytes, version): a file rewritten under the same name gets a new version (on GCS its
# generation, locally its modification time in nanoseconds).
FileVersion = tuple[int, int]


def list_versions(directory: str, pattern: str = "*.parquet") -> dict[str, FileVersion]:
    """{path: (bytes, version)} of the files directly in a directory matching a glob (empty if
    it does not exist): what a reader keeps a file's content by, to read it again only once
    it changed."""
    if gcs.is_gcs(directory):
        return gcs.list_versions(directory, pattern)
    found = {path: (st.st_size, st.st_mtime_ns) for path, st in _local_files(directory, pattern)}
    return dict(sorted(found.items()))


def list_tree(directory: str, pattern: str = "*.parquet") -> list[str]:
    """Paths of files anywhere under a directory whose names match a glob, sorted."""
    if gcs.is_gcs(directory):
        return gcs.list_tree(directory, pattern)
    if not _is_local(directory):
        raise ValueError(f"cannot list {directory!r}: only local folders and gs:// are supported")
    return sorted(str(p) for p in Path(directory).rglob(pattern) if p.is_file())


def sizes(paths: list[str]) -> list[int]:
    """Bytes of each file (local or gs://), in the order given: what compaction sizes by."""
    if not paths:
        return []
    return [result.metadata_list[0].size_in_bytes for result in FileSystems.match(paths)]


def write_text(path: str, text: str) -> None:
    """Write a small text file whole: a manifest, a stats file, a marker."""
    if gcs.is_gcs(path):
        content_type = "application/json" if path.endswith(".json") else "text/plain"
        gcs.write_bytes(path, text.encode(), content_type)
        return
    write_bytes(path, text.encode())


def read_text(path: str) -> str:
    if gcs.is_gcs(path):
        return gcs.read_bytes(path).decode()
    return read_bytes(path).decode()


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        data: bytes = handle.read()
    return data


_FINGERPRINT_CHUNK = 1 << 20


def fingerprint(path: str) -> str:
    """What identifies a file's content: on GCS its stored CRC32C (no read), locally the CRC32
    of its bytes (read once, ~2 GB/s)."""
    if gcs.is_gcs(path):
        return gcs.fingerprint(path)
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_FINGERPRINT_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}"


def exists(path: str) -> bool:
    """Whether a file exists (on GCS an object: a folder is never found)."""
    if gcs.is_gcs(path):
        return gcs.exists(path)
    return bool(FileSystems.exists(path))


def replace(staged: list[str], final: list[str]) -> None:
    """Move staged files over their final names. Locally each move is an atomic rename. GCS
    has no rename: each object is copied (the copy appears whole) and then the staged one
    deleted, so a reader never sees a partial file either way; a move interrupted between the
    two leaves only a staged leftover. Moving again after a partial move finishes the job."""
    if not staged:
        return
    for path in final:
        if _is_local(path):
            os.makedirs(posixpath.dirname(path), exist_ok=True)
    try:
        FileSystems.rename(staged, final)
    except BeamIOError:
        # A retried commit (Dataflow retries a failed bundle) finds some files already
        # moved: staged copy gone, final one there. Those are done; move the rest.
        pairs = list(zip(staged, final, strict=True))
        still_staged = {s for s in staged if exists(s)}
        if any(s not in still_staged and not exists(f) for s, f in pairs):
            raise  # neither staged nor published: a real loss, not a retry
        pending = [(s, f) for s, f in pairs if s in still_staged]
        if pending:
            FileSystems.rename([s for s, _ in pending], [f for _, f in pending])


def delete(paths: list[str]) -> None:
    """Delete files; one that is already gone is skipped."""
    gcs.delete(p for p in paths if gcs.is_gcs(p))
    existing = [p for p in paths if not gcs.is_gcs(p) and FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def remove_if_empty(directory: str) -> None:
    """Remove a local folder that holds nothing (gs:// has no folders to leave behind)."""
    if gcs.is_gcs(directory):
        return
    with contextlib.suppress(OSError):  # not empty (another run's staging), or gone
        os.rmdir(directory)


def delete_tree(directory: str) -> None:
    """Delete a folder and everything under it; nothing if it does not exist."""
    if gcs.is_gcs(directory):
        gcs.delete_prefix(directory)
    elif FileSystems.exists(directory):
        FileSystems.delete([directory])
