"""transforms.core.aggregate: per-status and per-service counts and exact amounts of a partition."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as hs

from schemas.arrow import arrow_schema, payment_schema
from schemas.money import MAX_FILS, fils_to_decimal
from schemas.records import ServiceAggregate, StatusAggregate
from transforms.core.aggregate import (
    AGGREGATE_INPUT_COLUMNS,
    by_service,
    by_status,
    fils_of,
    merge_month,
    month_schema,
)
from transforms.core.columnar import decimal_from_fils

INPUT_SCHEMA = pa.schema([payment_schema().field(name) for name in AGGREGATE_INPUT_COLUMNS])
FINE = ("GDT-FINE", "Traffic violation fines")
RENEW = ("VEH-REG-RENEW", "Vehicle registration renewal")
UNKNOWN = ("NOT-IN-CATALOGUE", None)

# (service, status, amount): amounts a float would not add exactly.
ROWS = [
    (FINE, "SUCCESS", "0.100"),
    (FINE, "SUCCESS", "0.200"),
    (RENEW, "SUCCESS", "25.000"),
    (FINE, "REFUNDED", "0.100"),
    (RENEW, "FAILED", "30.000"),
    (UNKNOWN, "SUCCESS", "0.001"),
    (RENEW, "SUCCESS", "999999999.999"),
]
# The largest payment the contract accepts, and the largest a decimal(18,3) column can hold:
# ten of the latter add up past int64 (9,223,372,036,854,775,807 fils).
MAX_AMOUNT = fils_to_decimal(MAX_FILS)
DECIMAL_18_3_MAX_FILS = 10**18 - 1


def _table(rows: list[tuple[tuple[str, str | None], str, str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "service_code": code,
                "service_name_en": name,
                "status": status,
                "amount": Decimal(amount),
            }
            for (code, name), status, amount in rows
        ],
        schema=INPUT_SCHEMA,
    )


def test_by_status_has_the_status_aggregate_schema() -> None:
    assert by_status(_table(ROWS)).schema.equals(arrow_schema(StatusAggregate))


def test_by_status_counts_and_sums_exactly() -> None:
    assert by_status(_table(ROWS)).to_pylist() == [
        {"status": "FAILED", "payments": 1, "amount": Decimal("30.000")},
        {"status": "REFUNDED", "payments": 1, "amount": Decimal("0.100")},
        {"status": "SUCCESS", "payments": 5, "amount": Decimal("1000000025.300")},
    ]


def test_by_status_keeps_statuses_apart() -> None:
    table = _table([(FINE, "SUCCESS", "10.000"), (FINE, "REFUNDED", "10.000")])
    assert {r["status"]: r["amount"] for r in by_status(table).to_pylist()} == {
        "REFUNDED": Decimal("10.000"),
        "SUCCESS": Decimal("10.000"),
    }


def test_by_status_reads_sliced_and_chunked_input() -> None:
    table = pa.concat_tables([_table(ROWS).slice(1, 2), _table(ROWS).slice(3)])
    success = [r for r in by_status(table).to_pylist() if r["status"] == "SUCCESS"]
    assert success == [{"status": "SUCCESS", "payments": 4, "amount": Decimal("1000000025.200")}]


def test_by_status_of_an_empty_partition_is_empty() -> None:
    result = by_status(INPUT_SCHEMA.empty_table())
    assert result.num_rows == 0
    assert result.schema.equals(arrow_schema(StatusAggregate))


def test_by_service_has_the_service_aggregate_schema() -> None:
    assert by_service(_table(ROWS)).schema.equals(arrow_schema(ServiceAggregate))


def test_by_service_counts_and_sums_per_service_and_status() -> None:
    assert by_service(_table(ROWS)).to_pylist() == [
        {
            "service_code": "GDT-FINE",
            "service_name_en": "Traffic violation fines",
            "status": "REFUNDED",
            "payments": 1,
            "amount": Decimal("0.100"),
        },
        {
            "service_code": "GDT-FINE",
            "service_name_en": "Traffic violation fines",
            "status": "SUCCESS",
            "payments": 2,
            "amount": Decimal("0.300"),
        },
        {
            "service_code": "NOT-IN-CATALOGUE",
            "service_name_en": None,
            "status": "SUCCESS",
            "payments": 1,
            "amount": Decimal("0.001"),
        },
        {
            "service_code": "VEH-REG-RENEW",
            "service_name_en": "Vehicle registration renewal",
            "status": "FAILED",
            "payments": 1,
            "amount": Decimal("30.000"),
        },
        {
            "service_code": "VEH-REG-RENEW",
            "service_name_en": "Vehicle registration renewal",
            "status": "SUCCESS",
            "payments": 2,
            "amount": Decimal("1000000024.999"),
        },
    ]


def test_by_service_keeps_one_row_per_code_and_status_when_a_service_was_renamed() -> None:
    # An earlier run's rows of the partition carry the catalogue's old name.
    renamed = [(FINE, "SUCCESS", "0.100"), (("GDT-FINE", "Traffic fines"), "SUCCESS", "0.200")]
    assert by_service(_table(renamed)).to_pylist() == [
        {
            "service_code": "GDT-FINE",
            "service_name_en": "Traffic violation fines",
            "status": "SUCCESS",
            "payments": 2,
            "amount": Decimal("0.300"),
        }
    ]


def test_by_service_totals_equal_by_status_totals() -> None:
    table = _table(ROWS)
    by_status_total = sum((r["amount"] for r in by_status(table).to_pylist()), Decimal(0))
    by_service_total = sum((r["amount"] for r in by_service(table).to_pylist()), Decimal(0))
    assert by_status_total == by_service_total == sum((Decimal(a) for _, _, a in ROWS), Decimal(0))


def test_by_service_of_an_empty_partition_is_empty() -> None:
    result = by_service(INPUT_SCHEMA.empty_table())
    assert result.num_rows == 0
    assert result.schema.equals(arrow_schema(ServiceAggregate))


def _month(*rows: tuple[str, str, int], schema: pa.Schema | None = None) -> pa.Table:
    """by_status month rows of (day, channel, payments), amount = payments BHD."""
    return pa.Table.from_pylist(
        [
            {
                "channel": channel,
                "event_date": date.fromisoformat(day),
                "status": "SUCCESS",
                "payments": n,
                "amount": Decimal(n),
            }
            for day, channel, n in rows
        ],
        schema=schema or month_schema("by_status"),
    )


def test_merge_month_replaces_the_touched_partitions_and_keeps_the_others() -> None:
    existing = _month(("2017-06-01", "portal", 5), ("2017-06-01", "kiosk", 1))
    fresh = _month(("2017-06-01", "portal", 7), ("2017-06-02", "portal", 3))
    merged = merge_month(existing, fresh)
    got = {(r["event_date"].isoformat(), r["channel"]): r["payments"] for r in merged.to_pylist()}
    assert got == {
        ("2017-06-01", "kiosk"): 1,
        ("2017-06-01", "portal"): 7,
        ("2017-06-02", "portal"): 3,
    }


def _at(amounts_fils: list[int], status: str = "SUCCESS") -> pa.Table:
    """Payments of FINE with these amounts, built from fils (exact, no Decimal objects)."""
    n = len(amounts_fils)
    return pa.Table.from_arrays(
        [
            pa.array([FINE[0]] * n),
            pa.array([FINE[1]] * n),
            pa.array([status] * n),
            decimal_from_fils(amounts_fils),
        ],
        schema=INPUT_SCHEMA,
    )


def test_by_status_of_20_largest_payments_is_the_exact_positive_sum() -> None:
    (row,) = by_status(_at([MAX_FILS] * 20)).to_pylist()
    assert row["amount"] == 20 * MAX_AMOUNT == Decimal("19999999999.980")
    assert row["amount"] > 0
    assert row["payments"] == 20


def test_by_service_of_20_largest_payments_is_the_exact_positive_sum() -> None:
    (row,) = by_service(_at([MAX_FILS] * 20)).to_pylist()
    assert row["amount"] == 20 * MAX_AMOUNT
    assert row["amount"] > 0


def test_by_status_sum_beyond_int64_is_exact() -> None:
    (row,) = by_status(_at([DECIMAL_18_3_MAX_FILS] * 10)).to_pylist()
    assert fils_of(row["amount"]) == 10 * DECIMAL_18_3_MAX_FILS > 2**63


def test_by_service_sum_beyond_int64_is_exact() -> None:
    (row,) = by_service(_at([DECIMAL_18_3_MAX_FILS] * 10)).to_pylist()
    assert fils_of(row["amount"]) == 10 * DECIMAL_18_3_MAX_FILS


def test_aggregate_sum_beyond_decimal_18_3_survives_parquet_exactly(tmp_path: Path) -> None:
    path = tmp_path / "aggregate.parquet"
    pq.write_table(by_status(_at([DECIMAL_18_3_MAX_FILS] * 10)), path)
    (amount,) = pq.read_table(path)["amount"].to_pylist()
    assert amount == Decimal("9999999999999999.990")


def test_fils_of_is_exact_for_38_digits() -> None:
    assert fils_of(Decimal("99999999999999999999999999999999999.999")) == 10**38 - 1


@given(hs.lists(hs.integers(min_value=1, max_value=MAX_FILS), min_size=1, max_size=200))
def test_by_status_sum_is_the_exact_python_sum_of_any_payments(amounts: list[int]) -> None:
    (row,) = by_status(_at(amounts)).to_pylist()
    assert row["amount"] == fils_to_decimal(sum(amounts))
    assert row["payments"] == len(amounts)


@given(hs.lists(hs.integers(min_value=1, max_value=MAX_FILS), min_size=1, max_size=200))
def test_by_service_sum_is_the_exact_python_sum_of_any_payments(amounts: list[int]) -> None:
    (row,) = by_service(_at(amounts)).to_pylist()
    assert row["amount"] == fils_to_decimal(sum(amounts))


def test_merge_month_widens_a_month_written_with_decimal_18_3_amounts() -> None:
    narrow = month_schema("by_status")
    narrow = narrow.set(
        narrow.get_field_index("amount"), narrow.field("amount").with_type(pa.decimal128(18, 3))
    )
    existing = _month(("2017-06-01", "kiosk", 1), schema=narrow)
    fresh = _month(("2017-06-02", "portal", 3))
    merged = merge_month(existing, fresh)
    assert merged.schema.equals(month_schema("by_status"))
    assert merged["amount"].to_pylist() == [Decimal(1), Decimal(3)]
