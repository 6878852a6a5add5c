"""What compaction rewrites, into how many files, and the proof that it changed no row.

Pure: no Beam, no I/O. The pipeline (`pipelines/compact.py`) lists the committed files of
each payments partition, asks `needs_rewrite`, rewrites the partition's rows sorted as every
writer sorts them (`schemas.records.PAYMENT_FILE_ORDER`) into `file_count` files, and
publishes only if `differences` between the old rows and the rows read back from the new
files is empty, and the partition's aggregate figures (`aggregate_differences`) are the same.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas.enums import Channel
from schemas.layout import PAYMENTS, partition_of, partition_path
from schemas.money import format_bhd
from schemas.records import PAYMENT_FILE_ORDER
from transforms.core.aggregate import KINDS, fils_of

MEBIBYTE = 1024 * 1024
# Delta and Flink roll at 128 MB; at Bahrain's volume a day's partition is a few MB, so this
# is one file per partition and day (issue 12).
DEFAULT_TARGET_FILE_MB = 128
DEFAULT_MAX_FILES = 1

Partition = tuple[str, date]  # (channel, Bahrain day)


@dataclass(frozen=True)
class PartitionFiles:
    """A payments partition's committed files and their sizes: what compaction may rewrite."""

    channel: str
    event_date: date
    files: tuple[str, ...]
    bytes: int

    @property
    def name(self) -> str:
        return partition_path(self.channel, self.event_date)


def file_count(total_bytes: int, target_bytes: int) -> int:
    """How many files a partition of `total_bytes` is rewritten into: one per target size."""
    return max(1, math.ceil(total_bytes / target_bytes))


def needs_rewrite(partition: PartitionFiles, max_files: int, target_bytes: int) -> bool:
    """Whether rewriting would leave the partition with fewer files, and it holds more than
    `max_files`: a partition already at its target count is left alone, so running
    compaction again changes nothing."""
    count = len(partition.files)
    return count > max(max_files, file_count(partition.bytes, target_bytes))


def parse_partitions(text: str) -> set[Partition]:
    """`channel=X/event_date=Y,...` -> {(X, day)}; ValueError naming the first bad entry."""
    channels = {c.value for c in Channel}
    found: set[Partition] = set()
    for entry in (e.strip().strip("/") for e in text.split(",")):
        if not entry:
            continue
        parts = dict(p.split("=", 1) for p in entry.split("/") if "=" in p)
        channel, day = parts.get("channel"), parts.get("event_date")
        if channel not in channels or day is None or len(parts) != 2 or entry.count("/") != 1:
            raise ValueError(
                f"{entry!r} is not channel=<{'|'.join(sorted(channels))}>/event_date=YYYY-MM-DD"
            )
        try:
            found.add((channel, date.fromisoformat(day)))
        except ValueError:
            raise ValueError(f"{entry!r}: {day!r} is not a date (YYYY-MM-DD)") from None
    if not found:
        raise ValueError(f"{text!r} names no partition")
    return found


def select(
    partitions: Iterable[PartitionFiles],
    max_files: int = DEFAULT_MAX_FILES,
    target_bytes: int = DEFAULT_TARGET_FILE_MB * MEBIBYTE,
    named: set[Partition] | None = None,
    since: date | None = None,
) -> list[PartitionFiles]:
    """The partitions to rewrite, in path order: those `named` (all when None), from `since`
    on, that `needs_rewrite`."""
    return sorted(
        (
            p
            for p in partitions
            if (named is None or (p.channel, p.event_date) in named)
            and (since is None or p.event_date >= since)
            and needs_rewrite(p, max_files, target_bytes)
        ),
        key=lambda p: p.name,
    )


def touched_partitions(files_written: Iterable[str], root: str, yesterday: date) -> list[Partition]:
    """What a batch run compacts once it has committed: every payments partition it wrote to
    (`files_written`, under `root`), and every channel's partition of `yesterday` (the Bahrain
    day the streaming pipeline has just closed)."""
    payments = f"{root.rstrip('/')}/{PAYMENTS}/"
    written = {partition_of(p) for p in files_written if p.startswith(payments)}
    return sorted(written | {(channel.value, yesterday) for channel in Channel})


def in_file_order(rows: pa.Table) -> pa.Table:
    """Rows sorted as every writer sorts a payments file."""
    return rows.sort_by(list(PAYMENT_FILE_ORDER))


def chunks(rows: pa.Table, files: int) -> list[pa.Table]:
    """`rows` cut into `files` slices of nearly equal size, in order (fewer if rows run out)."""
    per_file = max(1, math.ceil(rows.num_rows / files))
    return [rows.slice(start, per_file) for start in range(0, max(rows.num_rows, 1), per_file)]


@dataclass(frozen=True)
class RowsDigest:
    """What the check compares and the manifest records: the rows, the set of event ids (as
    their count and a hash of them sorted), and the exact sum of amount."""

    rows: int
    event_ids: int
    event_ids_sha256: str
    amount_fils: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "amount_bhd": format_bhd(self.amount_fils)}


def digest(rows: pa.Table) -> RowsDigest:
    ids = pc.unique(rows["event_id"].combine_chunks()).sort()
    hashed = hashlib.sha256("\n".join(ids.to_pylist()).encode()).hexdigest()
    total = pc.sum(rows["amount"]).as_py() if rows.num_rows else None
    return RowsDigest(rows.num_rows, len(ids), hashed, fils_of(total) if total is not None else 0)


def differences(old: pa.Table, new: pa.Table) -> list[str]:
    """Why `new` does not hold exactly the rows of `old` (empty when it does): the digests,
    then every column of every row, both taken in file order."""
    before, after = digest(old), digest(new)
    found = [
        f"{name}: {getattr(before, name)} before, {getattr(after, name)} after"
        for name in ("rows", "event_ids", "event_ids_sha256", "amount_fils")
        if getattr(before, name) != getattr(after, name)
    ]
    if old.schema != new.schema:
        found.append(f"columns differ: {old.schema.names} before, {new.schema.names} after")
    elif not found and not in_file_order(old).equals(in_file_order(new)):
        found.append("the same event ids and amounts, but other column values")
    return found


def aggregate_differences(old: pa.Table, new: pa.Table) -> list[str]:
    """Aggregate kinds whose figures for the partition differ between `old` and `new`: the
    month aggregates are figured from partitions (`transforms.core.aggregate`), so equal rows
    must give equal figures; the check says so rather than assumes it. Both are taken in file
    order: `by_service` names a service by the first row of its code, so only the same rows in
    the same order are bound to give the same figures."""
    before, after = in_file_order(old), in_file_order(new)
    return [kind for kind, figure in KINDS.items() if not figure(before).equals(figure(after))]


def totals(partitions: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The manifest's counts over every rewritten partition."""
    listed = list(partitions)
    return {
        "partitions": len(listed),
        "files_before": sum(p["files_before"] for p in listed),
        "files_after": sum(p["files_after"] for p in listed),
        "bytes_before": sum(p["bytes_before"] for p in listed),
        "bytes_after": sum(p["bytes_after"] for p in listed),
        "rows": sum(p["rows"]["rows"] for p in listed),
    }
