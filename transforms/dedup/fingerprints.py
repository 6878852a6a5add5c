"""64-bit fingerprints of event ids, for finding redeliveries across a whole channel's rows.

The search for events delivered into two days' partitions looks at every row of a channel
at once: at 10M events that is ~8M portal ids. Held as strings, in Arrow's hash tables, they
took 1.9 GB of one worker for a few seconds (benchmarks/RESULTS.md, the 10M rows); as a
fingerprint and a day they take 12 bytes a row. A fingerprint only picks *candidates*: the
rows it picks are then compared by their ids themselves, so two ids that happen to share one
(about one pair in 10^12 at 8M ids, or an id crafted to collide) cost a closer look at a few
rows, never a wrong result.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

# An odd 64-bit base for the polynomial over an id's bytes, and splitmix64's finaliser
# constants to spread the sum over all 64 bits. Arithmetic wraps modulo 2^64, as numpy's
# unsigned integer arrays do.
_BASE = 0x9E3779B97F4A7C15
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_WORD = 2**64
# Bytes hashed at a time: bounds the temporaries (8 bytes of each per byte of ids).
_CHUNK_BYTES = 1 << 20


def _inverse(odd: int) -> int:
    """The inverse of an odd number modulo 2^64 (Newton's iteration doubles the bits)."""
    x = odd
    for _ in range(6):
        x = x * (2 - odd * x) % _WORD
    return x


def _power_table(base: int, count: int) -> np.ndarray:
    steps = np.full(count, base, np.uint64)
    steps[0] = 1
    table: np.ndarray = np.multiply.accumulate(steps)
    return table


@functools.cache
def _powers() -> tuple[np.ndarray, np.ndarray]:
    """base^k and base^-k for every place a byte can have in a chunk: 16 MB, made on first
    use, not by every process that imports the batch or streaming writers."""
    return _power_table(_BASE, _CHUNK_BYTES + 1), _power_table(_inverse(_BASE), _CHUNK_BYTES + 1)


def _chunk_sums(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """sum((byte + 1) * base^place) of each row, place counted from the row's first byte: a
    running sum over the chunk's bytes, weighted by base^(place in the chunk), differenced at
    the rows' ends and brought back to each row's start by base^-start."""
    powers, inverse_powers = _powers()
    first = int(starts[0])
    span = int(ends[-1]) - first
    terms = (raw[first : first + span].astype(np.uint64) + np.uint64(1)) * powers[:span]
    running = np.zeros(span + 1, np.uint64)
    np.cumsum(terms, out=running[1:])
    begin, finish = starts - first, ends - first
    sums: np.ndarray = (running[finish] - running[begin]) * inverse_powers[begin]
    return sums


def fingerprints(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 fingerprint of each string, a column at a time: equal strings have equal
    fingerprints, different ones almost never (a null is fingerprinted as "")."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    column = values.cast(pa.large_binary())
    n = len(column)
    if n == 0:
        return np.empty(0, np.uint64)
    offsets = np.frombuffer(column.buffers()[1], np.int64, n + 1, column.offset * 8)
    starts, ends = offsets[:-1], offsets[1:]
    data = column.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
    sums = np.zeros(n, np.uint64)
    row = 0
    while row < n:
        # The rows whose bytes fit in one chunk (at least one row, however long).
        last = int(np.searchsorted(ends, starts[row] + _CHUNK_BYTES, side="right"))
        last = max(last, row + 1)
        if int(ends[last - 1]) - int(starts[row]) > _CHUNK_BYTES:  # one row longer than that
            sums[row] = _long_sum(raw[int(starts[row]) : int(ends[row])])
        else:
            sums[row:last] = _chunk_sums(raw, starts[row:last], ends[row:last])
        row = last
    lengths = np.diff(offsets).astype(np.uint64)
    if column.null_count:
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        sums[~valid], lengths[~valid] = 0, 0
    mixed = sums ^ (lengths * _MIX_2)
    mixed ^= mixed >> np.uint64(30)
    mixed *= _MIX_1
    mixed ^= mixed >> np.uint64(27)
    mixed *= _MIX_2
    mixed ^= mixed >> np.uint64(31)
    return mixed


def _long_sum(raw: np.ndarray) -> np.uint64:
    """`_chunk_sums` of one row longer than a chunk, a chunk at a time (base^offset apart)."""
    total, scale = 0, 1
    for at in range(0, len(raw), _CHUNK_BYTES):
        piece = raw[at : at + _CHUNK_BYTES]
        part = int(_chunk_sums(piece, np.array([0]), np.array([len(piece)]))[0])
        total = (total + part * scale) % _WORD
        scale = scale * pow(_BASE, len(piece), _WORD) % _WORD
    return np.uint64(total)


def in_sorted(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Whether each value is one of `members` (sorted): a binary search, no hash table."""
    if len(members) == 0:
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(members, values), len(members) - 1)
    found: np.ndarray = members[at] == values
    return found


def distinct_and_moved(prints: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(every distinct fingerprint, those seen with more than one day), both sorted."""
    if len(prints) == 0:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    order = np.argsort(prints)  # min and max a group: any order of equal prints serves
    ordered, ordered_days = prints[order], days[order]
    del order
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    lowest = np.minimum.reduceat(ordered_days, starts)
    highest = np.maximum.reduceat(ordered_days, starts)
    distinct = ordered[starts]
    return distinct, distinct[lowest != highest]
