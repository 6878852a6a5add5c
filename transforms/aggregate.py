"""Per-channel daily aggregates, computed from a whole Hive partition so they always agree with
the payments stored there (including rows written by earlier runs)."""

from __future__ import annotations

import pyarrow as pa

from schemas.arrow import arrow_schema
from schemas.records import ServiceAggregate, StatusAggregate
from transforms.columnar import decimal_from_fils, fils_from_decimal

AGGREGATE_INPUT_COLUMNS = ["service_code", "service_name_en", "status", "amount"]
STATUS_SCHEMA = arrow_schema(StatusAggregate)
SERVICE_SCHEMA = arrow_schema(ServiceAggregate)


def _grouped(rows: pa.Table, keys: list[str], schema: pa.Schema) -> pa.Table:
    work = rows.select(keys).append_column(
        "fils", pa.array(fils_from_decimal(rows["amount"]), pa.int64())
    )
    grouped = (
        work.group_by(keys, use_threads=False)
        .aggregate([("fils", "count"), ("fils", "sum")])
        .sort_by([(k, "ascending") for k in keys])
    )
    columns = {k: grouped[k] for k in keys}
    columns["payments"] = grouped["fils_count"]
    columns["amount"] = decimal_from_fils(grouped["fils_sum"].to_numpy())
    return pa.Table.from_arrays(
        [
            pa.array(columns[f.name], f.type)
            if not isinstance(columns[f.name], pa.ChunkedArray)
            else columns[f.name].cast(f.type)
            for f in schema
        ],
        schema=schema,
    )


def by_status(rows: pa.Table) -> pa.Table:
    """Count and amount per status of one (day, channel) partition."""
    return _grouped(rows, ["status"], STATUS_SCHEMA)


def by_service(rows: pa.Table) -> pa.Table:
    """Count and amount per (service, status) of one (day, channel) partition."""
    if rows.num_rows == 0:
        return SERVICE_SCHEMA.empty_table()
    # The name is a function of the code (catalogue enrichment); it rides along for readers.
    grouped = _grouped(rows, ["service_code", "status"], SERVICE_SCHEMA.remove(1))
    names = rows.group_by("service_code", use_threads=False).aggregate(
        [("service_name_en", "first")]
    )
    joined = grouped.join(names, "service_code").rename_columns(
        {"service_name_en_first": "service_name_en"}
    )
    return (
        joined.select(SERVICE_SCHEMA.names)
        .sort_by([("service_code", "ascending"), ("status", "ascending")])
        .cast(SERVICE_SCHEMA)
    )
