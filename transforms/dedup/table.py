"""De-duplication by event_id: one row per event, a redelivery counted, a conflict rejected.

Pure Arrow functions here; `transforms.batch.stage` wraps them for the batch pipeline. The
winner among rows sharing an event_id is the first in input order (source file, then line,
then message id), so the same input always keeps the same row whatever order workers ran in.

Rows are shuffled once, by Hive partition, and de-duplicated there. A redelivery whose
timestamp moved it to another day's partition is found apart, from a small index of ids
grouped by channel (`cross_partition_losers`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import payment_schema
from schemas.enums import RejectCode, RejectStep
from schemas.run import Run
from schemas.timekeeping import EPOCH_DATE
from transforms.core import stats as st
from transforms.core.blocks import RejectedInput, rejected_table
from transforms.core.columnar import runs
from transforms.core.validate import Rejection

ORDER = [
    ("event_id", "ascending"),
    ("source_file", "ascending"),
    ("source_line", "ascending"),
    ("source_message_id", "ascending"),
]
ORIGIN_COLUMNS = ["source_file", "source_line", "source_message_id"]
# What makes two deliveries of an event the same payment: every business column, not the
# enrichment (it follows service_code) nor the lineage. Channel and day follow from the id
# and occurred_at.
CONTENT_COLUMNS = [
    "service_code",
    "amount",
    "currency",
    "status",
    "payment_method",
    "occurred_at",
    "payer_key",
    "card_last4",
    "kiosk_id",
    "kiosk_site",
    "app_id",
    "app_version",
    "app_os",
]
INDEX_COLUMNS = ["event_id", "channel", "event_date", *ORIGIN_COLUMNS, *CONTENT_COLUMNS]


@dataclass
class Deduplicated:
    winners: pa.Table
    conflicts: pa.Table  # losing rows whose content differs from the winner's
    conflict_detail: list[str]  # per conflict: which columns differ, and from which row
    stats: st.Stats


def split_by_partition(table: pa.Table) -> Iterator[tuple[tuple[str, str], pa.Table]]:
    """((channel, ISO event_date), rows) for each Hive partition present in the table; the key
    is plain strings so Beam can encode it deterministically for the GroupByKey."""
    if table.num_rows == 0:
        return
    ordered = table.sort_by([("channel", "ascending"), ("event_date", "ascending")])
    channels = ordered["channel"].to_numpy(zero_copy_only=False)
    days = ordered["event_date"].cast(pa.int32()).to_numpy()
    for start, rows in runs(ordered, [channels, days]):
        day = EPOCH_DATE + timedelta(days=int(days[start]))
        yield (str(channels[start]), day.isoformat()), rows


def index_schema() -> pa.Schema:
    """Columns of the event index shuffled to find redeliveries across partitions."""
    schema = payment_schema()
    return pa.schema([schema.field(c) for c in INDEX_COLUMNS])


def loser_schema() -> pa.Schema:
    return index_schema().append(pa.field("conflict_detail", pa.string()))


def _first_of_each_id(ordered: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(is first row of its event_id, index of that first row) of rows sorted by ORDER."""
    ids = ordered["event_id"].combine_chunks()
    n = len(ids)
    first = np.ones(n, dtype=bool)
    if n > 1:
        first[1:] = ~pc.equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
    return first, np.maximum.accumulate(np.where(first, np.arange(n), 0))


