"""The pure rules of compaction (transforms/core/compaction.py), without Beam or files; and
which payments files committed readers and writers count around a compaction
(transforms/storage/committed.py), on small real files."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import layout
from schemas.run import COMPACT
from transforms.core.compaction import (
    MEBIBYTE,
    PartitionFiles,
    aggregate_differences,
    chunks,
    differences,
    digest,
    file_count,
    needs_rewrite,
    parse_partitions,
    select,
)
from transforms.storage.committed import (
    committed_files,
    compaction_leftovers,
    current_payment_files,
)

DAY = date(2017, 6, 24)
BATCH_RUN, COMPACT_RUN = "20261201T000000Z-aaaaaa", "20261202T000000Z-bbbbbb"
KILLED = "20261203T000000Z-cccccc"


def _rows(ids: list[str], amounts: list[str]) -> pa.Table:
    return pa.table(
        {
            "event_id": pa.array(ids, pa.string()),
            "occurred_at": pa.array(
                [datetime(2017, 6, 24, 10, i, tzinfo=timezone.utc) for i in range(len(ids))],
                pa.timestamp("us", tz="UTC"),
            ),
            "service_code": pa.array(["GDT-FINE"] * len(ids)),
            "service_name_en": pa.array(["Traffic fine"] * len(ids)),
            "status": pa.array(["SUCCESS"] * len(ids)),
            "amount": pa.array([Decimal(a) for a in amounts], pa.decimal128(18, 3)),
        }
    )


def _partition(files: int, size: int) -> PartitionFiles:
    return PartitionFiles("portal", DAY, tuple(f"f{i}" for i in range(files)), size)


def test_a_partition_is_rewritten_into_one_file_per_target_size() -> None:
    assert file_count(5 * MEBIBYTE, 128 * MEBIBYTE) == 1
    assert file_count(300 * MEBIBYTE, 128 * MEBIBYTE) == 3
    assert file_count(0, 128 * MEBIBYTE) == 1


def test_a_partition_already_at_its_target_count_is_left_alone() -> None:
    target = 128 * MEBIBYTE
    assert needs_rewrite(_partition(2, MEBIBYTE), 1, target)
    assert not needs_rewrite(_partition(1, MEBIBYTE), 1, target)
    assert not needs_rewrite(_partition(3, 300 * MEBIBYTE), 1, target)  # 3 files are needed
    assert not needs_rewrite(_partition(5, MEBIBYTE), 5, target)  # within --max_files
    assert needs_rewrite(_partition(6, MEBIBYTE), 5, target)


def test_named_partitions_and_since_narrow_the_choice() -> None:
    early = PartitionFiles("kiosk", date(2017, 6, 1), ("a", "b"), 10)
    late = PartitionFiles("portal", DAY, ("c", "d"), 10)
    assert select([late, early]) == [early, late]
    assert select([late, early], since=date(2017, 6, 2)) == [late]
    assert select([late, early], named={("kiosk", date(2017, 6, 1))}) == [early]


def test_partitions_are_parsed_from_their_hive_paths() -> None:
    parsed = parse_partitions(
        "channel=portal/event_date=2017-06-24, channel=kiosk/event_date=2017-06-25"
    )
    assert parsed == {("portal", DAY), ("kiosk", date(2017, 6, 25))}


@pytest.mark.parametrize(
    "text",
    ["channel=atm/event_date=2017-06-24", "channel=portal/event_date=24-06-2017", "portal", ","],
)
def test_a_partition_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"channel=|date|names no"):
        parse_partitions(text)


def test_rows_are_cut_into_nearly_equal_files_in_order() -> None:
    rows = _rows([f"e{i}" for i in range(10)], ["1.000"] * 10)
    parts = chunks(rows, 3)
    assert [p.num_rows for p in parts] == [4, 4, 2]
    assert pa.concat_tables(parts).equals(rows)
    assert [p.num_rows for p in chunks(rows.slice(0, 0), 1)] == [0]


def test_the_same_rows_in_another_order_and_chunking_verify() -> None:
    old = _rows(["a", "b", "c"], ["1.000", "2.500", "0.001"])
    new = pa.concat_tables([old.slice(2), old.slice(0, 2)])
    assert differences(old, new) == []
    assert aggregate_differences(old, new) == []
    assert digest(old).amount_fils == 3501


def test_the_figures_check_does_not_depend_on_the_order_the_files_were_read_in() -> None:
    """by_service names a code by its first row: two names for one code (a catalogue change)
    must not make the same rows in another order look different."""
    old = _rows(["a", "b"], ["1.000", "2.000"])
    old = old.set_column(3, "service_name_en", pa.array(["Fine (old name)", "Fine"]))
    assert aggregate_differences(old, old.take([1, 0])) == []


def test_a_lost_row_a_changed_amount_or_a_changed_value_is_found() -> None:
    old = _rows(["a", "b", "c"], ["1.000", "2.500", "0.001"])
    assert any("rows" in d for d in differences(old, old.slice(0, 2)))
    changed = _rows(["a", "b", "c"], ["1.000", "2.500", "0.002"])
    assert any("amount_fils" in d for d in differences(old, changed))
    assert aggregate_differences(old, changed) == ["by_status", "by_service"]
    renamed = old.set_column(3, "service_name_en", pa.array(["x", "y", "z"]))
    assert differences(old, renamed) == ["the same event ids and amounts, but other column values"]
    swapped = _rows(["a", "b", "d"], ["1.000", "2.500", "0.001"])
    assert any("event_ids_sha256" in d for d in differences(old, swapped))


# --- which files count around a compaction --------------------------------------------------


def _file(root: Path, name: str) -> str:
    path = Path(layout.payments_dir(str(root), "portal", DAY)) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_rows(["a"], ["1.000"]), path)
    return str(path)


def _commit(
    root: Path,
    run_id: str,
    pipeline: str,
    written: list[str],
    removed: list[str],
    planned_after: str = "",
) -> None:
    run = Path(layout.run_dir(str(root), run_id))
    run.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": run_id,
        "pipeline": pipeline,
        "output_root": str(root),
        "files_written": written,
        "files_removed": removed,
        "planned_after": planned_after,
    }
    (run / layout.MANIFEST).write_text(json.dumps(manifest))
    (run / layout.SUCCESS_MARKER).write_text("")


def test_files_a_committed_compaction_removed_no_longer_count_and_its_own_do(
    tmp_path: Path,
) -> None:
    old = _file(tmp_path, "part-0123456789abcdef-00000.parquet")
    pane = _file(tmp_path, layout.pane_part_name(BATCH_RUN))
    _commit(tmp_path, BATCH_RUN, "batch", [old], [])
    new = _file(tmp_path, layout.compacted_part_name(COMPACT_RUN, 0))
    # Moved into place, not committed yet: the old files count, the new one does not.
    assert committed_files(str(tmp_path)) == sorted([old, pane])
    assert current_payment_files(str(tmp_path), sorted([old, pane, new])) == sorted([old, pane])
    _commit(tmp_path, COMPACT_RUN, COMPACT, [new], [old, pane])
    # Committed, old files not deleted yet: the new one alone counts, for every reader.
    assert committed_files(str(tmp_path)) == [new]
    assert current_payment_files(str(tmp_path), sorted([old, pane, new])) == [new]
    assert compaction_leftovers(str(tmp_path)) == sorted([old, pane])


def test_the_files_of_a_compaction_that_never_committed_are_leftovers(tmp_path: Path) -> None:
    old = _file(tmp_path, "part-0123456789abcdef-00000.parquet")
    _commit(tmp_path, BATCH_RUN, "batch", [old], [])
    killed = _file(tmp_path, layout.compacted_part_name(KILLED, 0))
    assert compaction_leftovers(str(tmp_path)) == [killed]
    assert committed_files(str(tmp_path)) == [old]


def test_a_path_written_again_after_a_compaction_removed_it_counts_again(tmp_path: Path) -> None:
    old = _file(tmp_path, "part-0123456789abcdef-00000.parquet")
    _commit(tmp_path, BATCH_RUN, "batch", [old], [])
    new = _file(tmp_path, layout.compacted_part_name(COMPACT_RUN, 0))
    _commit(tmp_path, COMPACT_RUN, COMPACT, [new], [old])
    _commit(tmp_path, KILLED, "batch", [old], [])  # a later run wrote the same name again
    assert committed_files(str(tmp_path)) == sorted([old, new])
    assert compaction_leftovers(str(tmp_path)) == []


def test_a_compaction_started_before_the_run_whose_files_it_removed_still_removes_them(
    tmp_path: Path,
) -> None:
    """It waited for the lease while that run committed (or started in the same second): its
    id sorts first, its removals apply after the newest run it saw when it planned."""
    early_compaction, later_batch = "20261202T000000Z-000001", "20261202T000005Z-ffffff"
    old = _file(tmp_path, "part-0123456789abcdef-00000.parquet")
    _commit(tmp_path, later_batch, "batch", [old], [])
    new = _file(tmp_path, layout.compacted_part_name(early_compaction, 0))
    _commit(tmp_path, early_compaction, COMPACT, [new], [old], planned_after=later_batch)
    assert committed_files(str(tmp_path)) == [new]
    assert compaction_leftovers(str(tmp_path)) == [old]


def test_compacted_names_are_neither_batch_nor_pane_names() -> None:
    name = layout.compacted_part_name(COMPACT_RUN, 3)
    assert layout.run_of_compacted_part(name) == COMPACT_RUN
    assert layout.input_key_of(name) is None
    assert layout.run_of_pane_part(name) is None
    assert layout.run_of_compacted_part(layout.pane_part_name(COMPACT_RUN)) is None
