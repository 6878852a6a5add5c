"""Output records of the pipeline: the normalised payment and the rejected event.

These models are the schema of record for the Parquet output; `schemas.arrow` derives the
Arrow schemas from them, so the column list exists only here.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.enums import Channel, PaneTiming, PaymentMethod, PaymentStatus, RejectCode, RejectStep

SCHEMA_VERSION = 1

Amount = Annotated[Decimal, Field(max_digits=18, decimal_places=3, gt=0)]
Last4 = Annotated[str, Field(pattern=r"^\d{4}$")]


class PaymentRecord(BaseModel):
    """One accepted payment, the same columns whatever the channel (contract.md)."""

    model_config = ConfigDict(frozen=True, use_enum_values=True)

    event_id: str
    channel: Channel
    service_code: str
    service_name_en: str | None
    service_name_ar: str | None
    service_entity: str | None
    amount: Amount
    currency: Annotated[str, Field(pattern=r"^BHD$")]
    status: PaymentStatus
    payment_method: PaymentMethod
    occurred_at: AwareDatetime
    event_date: date  # the Bahrain calendar day of occurred_at
    payer_key: str | None  # HMAC pseudonym of the CPR; the CPR is never written
    card_last4: Last4 | None
    kiosk_id: str | None
    kiosk_site: str | None
    app_id: str | None
    app_version: str | None
    app_os: str | None
    # Lineage: where the event came from and which run wrote it.
    source_file: str | None
    source_line: int | None
    source_message_id: str | None
    ingested_at: AwareDatetime
    run_id: str
    schema_version: int


class RejectedEvent(BaseModel):
    """One event that could not be accepted, with enough to find and fix it at the source."""

    model_config = ConfigDict(frozen=True, use_enum_values=True)

    error_code: RejectCode
    reason: str
    step: RejectStep
    channel: str | None  # as claimed by the event, when it could be read at all
    event_id: str | None
    raw: str  # the input, redacted: no CPR, no card number beyond its last four digits
    raw_bytes: int
    source_file: str | None
    source_line: int | None
    source_message_id: str | None
    ingested_at: AwareDatetime
    run_id: str
    schema_version: int


# The Hive partition keys of the payments dataset, in path order.
PAYMENT_PARTITION_KEYS: tuple[str, ...] = ("channel", "event_date")
# The order of the rows inside every payments file, whichever writer writes it (batch, a
# streaming pane, compaction): readers and row-group statistics can count on it.
PAYMENT_FILE_ORDER: tuple[tuple[str, str], ...] = (
    ("occurred_at", "ascending"),
    ("event_id", "ascending"),
)


Count = Annotated[int, Field(ge=0)]
# decimal(38,3), the widest decimal128: a sum of payments needs more digits than one payment
# (decimal(18,3)), and 35 integer digits hold any number of payments at MAX_FILS exactly.
AmountSum = Annotated[Decimal, Field(max_digits=38, decimal_places=3, ge=0)]


class StatusAggregate(BaseModel):
    """Payments and amount per (event_date, channel, status); the Hive path holds day and channel.

    Statuses are never summed together: a refund or a failure is not revenue.
    """

    status: PaymentStatus
    payments: Count
    amount: AmountSum


class ServiceAggregate(BaseModel):
    """Payments and amount per (event_date, channel, service_code, status)."""

    service_code: str
    service_name_en: str | None
    status: PaymentStatus
    payments: Count
    amount: AmountSum


class LiveWindowAggregate(BaseModel):
    """Payments and amount of one (event-time window, day, channel, status), as one pane of the
    streaming pipeline saw them: a later pane of the same window supersedes it
    (`pane_index`), and a LATE pane adds what arrived after the watermark."""

    window_start: AwareDatetime
    window_end: AwareDatetime
    event_date: date
    channel: Channel
    status: PaymentStatus
    payments: Count
    amount: AmountSum
    pane_timing: PaneTiming
    pane_index: Count