def _same(a: pa.ChunkedArray | pa.Array, b: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Row-wise equality where two nulls are equal."""
    equal = pc.fill_null(pc.equal(a, b), False)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return np.asarray(pc.or_(equal, both_null).to_numpy(zero_copy_only=False), dtype=bool)


def differing(table: pa.Table, other: pa.Table) -> list[list[str]]:
    """For each row pair, the content columns whose values differ (empty: a redelivery)."""
    diffs: list[list[str]] = [[] for _ in range(table.num_rows)]
    for column in CONTENT_COLUMNS:
        # Redeliveries are nearly always exact: a whole column alike (nulls where the other's
        # are) is one call, where row-wise equality costs five (2.7 of the ~27 ms of staging a
        # partition, issue #11).
        if table[column].equals(other[column]):
            continue
        for row in np.flatnonzero(~_same(table[column], other[column])).tolist():
            diffs[row].append(column)
    return diffs


def _detail(columns: list[str], winner_origin: tuple[object, ...]) -> str:
    where = ":".join(str(p) for p in winner_origin if p is not None)
    return f"differs in {', '.join(columns)} from the row kept ({where})"


def cross_partition_losers(index: pa.Table) -> pa.Table:
    """Index rows (INDEX_COLUMNS) whose event_id was first seen, in input order, in another
    partition, with `conflict_detail` (null for an exact redelivery)."""
    ordered = index.select(INDEX_COLUMNS).sort_by(ORDER)
    first, winner = _first_of_each_id(ordered)
    take = pa.array(winner, pa.int64())
    winners = ordered.take(take)
    moved = ~_same(ordered["channel"], winners["channel"]) | ~_same(
        ordered["event_date"], winners["event_date"]
    )
    losers = ~first & moved
    rows = np.flatnonzero(losers)
    diffs = differing(
        ordered.take(pa.array(rows, pa.int64())), winners.take(pa.array(rows, pa.int64()))
    )
    origins = _origin_keys(winners, rows)
    details = [_detail(d, o[1:]) if d else None for d, o in zip(diffs, origins, strict=True)]
    return ordered.filter(pa.array(losers)).append_column(
        "conflict_detail", pa.array(details, pa.string())
    )


def stored_elsewhere_losers(index: pa.Table, stored: pa.Table) -> pa.Table:
    """Index rows of this run (INDEX_COLUMNS) whose event_id an earlier run already wrote to
    another day's partition of the channel, and not to the row's own (`stored`: event_id,
    event_date of the stored rows; there the partition's own check decides), as losers with
    a `conflict_detail`: an event_id written once is never written again, in any partition."""
    days: dict[str, set[object]] = {}
    for event_id, day in zip(
        stored["event_id"].to_pylist(), stored["event_date"].to_pylist(), strict=True
    ):
        days.setdefault(event_id, set()).add(day)
    if not days:
        return loser_schema().empty_table()
    candidates = index.filter(pc.is_in(index["event_id"], value_set=pa.array(list(days))))
    keep: list[int] = []
    details: list[str] = []
    for row, (event_id, day) in enumerate(
        zip(
            candidates["event_id"].to_pylist(),
            candidates["event_date"].to_pylist(),
            strict=True,
        )
    ):
        written = days[event_id]
        if day not in written:
            keep.append(row)
            first = min(written)  # type: ignore[type-var]
            details.append(f"already written to the partition of {first} by an earlier run")
    losers = candidates.take(pa.array(keep, pa.int64())).select(INDEX_COLUMNS)
    return losers.append_column("conflict_detail", pa.array(details, pa.string()))


def _origin_keys(table: pa.Table, rows: np.ndarray) -> list[tuple[object, ...]]:
    take = pa.array(rows, pa.int64())
    columns = [table[c].take(take).to_pylist() for c in ["event_id", *ORIGIN_COLUMNS]]
    return list(zip(*columns, strict=True))


def drop_losers(table: pa.Table, losers: pa.Table) -> Deduplicated:
    """The table without the given loser rows (matched by event_id and origin): those without
    a `conflict_detail` are duplicates, the others conflicts."""
    stats: st.Stats = Counter()
    if table.num_rows == 0 or losers.num_rows == 0:
        return Deduplicated(table, table.slice(0, 0), [], stats)
    candidates = np.flatnonzero(
        pc.is_in(table["event_id"], value_set=losers["event_id"]).to_numpy(zero_copy_only=False)
    )
    lost = dict(
        zip(
            _origin_keys(losers, np.arange(losers.num_rows)),
            losers["conflict_detail"].to_pylist(),
            strict=True,
        )
    )
    drop = np.zeros(table.num_rows, dtype=bool)
    conflict = np.zeros(table.num_rows, dtype=bool)
    details: list[str] = []
    for row, key in zip(candidates.tolist(), _origin_keys(table, candidates), strict=True):
        if key in lost:
            drop[row] = True
            detail = lost[key]
            if detail is None:
                stats[st.duplicate_key(table["channel"][row].as_py(), "in_input")] += 1
            else:
                conflict[row] = True
                details.append(detail)
    return Deduplicated(
        table.filter(pa.array(~drop)), table.filter(pa.array(conflict)), details, stats
    )


def merge_results(winners: pa.Table, *parts: Deduplicated) -> Deduplicated:
    """One result of several de-duplication passes over the same rows, the last winners kept."""
    stats: st.Stats = Counter()
    for part in parts:
        stats.update(part.stats)
    conflicts = pa.concat_tables([p.conflicts for p in parts], promote_options="permissive")
    return Deduplicated(winners, conflicts, [d for p in parts for d in p.conflict_detail], stats)


def deduplicate(table: pa.Table) -> Deduplicated:
    """Keep the first row of each event_id; count exact redeliveries; set conflicts apart."""
    stats: st.Stats = Counter()
    if table.num_rows == 0:
        return Deduplicated(table, table, [], stats)
    # Only rows whose id repeats need ordering and comparing: find them by hashing first.
    counts = table.group_by("event_id", use_threads=False).aggregate([("event_id", "count")])
    repeated = counts["event_id"].filter(pc.greater(counts["event_id_count"], 1))
    if len(repeated) == 0:
        return Deduplicated(table, table.slice(0, 0), [], stats)
    in_repeated = pc.is_in(table["event_id"], value_set=repeated.combine_chunks())
    single = table.filter(pc.invert(in_repeated))
    result = _deduplicate_repeated(table.filter(in_repeated))
    return Deduplicated(
        pa.concat_tables([single, result.winners]),
        result.conflicts,
        result.conflict_detail,
        result.stats,
    )


def _deduplicate_repeated(table: pa.Table) -> Deduplicated:
    """`deduplicate` for rows whose every event_id occurs more than once."""
    stats: st.Stats = Counter()
    ordered = table.sort_by(ORDER)
    first, winner_index = _first_of_each_id(ordered)
    later = np.flatnonzero(~first)
    if later.size == 0:
        return Deduplicated(ordered, ordered.slice(0, 0), [], stats)
    take_later = pa.array(later, pa.int64())
    winners_of_later = ordered.take(pa.array(winner_index[later], pa.int64()))
    diffs = differing(ordered.take(take_later), winners_of_later)
    is_conflict = np.array([bool(d) for d in diffs])
    for channel in ordered["channel"].take(take_later).filter(pa.array(~is_conflict)).to_pylist():
        stats[st.duplicate_key(channel, "in_input")] += 1
    origins = _origin_keys(winners_of_later, np.flatnonzero(is_conflict))
    details = [_detail(d, o[1:]) for d, o in zip([d for d in diffs if d], origins, strict=True)]
    return Deduplicated(
        ordered.filter(pa.array(first)),
        ordered.take(pa.array(later[is_conflict], pa.int64())),
        details,
        stats,
    )


def against_existing(table: pa.Table, existing: pa.Table) -> Deduplicated:
    """Drop rows an earlier run already wrote (`existing`: event_id and CONTENT_COLUMNS): the
    same content is a duplicate, other content a conflict."""
    stats: st.Stats = Counter()
    if table.num_rows == 0 or existing.num_rows == 0:
        return Deduplicated(table, table.slice(0, 0), [], stats)
    position = pc.index_in(table["event_id"], value_set=existing["event_id"].combine_chunks())
    seen = pc.is_valid(position).to_numpy(zero_copy_only=False)
    if not seen.any():
        return Deduplicated(table, table.slice(0, 0), [], stats)
    rows = np.flatnonzero(seen)
    earlier = existing.take(position.filter(pa.array(seen)))
    diffs = differing(table.take(pa.array(rows, pa.int64())), earlier)
    conflict = np.zeros(table.num_rows, dtype=bool)
    details: list[str] = []
    for row, diff in zip(rows.tolist(), diffs, strict=True):
        if diff:
            conflict[row] = True
            details.append(f"differs in {', '.join(diff)} from the row already written")
        else:
            stats[st.duplicate_key(table["channel"][row].as_py(), "in_output")] += 1
    return Deduplicated(
        table.filter(pa.array(~seen)), table.filter(pa.array(conflict)), details, stats
    )


def conflict_rejections(result: Deduplicated) -> Iterator[RejectedInput]:
    """Rejections for conflicting rows: the normalised row itself (already free of CPR and card
    number) stands in for the raw input, which is not kept after validation."""
    rows = result.conflicts.to_pylist()
    for row, detail in zip(rows, result.conflict_detail, strict=True):
        reason = f"event_id {row['event_id']} was already accepted; this one {detail}"
        rejection = Rejection(
            RejectCode.DUPLICATE_CONFLICT,
            reason,
            RejectStep.DEDUPLICATE,
            row["channel"],
            row["event_id"],
        )
        yield RejectedInput(
            rejection,
            orjson.dumps(row, default=str),
            row["source_file"],
            row["source_line"],
            row["source_message_id"],
        )


def rejected_conflicts(result: Deduplicated, run: Run) -> tuple[pa.Table, st.Stats]:
    """The rejected rows of a de-duplication's conflicts, stamped with the run's lineage and
    clock, and their count per channel: the one way every step that finds a conflict (batch
    staging, streaming state, a streaming pane against the files) books it."""
    table = rejected_table(conflict_rejections(result), run.run_id, run.ingested_micros)
    code = RejectCode.DUPLICATE_CONFLICT.value
    counts = Counter(result.conflicts["channel"].to_pylist())
    return table, Counter({st.rejected_key(ch, code): n for ch, n in counts.items()})
