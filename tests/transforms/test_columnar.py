"""transforms.core.columnar: exact decimal buffers and the ArrowBlock transit form."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.arrow import payment_schema, rejected_schema
from transforms.core.columnar import ArrowBlock, decimal_from_fils, fils_from_decimal, runs


def test_decimal_from_fils_is_exact_bhd() -> None:
    amounts = decimal_from_fils([12500, 1, 999_999_999_999_999_999])
    assert [str(a) for a in amounts.to_pylist()] == ["12.500", "0.001", "999999999999999.999"]


def test_fils_from_decimal_inverts_decimal_from_fils() -> None:
    fils = [12500, 1, 7, 250_000]
    assert fils_from_decimal(decimal_from_fils(fils)).tolist() == fils
    assert fils_from_decimal(decimal_from_fils(fils).slice(1, 2)).tolist() == [1, 7]


def test_arrow_block_round_trip_keeps_schema_and_values() -> None:
    table = pa.table(
        {"event_id": ["a", "b", "c"], "status": ["SUCCESS", "SUCCESS", None]},
        schema=pa.schema(
            [pa.field("event_id", pa.string(), nullable=False), pa.field("status", pa.string())]
        ),
    )
    block = ArrowBlock.of(table)
    assert block.num_rows == 3
    assert block.table().equals(table)
    assert block.table().schema.equals(table.schema)


def test_arrow_block_keeps_the_record_schemas_exactly() -> None:
    for schema in (payment_schema(), rejected_schema()):
        assert ArrowBlock.of(schema.empty_table()).table().schema.equals(schema)


def test_arrow_block_of_a_slice_carries_only_the_slice() -> None:
    table = pa.table({"status": ["SUCCESS"] * 10_000, "event_id": [str(i) for i in range(10_000)]})
    assert len(ArrowBlock.of(table.slice(0, 10)).ipc) < len(ArrowBlock.of(table).ipc) / 20


def test_runs_split_a_sorted_table_at_each_key_change() -> None:
    table = pa.table({"k": [1, 1, 2, 3, 3, 3]})
    keys = np.array([1, 1, 2, 3, 3, 3])
    assert [(start, rows.num_rows) for start, rows in runs(table, [keys])] == [
        (0, 2),
        (2, 1),
        (3, 3),
    ]
