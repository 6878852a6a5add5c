"""The three raw input shapes of contract.md, as one pydantic union discriminated on `channel`.

Constraints are declared so pydantic-core checks them in Rust (this runs once per event, so it
is the hot path); `transforms.core.validate` maps each kind of failure to a `RejectCode`. Amounts
become integer fils and instants UTC microseconds here, so nothing downstream re-parses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from schemas.money import MAX_FILS, AmountError, fils_from_text
from schemas.timekeeping import BAHRAIN, to_utc_micros

# Payments before the e-government portal existed, or in the far future, are clock errors.
EARLIEST = datetime(2000, 1, 1, tzinfo=BAHRAIN)
LATEST = datetime(2100, 1, 1, tzinfo=BAHRAIN)
EARLIEST_MS = to_utc_micros(EARLIEST) // 1000
LATEST_MS = to_utc_micros(LATEST) // 1000
# Bounds in characters (code points, as pydantic counts them); the bulk path checks the same.
IDENTIFIER_MAX_CHARS = 128
CODE_MAX_CHARS = 64
CARD_MAX_CHARS = 64

# [0-9], not \\d: \\d also matches Arabic-Indic digits, which would give one resident two
# pseudonyms (the same CPR written two ways).
CPR_PATTERN = r"^[0-9]{9}$"
CODE_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{CODE_MAX_CHARS - 1}}}$"
_LOCAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")


def _positive_fils(text: Any) -> int:
    if not isinstance(text, str):
        raise PydanticCustomError("WRONG_TYPE", 'amount must be a decimal string like "12.500"')
    try:
        return fils_from_text(text)
    except AmountError as err:
        raise PydanticCustomError(err.code, str(err)) from None


def _plausible(moment: datetime) -> datetime:
    # The year as written; comparing aware datetimes across offsets costs ten times more.
    if not EARLIEST.year <= moment.year < LATEST.year:
        raise PydanticCustomError("INVALID_TIMESTAMP", "timestamp is outside 2000-2099")
    return moment


def _bahrain_wall_clock(text: Any) -> int:
    if not isinstance(text, str):
        raise PydanticCustomError("WRONG_TYPE", "local_time must be a string")
    if _LOCAL_TIME.fullmatch(text) is None:
        raise PydanticCustomError("INVALID_TIMESTAMP", "local_time must be YYYY-MM-DD HH:MM:SS")
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        raise PydanticCustomError("INVALID_TIMESTAMP", f"no such time: {text}") from None
    # Kiosks send Bahrain wall-clock time with no offset (contract.md).
    return to_utc_micros(_plausible(local.replace(tzinfo=BAHRAIN)))


Identifier = Annotated[str, Field(strict=True, min_length=1, max_length=IDENTIFIER_MAX_CHARS)]
ServiceCode = Annotated[str, Field(strict=True, pattern=CODE_PATTERN)]
Cpr = Annotated[str, Field(strict=True, pattern=CPR_PATTERN)]
Currency = Literal["BHD"]
FilsInt = Annotated[int, Field(strict=True, gt=0, le=MAX_FILS)]
# Decimal text such as "12.500", validated into integer fils.
FilsText = Annotated[int, BeforeValidator(_positive_fils)]
OffsetTime = Annotated[AwareDatetime, Field(strict=True), AfterValidator(_plausible)]
EpochMillis = Annotated[int, Field(strict=True, ge=EARLIEST_MS, lt=LATEST_MS)]
# Bahrain wall-clock text, validated into UTC epoch microseconds.
BahrainWallClock = Annotated[int, BeforeValidator(_bahrain_wall_clock)]

PortalStatus = Literal["PAID", "DECLINED", "REFUNDED"]
PortalMethod = Literal["DEBIT_CARD", "CREDIT_CARD", "BENEFIT_PAY"]
AppOs = Literal["ios", "android", "huawei"]
AppMethod = Literal[
    "APPLE_PAY", "GOOGLE_PAY", "HUAWEI_PAY", "BENEFIT_PAY", "DEBIT_CARD", "CREDIT_CARD"
]
AppOutcome = Literal["success", "failure", "refund"]
KioskResult = Literal["OK", "DECLINED", "CANCELLED", "REFUNDED"]


class _Raw(BaseModel):
    # Unknown extra fields are ignored, not rejected: source systems add fields before we do.
    model_config = ConfigDict(extra="ignore", frozen=True)


# Nested objects are TypedDicts: validated the same way, without a model instance each.
class PortalService(TypedDict):
    code: ServiceCode
    entity: Identifier


class Payer(TypedDict):
    cpr: Cpr


class PortalEvent(_Raw):
    """A payment-gateway log line of the national portal."""

    channel: Literal["portal"]
    txn_id: Identifier
    service: PortalService
    amount_fils: FilsInt
    currency: Currency
    status: PortalStatus
    paid_at: OffsetTime
    payer: Payer
    method: PortalMethod
    gateway_ref: Identifier | None = None


class AppInfo(TypedDict):
    id: Identifier
    version: Identifier
    os: AppOs


class AppPayment(TypedDict):
    amount: FilsText
    currency: Currency
    method: AppMethod
    outcome: AppOutcome


class MobileAppEvent(_Raw):
    """A payment event from one of the government apps; `ts` is epoch milliseconds, UTC."""

    channel: Literal["mobile_app"]
    event_id: Identifier
    app: AppInfo
    service_code: ServiceCode
    payment: AppPayment
    ts: EpochMillis
    user: Payer


class KioskEvent(_Raw):
    """A transaction of a self-service kiosk; `local_time` is Bahrain wall-clock time."""

    channel: Literal["kiosk"]
    kiosk_id: Identifier
    seq: Annotated[int, Field(strict=True, ge=0)]
    site: Identifier
    service: ServiceCode
    amount: FilsText
    local_time: BahrainWallClock
    result: KioskResult
    card: Annotated[str, Field(strict=True, max_length=CARD_MAX_CHARS)] | None = None
    cpr: Cpr | None = None


RawModel = PortalEvent | MobileAppEvent | KioskEvent

# The fields that identify an event within its channel: its event_id is the channel and these,
# joined by colons (`portal:<txn_id>`, `mobile_app:<event_id>`, `kiosk:<kiosk_id>:<seq>`).
EVENT_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "portal": ("txn_id",),
    "mobile_app": ("event_id",),
    "kiosk": ("kiosk_id", "seq"),
}


def event_id(channel: str, parts: Iterable[object]) -> str:
    """The event_id of the event of `channel` whose EVENT_ID_FIELDS hold `parts`."""
    return ":".join([channel, *(str(part) for part in parts)])


def event_id_of(event: RawModel) -> str:
    """The event_id of a validated event."""
    return event_id(
        event.channel, [getattr(event, name) for name in EVENT_ID_FIELDS[event.channel]]
    )


RawEvent = Annotated[RawModel, Field(discriminator="channel")]
RAW_EVENT: TypeAdapter[RawModel] = TypeAdapter(RawEvent)


def raw_event_json_schema() -> dict[str, Any]:
    """JSON Schema of the input contract, derived from the models (for the source teams)."""
    return RAW_EVENT.json_schema()
