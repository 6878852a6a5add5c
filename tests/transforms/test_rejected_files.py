"""The rejected files of a batch run (transforms/batch/rejected.py): every spilled rejected row
once, in input order, in files of a bounded number of rows, merged without holding them all."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as hs

from schemas import layout
from schemas.catalogue import load_catalogue
from tests.samples import TEST_KEY, run_of
from transforms.batch.rejected import (
    REJECTED_FILE_ORDER,
    RejectedFragment,
    in_file_order,
    in_files_of,
    key_at,
    merged_in_order,
    scan_rejected_file,
    spill_rejected,
    stage_rejected,
)
from transforms.core.blocks import RunContext, process_block
from transforms.core.columnar import ArrowBlock
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.storage.partitions import WriteSettings

RUN = "20261202T020000Z-abc123"
CTX = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), RUN, 0)


def _settings(root: Path, rows_per_file: int = 250_000) -> WriteSettings:
    run = run_of(RUN, str(root), input_key="00000000000000aa")
    return WriteSettings(run, rejected_rows_per_file=rows_per_file)


def _rejected_block(source: str, *payloads: bytes) -> ArrowBlock:
    lines = list(range(1, len(payloads) + 1))
    return ArrowBlock.of(process_block(RawBlock(source, list(payloads), lines), CTX).rejected)


def _origins(table: pa.Table) -> list[tuple[str, int]]:
    return [(r["source_file"], r["source_line"]) for r in table.to_pylist()]


def test_the_rejected_file_holds_every_spilled_block_once_in_input_order(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    fragments = [
        spill_rejected(_rejected_block("landing/b.jsonl", b"{", b"[1]"), settings),
        spill_rejected(_rejected_block("landing/a.jsonl", b"not json", b"{}", b"null"), settings),
    ]
    # A retried bundle reports the same fragment twice.
    [staged] = stage_rejected([*fragments, fragments[0]], settings)
    assert staged.final == layout.rejected_path(str(tmp_path), settings.input_key)
    assert _origins(pq.read_table(staged.staged, columns=["source_file", "source_line"])) == [
        ("landing/a.jsonl", 1),
        ("landing/a.jsonl", 2),
        ("landing/a.jsonl", 3),
        ("landing/b.jsonl", 1),
        ("landing/b.jsonl", 2),
    ]


def test_no_rejected_fragments_stage_no_rejected_file(tmp_path: Path) -> None:
    assert list(stage_rejected([], _settings(tmp_path))) == []


def test_rejected_rows_beyond_a_files_limit_continue_in_the_next_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path, rows_per_file=2)
    fragments = [
        spill_rejected(_rejected_block("landing/a.jsonl", b"{", b"[1]", b"null"), settings),
        spill_rejected(_rejected_block("landing/b.jsonl", b"{}", b"7"), settings),
    ]
    staged = list(stage_rejected(fragments, settings))
    assert [s.final for s in staged] == [
        layout.rejected_path(str(tmp_path), settings.input_key, n) for n in range(3)
    ]
    tables = [pq.read_table(s.staged) for s in staged]
    assert [t.num_rows for t in tables] == [2, 2, 1]
    assert _origins(pa.concat_tables(tables)) == [
        ("landing/a.jsonl", 1),
        ("landing/a.jsonl", 2),
        ("landing/a.jsonl", 3),
        ("landing/b.jsonl", 1),
        ("landing/b.jsonl", 2),
    ]


def test_each_rejected_file_is_scanned_with_the_privacy_rule(tmp_path: Path) -> None:
    settings = _settings(tmp_path, rows_per_file=2)
    fragments = [spill_rejected(_rejected_block("a.jsonl", b"{", b"[1]", b"null"), settings)]
    staged = list(stage_rejected(fragments, settings))
    assert [s.scan for s in staged] == [None, None]  # read back later, on any worker
    scans = [scan_rejected_file(s).scan for s in staged]
    assert [(s.rows, s.leaks) if s else None for s in scans] == [(2, []), (1, [])]


def test_an_empty_block_of_rejected_rows_stages_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    empty = ArrowBlock.of(_rejected_block("landing/a.jsonl", b"{").table().slice(0, 0))
    assert list(stage_rejected([spill_rejected(empty, settings)], settings)) == []


# --- the merge, without files ------------------------------------------------------------------

# Rows as (source_file, source_line, source_message_id, error_code); nulls sort last.
Row = tuple[str | None, int | None, str | None, str]
_ROW = hs.tuples(
    hs.sampled_from(["landing/a.jsonl", "landing/b.jsonl", "landing/é.jsonl", None]),
    hs.one_of(hs.none(), hs.integers(1, 40)),
    hs.sampled_from([None, "m1", "m2"]),
    hs.sampled_from(["INVALID_JSON", "DUPLICATE_CONFLICT", "MISSING_FIELD"]),
)


def _table(rows: list[Row], first: int) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return pa.table(
        {
            **{
                name: pa.array(values, pa.int64() if name == "source_line" else pa.string())
                for name, values in zip(REJECTED_FILE_ORDER, columns, strict=True)
            },
            "row": pa.array(range(first, first + len(rows)), pa.int64()),
        }
    )


def _fragments(parts: list[list[Row]]) -> tuple[list[RejectedFragment], dict[str, pa.Table]]:
    tables, fragments, first = {}, [], 0
    for n, rows in enumerate(parts):
        table = in_file_order(_table(rows, first))
        first += len(rows)
        tables[f"f{n}"] = table
        fragments.append(RejectedFragment(key_at(table, 0) if rows else (), f"f{n}"))
    return fragments, tables


@given(hs.lists(hs.lists(_ROW, max_size=12), max_size=8))
def test_merged_fragments_are_every_row_once_in_the_order_of_one_sort(
    parts: list[list[Row]],
) -> None:
    fragments, tables = _fragments(parts)
    merged = pa.concat_tables([_table([], 0), *merged_in_order(fragments, tables.__getitem__)])
    everything = in_file_order(pa.concat_tables([_table([], 0), *tables.values()]))
    assert sorted(merged["row"].to_pylist()) == sorted(everything["row"].to_pylist())
    assert merged.select(list(REJECTED_FILE_ORDER)).equals(
        everything.select(list(REJECTED_FILE_ORDER))
    )


def _ten_lines(from_line: int) -> list[Row]:
    return [("landing/a.jsonl", from_line + i, None, "INVALID_JSON") for i in range(10)]


def test_merging_fragments_of_disjoint_lines_holds_one_fragment_at_a_time() -> None:
    parts = [_ten_lines(from_line=n * 10) for n in range(6)]
    fragments, tables = _fragments(parts[::-1])  # reported in any order
    loaded = []

    def load(path: str) -> pa.Table:
        loaded.append(tables[path].num_rows)
        return tables[path]

    given_out, held = 0, []
    for out in merged_in_order(fragments, load):
        held.append(sum(loaded) - given_out)  # rows read and not yet given out
        given_out += out.num_rows
    assert given_out == 60
    assert max(held) == 10


@given(hs.lists(hs.integers(0, 7), max_size=10), hs.integers(1, 5))
def test_rows_cut_into_files_keep_their_order_and_fill_every_file_but_the_last(
    sizes: list[int], per_file: int
) -> None:
    tables, first = [], 0
    for size in sizes:
        tables.append(_table([("f", 1, None, "X")] * size, first))
        first += size
    files = list(in_files_of(iter(tables), per_file))
    rows = pa.concat_tables([_table([], 0), *files])["row"].to_pylist()
    assert rows == list(range(first))
    assert all(t.num_rows == per_file for t in files[:-1])
    assert not files or 0 < files[-1].num_rows <= per_file
