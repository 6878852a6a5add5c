"""Per-channel daily aggregates, computed from a whole Hive partition so they always agree with
the payments stored there (including rows written by earlier runs).

They are published one file per kind and month (`aggregates/<kind>/month=YYYY-MM/`), with
`event_date` and `channel` as columns: a day's figures are a handful of rows, and a file per
(channel, day) would be a swarm of tiny files. A run replaces the rows of the partitions it
touched and keeps the others (`merge_month`).
"""

from __future__ import annotations

from datetime import date
from decimal import Context, Decimal, Inexact, Rounded

import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import arrow_schema, payment_partition_schema
from schemas.enums import AggregateKind
from schemas.records import ServiceAggregate, StatusAggregate

AGGREGATE_INPUT_COLUMNS = ["service_code", "service_name_en", "status", "amount"]
STATUS_SCHEMA = arrow_schema(StatusAggregate)
SERVICE_SCHEMA = arrow_schema(ServiceAggregate)
# decimal(38,3), the type of every aggregate amount (`AmountSum`). Sums are 128-bit decimal
# additions, not int64 fils: exact for any number of rows this product will see (decimal(38,3)
# holds 10**35 BHD), where int64 wraps, silently and negative, after 9.2 million payments of
# MAX_FILS. Python ints (`fils_of`) carry them on to the manifest and the live figures.
SUM_TYPE: pa.DataType = STATUS_SCHEMA.field("amount").type
_EXACT = Context(prec=38, traps=[Inexact, Rounded])


def sums(rows: pa.Table, keys: list[str]) -> pa.Table:
    """Rows counted and their `amount` summed exactly per distinct `keys`, sorted by them:
    columns `keys`, `payments` (int64) and `amount` (SUM_TYPE, decimal(38,3))."""
    # Arrow adds decimal128 values as 128-bit integers, whatever their declared precision, and
    # types the sum decimal(38,s): the decimal(18,3) amounts are summed as they are, as fast as
    # int64 fils were (casting them to decimal(38,3) first would cost a third more). The cast
    # of the few sums pins their type whatever the pyarrow version.
    work = rows.select([*keys, "amount"])
    grouped = (
        work.group_by(keys, use_threads=False)
        .aggregate([("amount", "count"), ("amount", "sum")])
        .sort_by([(k, "ascending") for k in keys])
    )
    amounts = grouped["amount_sum"].cast(SUM_TYPE)
    return pa.Table.from_arrays(
        [*(grouped[k] for k in keys), grouped["amount_count"], amounts],
        names=[*keys, "payments", "amount"],
    )


def fils_of(amount: Decimal) -> int:
    """Exact integer fils of a BHD amount with at most three decimals (a sum, a payment)."""
    return int(amount.scaleb(3, _EXACT))


def _grouped(rows: pa.Table, keys: list[str], schema: pa.Schema) -> pa.Table:
    return sums(rows, keys).select(schema.names).cast(schema)


def by_status(rows: pa.Table) -> pa.Table:
    """Count and amount per status of one (day, channel) partition."""
    return _grouped(rows, ["status"], STATUS_SCHEMA)


def by_service(rows: pa.Table) -> pa.Table:
    """Count and amount per (service, status) of one (day, channel) partition."""
    if rows.num_rows == 0:
        return SERVICE_SCHEMA.empty_table()
    grouped = sums(rows, ["service_code", "status"])
    # The name rides along for readers: the first one of each code (a renamed service keeps
    # one row per code and status). Looked up by position, not joined: Acero's join cost
    # ~0.5 ms a partition, most of this function's time on a day's few hundred rows.
    names = rows.group_by("service_code", use_threads=False).aggregate(
        [("service_name_en", "first")]
    )
    at = pc.index_in(grouped["service_code"], value_set=names["service_code"].combine_chunks())
    named = grouped.append_column("service_name_en", names["service_name_en_first"].take(at))
    return named.select(SERVICE_SCHEMA.names).cast(SERVICE_SCHEMA)


# How each monthly kind is figured from a partition's rows, and the columns of its figures.
KINDS = {AggregateKind.BY_STATUS.value: by_status, AggregateKind.BY_SERVICE.value: by_service}
_FIGURES = {
    AggregateKind.BY_STATUS.value: STATUS_SCHEMA,
    AggregateKind.BY_SERVICE.value: SERVICE_SCHEMA,
}
_KEY_FIELDS = list(payment_partition_schema())


def month_schema(kind: str) -> pa.Schema:
    """Columns of a published aggregate file: the partition keys, then the figures."""
    return pa.schema([*_KEY_FIELDS, *_FIGURES[kind]])


def keyed(figures: pa.Table, kind: str, channel: str, event_date: date) -> pa.Table:
    """A partition's figures with its partition keys (channel, event_date) in front."""
    values = {"channel": channel, "event_date": event_date}
    keys = [pa.array([values[f.name]] * figures.num_rows, f.type) for f in _KEY_FIELDS]
    return pa.Table.from_arrays([*keys, *figures.columns], schema=month_schema(kind))


def merge_month(existing: pa.Table, fresh: pa.Table) -> pa.Table:
    """The month's rows: fresh figures for the partitions in `fresh`, the rest as they were."""
    touched = pc.binary_join_element_wise(
        fresh["event_date"].cast(pa.string()), fresh["channel"], "|"
    )
    keys = pc.binary_join_element_wise(
        existing["event_date"].cast(pa.string()), existing["channel"], "|"
    )
    kept = existing.filter(pc.invert(pc.is_in(keys, value_set=touched.combine_chunks())))
    # A month file written before the amounts were decimal(38,3) is widened, never the
    # fresh figures narrowed: the file is rewritten in the current schema.
    merged = pa.concat_tables([kept.cast(fresh.schema), fresh])
    order = [
        (name, "ascending") for name in merged.column_names if name not in ("payments", "amount")
    ]
    return merged.sort_by(order)
