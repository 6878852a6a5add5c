"""schemas.arrow: Arrow schemas derived from the pydantic records, refusing lossy mappings."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import AwareDatetime, BaseModel, Field

from schemas.arrow import (
    SchemaMappingError,
    arrow_schema,
    live_schema,
    payment_file_schema,
    payment_partition_schema,
    payment_schema,
    rejected_schema,
)
from schemas.records import ServiceAggregate, StatusAggregate

UTC_US = pa.timestamp("us", tz="UTC")

PAYMENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("service_code", pa.string(), nullable=False),
        pa.field("service_name_en", pa.string(), nullable=True),
        pa.field("service_name_ar", pa.string(), nullable=True),
        pa.field("service_entity", pa.string(), nullable=True),
        pa.field("amount", pa.decimal128(18, 3), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("payment_method", pa.string(), nullable=False),
        pa.field("occurred_at", UTC_US, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("payer_key", pa.string(), nullable=True),
        pa.field("card_last4", pa.string(), nullable=True),
        pa.field("kiosk_id", pa.string(), nullable=True),
        pa.field("kiosk_site", pa.string(), nullable=True),
        pa.field("app_id", pa.string(), nullable=True),
        pa.field("app_version", pa.string(), nullable=True),
        pa.field("app_os", pa.string(), nullable=True),
        pa.field("source_file", pa.string(), nullable=True),
        pa.field("source_line", pa.int64(), nullable=True),
        pa.field("source_message_id", pa.string(), nullable=True),
        pa.field("ingested_at", UTC_US, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int64(), nullable=False),
    ]
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("error_code", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("step", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=True),
        pa.field("event_id", pa.string(), nullable=True),
        pa.field("raw", pa.string(), nullable=False),
        pa.field("raw_bytes", pa.int64(), nullable=False),
        pa.field("source_file", pa.string(), nullable=True),
        pa.field("source_line", pa.int64(), nullable=True),
        pa.field("source_message_id", pa.string(), nullable=True),
        pa.field("ingested_at", UTC_US, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.int64(), nullable=False),
    ]
)

# Aggregate amounts are sums of many payments: decimal(38,3), wider than a payment's (18,3).
STATUS_AGGREGATE_SCHEMA = pa.schema(
    [
        pa.field("status", pa.string(), nullable=False),
        pa.field("payments", pa.int64(), nullable=False),
        pa.field("amount", pa.decimal128(38, 3), nullable=False),
    ]
)

SERVICE_AGGREGATE_SCHEMA = pa.schema(
    [
        pa.field("service_code", pa.string(), nullable=False),
        pa.field("service_name_en", pa.string(), nullable=True),
        pa.field("status", pa.string(), nullable=False),
        pa.field("payments", pa.int64(), nullable=False),
        pa.field("amount", pa.decimal128(38, 3), nullable=False),
    ]
)

PAYMENT_ROW = {
    "event_id": "kiosk:KSK-017:40213",
    "channel": "kiosk",
    "service_code": "VEH-REG-RENEW",
    "service_name_en": "Vehicle registration renewal",
    "service_name_ar": "تجديد تسجيل المركبة",
    "service_entity": "GDT",
    "amount": Decimal("25.000"),
    "currency": "BHD",
    "status": "SUCCESS",
    "payment_method": "CARD",
    "occurred_at": datetime(2017, 6, 30, 18, 15, 3, 123_456, tzinfo=timezone.utc),
    "event_date": date(2017, 6, 30),
    "payer_key": None,
    "card_last4": "1234",
    "kiosk_id": "KSK-017",
    "kiosk_site": "Isa Town",
    "app_id": None,
    "app_version": None,
    "app_os": None,
    "source_file": "in/kiosk.jsonl",
    "source_line": 3,
    "source_message_id": None,
    "ingested_at": datetime(2017, 7, 1, tzinfo=timezone.utc),
    "run_id": "run-1",
    "schema_version": 1,
}


class Colour(str, Enum):
    RED = "RED"


class WellTyped(BaseModel):
    name: str
    flag: bool
    count: int
    day: date
    at: AwareDatetime
    colour: Colour
    fee: Annotated[Decimal, Field(max_digits=10, decimal_places=3)]
    note: str | None
    maybe_at: AwareDatetime | None


class BareDecimal(BaseModel):
    fee: Decimal


class DecimalWithoutPlaces(BaseModel):
    fee: Annotated[Decimal, Field(max_digits=10)]


class WholeDecimal(BaseModel):
    fee: Annotated[Decimal, Field(max_digits=10, decimal_places=0)]


class WiderThanDecimal128(BaseModel):
    fee: Annotated[Decimal, Field(max_digits=39, decimal_places=3)]


class NaiveDatetime(BaseModel):
    at: datetime


class TwoTypeUnion(BaseModel):
    value: int | str | None


class ListField(BaseModel):
    values: list[str]


def test_payment_schema_is_pinned_exactly() -> None:
    assert payment_schema().equals(PAYMENT_SCHEMA, check_metadata=True)


def test_amount_is_decimal_18_3_not_null() -> None:
    field = payment_schema().field("amount")
    assert field.type == pa.decimal128(18, 3)
    assert not field.nullable


def test_status_aggregate_schema_is_pinned_exactly() -> None:
    assert arrow_schema(StatusAggregate).equals(STATUS_AGGREGATE_SCHEMA, check_metadata=True)


# The live aggregate files streaming writes, as they were written before the schema was derived
# from the pydantic model: files already in a lake stay readable with the new ones.
LIVE_AGGREGATE_SCHEMA = pa.schema(
    [
        pa.field("window_start", UTC_US, nullable=False),
        pa.field("window_end", UTC_US, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("payments", pa.int64(), nullable=False),
        pa.field("amount", pa.decimal128(38, 3), nullable=False),
        pa.field("pane_timing", pa.string(), nullable=False),
        pa.field("pane_index", pa.int64(), nullable=False),
    ]
)


def test_live_aggregate_schema_is_pinned_exactly() -> None:
    assert live_schema().equals(LIVE_AGGREGATE_SCHEMA, check_metadata=True)


def test_service_aggregate_schema_is_pinned_exactly() -> None:
    assert arrow_schema(ServiceAggregate).equals(SERVICE_AGGREGATE_SCHEMA, check_metadata=True)


@pytest.mark.parametrize("model", [StatusAggregate, ServiceAggregate])
def test_aggregate_amount_is_decimal_38_3_not_null(model: type[BaseModel]) -> None:
    field = arrow_schema(model).field("amount")
    assert field.type == pa.decimal128(38, 3)
    assert not field.nullable


def test_occurred_at_is_utc_microseconds() -> None:
    assert payment_schema().field("occurred_at").type == UTC_US


def test_event_date_is_date32() -> None:
    assert payment_schema().field("event_date").type == pa.date32()


def test_rejected_schema_is_pinned_exactly() -> None:
    assert rejected_schema().equals(REJECTED_SCHEMA, check_metadata=True)


def test_payment_file_schema_has_no_partition_keys() -> None:
    names = payment_file_schema().names
    assert "channel" not in names
    assert "event_date" not in names
    assert names == [n for n in PAYMENT_SCHEMA.names if n not in ("channel", "event_date")]


def test_payment_partition_schema_is_channel_then_event_date() -> None:
    assert payment_partition_schema().names == ["channel", "event_date"]
    assert payment_partition_schema().field("event_date").type == pa.date32()


def test_simple_types_map_losslessly() -> None:
    schema = arrow_schema(WellTyped)
    assert schema.field("name").type == pa.string()
    assert schema.field("flag").type == pa.bool_()
    assert schema.field("count").type == pa.int64()
    assert schema.field("day").type == pa.date32()
    assert schema.field("at").type == UTC_US
    assert schema.field("colour").type == pa.string()
    assert schema.field("fee").type == pa.decimal128(10, 3)


def test_required_fields_are_not_nullable() -> None:
    schema = arrow_schema(WellTyped)
    assert not any(schema.field(n).nullable for n in ("name", "flag", "at", "fee"))


def test_optional_field_is_nullable_with_the_inner_type() -> None:
    schema = arrow_schema(WellTyped)
    assert schema.field("note") == pa.field("note", pa.string(), nullable=True)
    assert schema.field("maybe_at") == pa.field("maybe_at", UTC_US, nullable=True)


def test_bare_decimal_is_refused() -> None:
    with pytest.raises(SchemaMappingError, match="fee"):
        arrow_schema(BareDecimal)


def test_decimal_without_places_is_refused() -> None:
    with pytest.raises(SchemaMappingError, match="decimal_places"):
        arrow_schema(DecimalWithoutPlaces)


def test_decimal_with_zero_places_maps_to_scale_zero() -> None:
    assert arrow_schema(WholeDecimal).field("fee").type == pa.decimal128(10, 0)


def test_decimal_wider_than_38_digits_is_refused() -> None:
    with pytest.raises(SchemaMappingError, match="38"):
        arrow_schema(WiderThanDecimal128)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(SchemaMappingError, match="naive"):
        arrow_schema(NaiveDatetime)


def test_union_of_two_types_is_refused() -> None:
    with pytest.raises(SchemaMappingError, match="value"):
        arrow_schema(TwoTypeUnion)


def test_unmapped_type_is_refused() -> None:
    with pytest.raises(SchemaMappingError, match="values"):
        arrow_schema(ListField)


def test_schema_mapping_error_is_a_type_error() -> None:
    assert issubclass(SchemaMappingError, TypeError)


def test_payment_table_round_trips_through_parquet(tmp_path: Path) -> None:
    table = pa.Table.from_pylist([PAYMENT_ROW], schema=payment_schema())
    path = tmp_path / "payments.parquet"
    pq.write_table(table, path)
    back = pq.read_table(path)
    assert back.schema.equals(payment_schema())
    assert back.to_pylist() == [PAYMENT_ROW]


def test_payment_file_table_round_trips_through_parquet(tmp_path: Path) -> None:
    row = {k: v for k, v in PAYMENT_ROW.items() if k not in ("channel", "event_date")}
    table = pa.Table.from_pylist([row], schema=payment_file_schema())
    path = tmp_path / "part.parquet"
    pq.write_table(table, path)
    assert pq.read_table(path).schema.equals(payment_file_schema())


def test_amount_survives_parquet_exactly(tmp_path: Path) -> None:
    amounts = [Decimal("0.001"), Decimal("12.500"), Decimal("999999999999999.999")]
    rows = [{**PAYMENT_ROW, "amount": amount} for amount in amounts]
    path = tmp_path / "amounts.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=payment_schema()), path)
    assert pq.read_table(path, columns=["amount"])["amount"].to_pylist() == amounts


def test_aggregate_amount_of_35_integer_digits_survives_parquet_exactly(tmp_path: Path) -> None:
    amounts = [Decimal("0.000"), Decimal("99999999999999999999999999999999999.999")]
    rows = [{"status": "SUCCESS", "payments": 1, "amount": amount} for amount in amounts]
    path = tmp_path / "aggregate.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema(StatusAggregate)), path)
    assert pq.read_table(path, columns=["amount"])["amount"].to_pylist() == amounts
