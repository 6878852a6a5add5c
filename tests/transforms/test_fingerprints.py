"""transforms.dedup.fingerprints: 64-bit fingerprints of ids, a column at a time."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as hs

from transforms.dedup import fingerprints as fp
from transforms.dedup.fingerprints import distinct_and_moved, fingerprints, in_sorted

IDS = hs.lists(hs.text(max_size=40), max_size=60)


@given(IDS)
def test_equal_ids_have_equal_fingerprints_wherever_they_stand(ids: list[str]) -> None:
    prints = fingerprints(pa.array(ids, pa.string()))
    alone = [int(fingerprints(pa.array([i], pa.string()))[0]) for i in ids]
    assert prints.tolist() == alone


@given(IDS, hs.integers(0, 30), hs.integers(0, 30))
def test_a_slice_or_chunks_of_a_column_fingerprint_as_the_whole_does(
    ids: list[str], start: int, length: int
) -> None:
    column = pa.array(ids, pa.string())
    whole = fingerprints(column)
    assert (
        fingerprints(column.slice(start, length)).tolist() == whole[start : start + length].tolist()
    )
    halves = pa.chunked_array([column.slice(0, len(ids) // 2), column.slice(len(ids) // 2)])
    assert fingerprints(halves).tolist() == whole.tolist()


def test_a_million_serial_ids_have_a_million_fingerprints() -> None:
    ids = pa.array([f"portal:PTL-2017-{n:09d}" for n in range(1_000_000)])
    assert len(np.unique(fingerprints(ids))) == 1_000_000


def test_ids_of_the_same_bytes_in_another_order_differ() -> None:
    prints = fingerprints(pa.array(["ab", "ba", "a", "aa", "", "\x00"]))
    assert len(set(prints.tolist())) == 6


def test_a_null_fingerprints_as_the_empty_string() -> None:
    prints = fingerprints(pa.array([None, ""], pa.string()))
    assert prints[0] == prints[1]


def test_an_id_longer_than_a_chunk_fingerprints_the_same_wherever_it_stands() -> None:
    long_id = "7" * (3 * fp._CHUNK_BYTES + 5)
    first = fingerprints(pa.array([long_id, "x"]))[0]
    after = fingerprints(pa.array(["x", long_id]))[1]
    assert first == after
    # The same polynomial as a chunk computes: a shorter chunk size must not change it.
    assert first != fingerprints(pa.array([long_id[:-1]]))[0]


def test_the_rows_of_a_column_larger_than_a_chunk_fingerprint_as_each_alone() -> None:
    ids = [f"mobile_app:{n:040d}" for n in range(fp._CHUNK_BYTES // 40 * 3)]
    prints = fingerprints(pa.array(ids))
    for n in (0, len(ids) // 3, len(ids) // 3 + 1, len(ids) - 1):
        assert prints[n] == fingerprints(pa.array([ids[n]]))[0]


def test_in_sorted_is_membership() -> None:
    members = np.array([3, 7, 9], np.uint64)
    values = np.array([0, 3, 8, 9, 10], np.uint64)
    assert in_sorted(values, members).tolist() == [False, True, False, True, False]
    assert in_sorted(values, np.empty(0, np.uint64)).tolist() == [False] * 5


def test_distinct_and_moved_finds_the_ids_seen_on_two_days() -> None:
    prints = np.array([5, 1, 5, 2, 1, 1], np.uint64)
    days = np.array([10, 10, 11, 10, 10, 10], np.int32)
    distinct, moved = distinct_and_moved(prints, days)
    assert distinct.tolist() == [1, 2, 5]
    assert moved.tolist() == [5]


def test_distinct_and_moved_of_nothing_is_nothing() -> None:
    distinct, moved = distinct_and_moved(np.empty(0, np.uint64), np.empty(0, np.int32))
    assert len(distinct) == len(moved) == 0
