"""Arrow schemas derived from the pydantic records, refusing any mapping that loses information."""

from __future__ import annotations

import types
import typing
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from schemas.records import (
    PAYMENT_PARTITION_KEYS,
    LiveWindowAggregate,
    PaymentRecord,
    RejectedEvent,
)


class SchemaMappingError(TypeError):
    """A model field whose Arrow type would be ambiguous or lossy."""


_DECIMAL128_DIGITS = 38


def _decimal_type(name: str, info: FieldInfo) -> pa.DataType:
    digits = places = None
    for meta in info.metadata:
        if getattr(meta, "max_digits", None) is not None:
            digits = meta.max_digits
        if getattr(meta, "decimal_places", None) is not None:
            places = meta.decimal_places
    if digits is None or places is None:
        raise SchemaMappingError(f"{name}: a Decimal needs max_digits and decimal_places")
    if digits > _DECIMAL128_DIGITS:
        # decimal256 is exact in Parquet, but DuckDB reads a decimal over 38 digits as DOUBLE.
        raise SchemaMappingError(f"{name}: max_digits {digits} exceeds decimal128's 38")
    return pa.decimal128(digits, places)


def _arrow_type(name: str, annotation: Any, info: FieldInfo) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) of one model field."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise SchemaMappingError(f"{name}: only `X | None` unions map to Arrow")
        arrow_type, _ = _arrow_type(name, inner[0], info)
        return arrow_type, True
    if typing.get_origin(annotation) is typing.Annotated:
        return _arrow_type(name, args[0], info)
    if annotation is Decimal:
        return _decimal_type(name, info), False
    if annotation is AwareDatetime:
        # Every instant in this product is UTC, stored to the microsecond.
        return pa.timestamp("us", tz="UTC"), False
    if annotation is datetime:
        raise SchemaMappingError(f"{name}: a naive datetime is ambiguous; use AwareDatetime")
    simple = _SIMPLE.get(annotation)
    if simple is not None:
        return simple, False
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return pa.string(), False
    raise SchemaMappingError(f"{name}: no lossless Arrow type for {annotation!r}")


_SIMPLE: dict[Any, pa.DataType] = {
    str: pa.string(),
    bool: pa.bool_(),
    int: pa.int64(),
    date: pa.date32(),
}


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of a record model, column for field, in field order."""
    fields = []
    for name, info in model.model_fields.items():
        arrow_type, nullable = _arrow_type(name, info.annotation, info)
        fields.append(pa.field(name, arrow_type, nullable=nullable))
    return pa.schema(fields)


@cache
def payment_schema() -> pa.Schema:
    """All columns of an accepted payment, partition keys included."""
    return arrow_schema(PaymentRecord)


@cache
def payment_file_schema() -> pa.Schema:
    """Columns stored inside a payments Parquet file: the Hive path carries the partition keys."""
    schema = payment_schema()
    for key in PAYMENT_PARTITION_KEYS:
        schema = schema.remove(schema.get_field_index(key))
    return schema


@cache
def payment_partition_schema() -> pa.Schema:
    """Types of the Hive partition keys, for readers that should not guess them."""
    schema = payment_schema()
    return pa.schema([schema.field(key) for key in PAYMENT_PARTITION_KEYS])


@cache
def rejected_schema() -> pa.Schema:
    """Columns of the rejected-events Parquet files."""
    return arrow_schema(RejectedEvent)


@cache
def live_schema() -> pa.Schema:
    """Columns of the live aggregate files streaming writes under aggregates/live/."""
    return arrow_schema(LiveWindowAggregate)
