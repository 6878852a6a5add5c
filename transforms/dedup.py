"""De-duplication by event_id: one row per event, a redelivery counted, a conflict rejected.

Pure Arrow functions here; `transforms.batch_write` wraps them for the batch pipeline. The
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
from schemas.enums import RejectCode
from schemas.timekeeping import EPOCH_DATE
from transforms import stats as st
from transforms.blocks import RejectedInput
from transforms.columnar import runs
from transforms.validate import Rejection

ORDER = [
    ("event_id", "ascending"),
    ("source_file", "ascending"),
    ("source_line", "ascending"),
    ("source_message_id", "ascending"),
]
ORIGIN_COLUMNS = ["source_file", "source_line", "source_message_id"]
INDEX_COLUMNS = ["event_id", "record_hash", "channel", "event_date", *ORIGIN_COLUMNS]


@dataclass
class Deduplicated:
    winners: pa.Table
    conflicts: pa.Table  # losing rows whose content differs from the winner's
    conflict_winner_hash: list[str]
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
    return index_schema().append(pa.field("winner_hash", pa.string()))


def _first_of_each_id(ordered: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(is first row of its event_id, index of that first row) of rows sorted by ORDER."""
    ids = ordered["event_id"].combine_chunks()
    n = len(ids)
    first = np.ones(n, dtype=bool)
    if n > 1:
        first[1:] = ~pc.equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
    return first, np.maximum.accumulate(np.where(first, np.arange(n), 0))


def cross_partition_losers(index: pa.Table) -> pa.Table:
    """Index rows (INDEX_COLUMNS) whose event_id was first seen, in input order, in another
    partition; `winner_hash` tells a redelivery from a conflict."""
    ordered = index.select(INDEX_COLUMNS).sort_by(ORDER)
    if ordered.num_rows == 0:
        return ordered.append_column("winner_hash", pa.array([], pa.string()))
    first, winner = _first_of_each_id(ordered)
    take = pa.array(winner)
    moved = pc.or_(
        pc.not_equal(ordered["channel"], ordered["channel"].take(take)),
        pc.not_equal(ordered["event_date"], ordered["event_date"].take(take)),
    ).to_numpy(zero_copy_only=False)
    losers = pa.array(~first & moved)
    return ordered.filter(losers).append_column(
        "winner_hash", ordered["record_hash"].take(take).filter(losers)
    )


def _origin_keys(table: pa.Table, rows: np.ndarray) -> list[tuple[object, ...]]:
    columns = [table[c].take(pa.array(rows)).to_pylist() for c in ["event_id", *ORIGIN_COLUMNS]]
    return list(zip(*columns, strict=True))


def drop_losers(table: pa.Table, losers: pa.Table) -> Deduplicated:
    """The table without the given loser rows (matched by event_id and origin): those with the
    winner's content are duplicates, the others conflicts."""
    stats: st.Stats = Counter()
    if table.num_rows == 0 or losers.num_rows == 0:
        return Deduplicated(table, table.slice(0, 0), [], stats)
    candidates = np.flatnonzero(
        pc.is_in(table["event_id"], value_set=losers["event_id"]).to_numpy(zero_copy_only=False)
    )
    lost = {
        key: (hash_, winner_hash)
        for key, hash_, winner_hash in zip(
            _origin_keys(losers, np.arange(losers.num_rows)),
            losers["record_hash"].to_pylist(),
            losers["winner_hash"].to_pylist(),
            strict=True,
        )
    }
    drop = np.zeros(table.num_rows, dtype=bool)
    conflict = np.zeros(table.num_rows, dtype=bool)
    winner_hashes: list[str] = []
    for row, key in zip(candidates.tolist(), _origin_keys(table, candidates), strict=True):
        if key in lost:
            hash_, winner_hash = lost[key]
            drop[row] = True
            if hash_ == winner_hash:
                stats[st.duplicate_key(table["channel"][row].as_py(), "in_input")] += 1
            else:
                conflict[row] = True
                winner_hashes.append(winner_hash)
    return Deduplicated(
        table.filter(pa.array(~drop)), table.filter(pa.array(conflict)), winner_hashes, stats
    )


