"""Build Arrow columns in bulk: Beam moves a few large blocks instead of millions of dicts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.arrow import payment_schema

AMOUNT_TYPE: pa.DataType = payment_schema().field("amount").type


def decimal_from_fils(fils: Sequence[int]) -> pa.Array:
    """decimal128(18,3) array whose unscaled values are the fils: exact, with no Decimal objects.

    decimal128 stores a 16-byte little-endian two's-complement integer per value; with scale 3
    that integer is the amount in fils.
    """
    low = np.asarray(fils, dtype=np.int64)
    words = np.empty((len(low), 2), dtype=np.int64)
    words[:, 0] = low
    words[:, 1] = low >> 63  # sign extension
    return pa.Array.from_buffers(AMOUNT_TYPE, len(low), [None, pa.py_buffer(words)])


def fils_from_decimal(amounts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Integer fils of a decimal128(18,3) column (the inverse of `decimal_from_fils`)."""
    if isinstance(amounts, pa.ChunkedArray):
        amounts = amounts.combine_chunks() if amounts.num_chunks else pa.array([], AMOUNT_TYPE)
    if amounts.type != AMOUNT_TYPE:
        amounts = amounts.cast(AMOUNT_TYPE)
    buffer = amounts.buffers()[1]
    words = np.frombuffer(buffer, dtype=np.int64)
    start = amounts.offset * 2
    return words[start : start + 2 * len(amounts) : 2].copy()


def constant(value: object, length: int, type_: pa.DataType) -> pa.Array:
    """A column holding one value `length` times (lineage such as run id)."""
    return pa.array([value] * length, type=type_)


# String columns that are (nearly) unique per row: dictionary-encoding them would cost time
# and save nothing. Every other string column repeats a handful of values per block.
_UNIQUE_STRINGS = frozenset({"event_id", "payer_key", "raw", "reason"})
_MIN_ROWS_TO_ENCODE = 64


@dataclass(frozen=True)
class ArrowBlock:
    """A table in Arrow IPC stream form, as Beam moves it between steps and workers.

    Pickling a pyarrow Table costs about a millisecond and drags a slice's whole parent
    buffers along; IPC bytes cost a copy. Repetitive string columns travel dictionary-encoded
    (payments shrink from ~370 to ~210 bytes a row, and the batch run holds every row in
    memory once); `table()` gives back the original types. `num_rows` counts without decoding.
    """

    ipc: bytes
    num_rows: int

    @classmethod
    def of(cls, table: pa.Table) -> ArrowBlock:
        fields, columns = [], []
        # Below a few dozen rows a dictionary costs more than the strings it replaces.
        encode = table.num_rows >= _MIN_ROWS_TO_ENCODE
        for field, column in zip(table.schema, table.columns, strict=True):
            if encode and pa.types.is_string(field.type) and field.name not in _UNIQUE_STRINGS:
                column = column.dictionary_encode()
                field = field.with_type(column.type)
            fields.append(field)
            columns.append(column)
        compact = pa.Table.from_arrays(columns, schema=pa.schema(fields, table.schema.metadata))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, compact.schema) as writer:
            writer.write_table(compact)
        return cls(sink.getvalue().to_pybytes(), table.num_rows)

    def table(self, columns: list[str] | None = None) -> pa.Table:
        """The table, or only the named columns of it (cheaper: the rest is not decoded)."""
        return decode_ipc(self.ipc, columns)


def plain_ipc(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes, no column dictionary-encoded: for state that is read
    back far more often than it is shipped, where decoding must cost nothing."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_ipc(ipc: bytes, columns: list[str] | None = None) -> pa.Table:
    """The table an `ArrowBlock` holds, from its IPC bytes (also as spilled to a file)."""
    compact = pa.ipc.open_stream(ipc).read_all()
    if columns is not None:
        compact = compact.select(columns)
    fields, arrays = [], []
    for field, column in zip(compact.schema, compact.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            field = field.with_type(field.type.value_type)
            column = column.cast(field.type)
        fields.append(field)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, compact.schema.metadata))


def concat_blocks(blocks: Iterable[ArrowBlock], schema: pa.Schema) -> pa.Table:
    """One table of many blocks (an empty table of `schema` when there are none)."""
    tables = [block.table() for block in blocks]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def runs(table: pa.Table, keys: list[np.ndarray]) -> Iterator[tuple[int, pa.Table]]:
    """(first row index, rows) of each run of equal keys in a table already sorted by them."""
    n = table.num_rows
    if n == 0:
        return
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield start, table.slice(start, end - start)
