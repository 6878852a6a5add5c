"""transforms.aggregate: per-status and per-service counts and exact amounts of a partition."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa

from schemas.arrow import arrow_schema, payment_schema
from schemas.records import ServiceAggregate, StatusAggregate
from transforms.aggregate import AGGREGATE_INPUT_COLUMNS, by_service, by_status

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
    (RENEW, "SUCCESS", "999999999999.999"),
]


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
        {"status": "SUCCESS", "payments": 5, "amount": Decimal("1000000000025.300")},
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
    assert success == [{"status": "SUCCESS", "payments": 4, "amount": Decimal("1000000000025.200")}]


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
            "amount": Decimal("1000000000024.999"),
        },
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


def _month(*rows: tuple[str, str, int]) -> pa.Table:
    """by_status month rows of (day, channel, payments), amount = payments BHD."""
    from datetime import date

    from transforms.aggregate import month_schema

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
        schema=month_schema("by_status"),
    )


def test_merge_month_replaces_the_touched_partitions_and_keeps_the_others() -> None:
    from transforms.aggregate import merge_month

    existing = _month(("2017-06-01", "portal", 5), ("2017-06-01", "kiosk", 1))
    fresh = _month(("2017-06-01", "portal", 7), ("2017-06-02", "portal", 3))
    merged = merge_month(existing, fresh)
    got = {(r["event_date"].isoformat(), r["channel"]): r["payments"] for r in merged.to_pylist()}
    assert got == {
        ("2017-06-01", "kiosk"): 1,
        ("2017-06-01", "portal"): 7,
        ("2017-06-02", "portal"): 3,
    }