def merge_results(winners: pa.Table, *parts: Deduplicated) -> Deduplicated:
    """One result of several de-duplication passes over the same rows, the last winners kept."""
    stats: st.Stats = Counter()
    for part in parts:
        stats.update(part.stats)
    conflicts = pa.concat_tables([p.conflicts for p in parts], promote_options="permissive")
    return Deduplicated(
        winners, conflicts, [h for p in parts for h in p.conflict_winner_hash], stats
    )


def deduplicate(table: pa.Table) -> Deduplicated:
    """Keep the first row of each event_id; count exact redeliveries; set conflicts apart."""
    stats: st.Stats = Counter()
    if table.num_rows == 0:
        return Deduplicated(table, table, [], stats)
    ordered = table.sort_by(ORDER)
    first, winner_index = _first_of_each_id(ordered)
    hashes = ordered["record_hash"].combine_chunks()
    winner_hashes = hashes.take(pa.array(winner_index))
    same = pc.equal(hashes, winner_hashes).to_numpy(zero_copy_only=False)
    duplicate = ~first & same
    conflict = ~first & ~same
    for channel in ordered["channel"].filter(pa.array(duplicate)).to_pylist():
        stats[st.duplicate_key(channel, "in_input")] += 1
    conflicts = ordered.filter(pa.array(conflict))
    return Deduplicated(
        ordered.filter(pa.array(first)),
        conflicts,
        winner_hashes.filter(pa.array(conflict)).to_pylist(),
        stats,
    )


def against_existing(
    table: pa.Table, existing_ids: pa.Array, existing_hashes: pa.Array
) -> Deduplicated:
    """Drop rows already written by an earlier run: same content is a duplicate, else a conflict."""
    stats: st.Stats = Counter()
    if table.num_rows == 0 or len(existing_ids) == 0:
        return Deduplicated(table, table.slice(0, 0), [], stats)
    position = pc.index_in(table["event_id"], value_set=existing_ids)
    seen = pc.is_valid(position).to_numpy(zero_copy_only=False)
    if not seen.any():
        return Deduplicated(table, table.slice(0, 0), [], stats)
    earlier_hash = existing_hashes.take(position)
    # Unseen rows compare as null; they are neither duplicates nor conflicts.
    same = pc.fill_null(pc.equal(table["record_hash"], earlier_hash), False).to_numpy(
        zero_copy_only=False
    )
    for channel in table["channel"].filter(pa.array(seen & same)).to_pylist():
        stats[st.duplicate_key(channel, "in_output")] += 1
    conflict = seen & ~same
    return Deduplicated(
        table.filter(pa.array(~seen)),
        table.filter(pa.array(conflict)),
        earlier_hash.filter(pa.array(conflict)).to_pylist(),
        stats,
    )


def conflict_rejections(result: Deduplicated) -> Iterator[RejectedInput]:
    """Rejections for conflicting rows: the normalised row itself (already free of CPR and card
    number) stands in for the raw input, which is not kept after validation."""
    rows = result.conflicts.to_pylist()
    for row, winner_hash in zip(rows, result.conflict_winner_hash, strict=True):
        reason = (
            f"event_id {row['event_id']} was already accepted with different content "
            f"(record_hash {winner_hash}, this one {row['record_hash']}); the first in input "
            "order is kept"
        )
        rejection = Rejection(
            RejectCode.DUPLICATE_CONFLICT, reason, "deduplicate", row["channel"], row["event_id"]
        )
        yield RejectedInput(
            rejection,
            orjson.dumps(row, default=str),
            row["source_file"],
            row["source_line"],
            row["source_message_id"],
        )
