"""The three raw input shapes of contract.md, as one pydantic union discriminated on `channel`.

Validators turn every value into the exact form normalisation needs (amounts in integer fils,
instants in UTC microseconds) and raise errors whose type is a `RejectCode`, so the rejected
output says precisely which rule an event broke.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
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

from schemas.enums import PaymentMethod, RejectCode
from schemas.money import CURRENCY, AmountError, check_fils, fils_from_text
from schemas.timekeeping import BAHRAIN, to_utc_micros

# Payments before the e-government portal existed, or in the far future, are clock errors.
_EARLIEST_MICROS = to_utc_micros(datetime(2000, 1, 1, tzinfo=BAHRAIN))
_LATEST_MICROS = to_utc_micros(datetime(2100, 1, 1, tzinfo=BAHRAIN))
_CPR = re.compile(r"\d{9}")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _reject(code: RejectCode, message: str) -> PydanticCustomError:
    return PydanticCustomError(code.value, message)


def _plausible_micros(micros: int) -> int:
    if not _EARLIEST_MICROS <= micros < _LATEST_MICROS:
        raise _reject(RejectCode.INVALID_TIMESTAMP, "timestamp is outside 2000-2099")
    return micros


def _fils_from_int(value: Any) -> int:
    if type(value) is not int:  # bool is an int subclass, and 12500.0 is not exact fils
        raise _reject(RejectCode.WRONG_TYPE, "amount_fils must be an integer number of fils")
    try:
        return check_fils(value)
    except AmountError as err:
        raise _reject(RejectCode(err.code), str(err)) from None


def _fils_from_text(value: Any) -> int:
    if not isinstance(value, str):
        raise _reject(RejectCode.WRONG_TYPE, 'amount must be a decimal string such as "12.500"')
    try:
        return fils_from_text(value)
    except AmountError as err:
        raise _reject(RejectCode(err.code), str(err)) from None


def _currency(value: Any) -> str:
    if value != CURRENCY:
        raise _reject(RejectCode.WRONG_CURRENCY, f"currency must be BHD, got {value!r}")
    return CURRENCY


def _cpr(value: Any) -> str:
    if not isinstance(value, str):
        raise _reject(RejectCode.WRONG_TYPE, "cpr must be a string of 9 digits")
    if _CPR.fullmatch(value) is None:
        raise _reject(RejectCode.INVALID_CPR, "cpr must be exactly 9 digits")
    return value


def _code(value: str) -> str:
    if _CODE.fullmatch(value) is None:
        raise _reject(RejectCode.INVALID_VALUE, "code must be 1-64 letters, digits, - _ or .")
    return value.upper()


def _plausible_instant(value: datetime) -> datetime:
    _plausible_micros(to_utc_micros(value))
    return value


def _epoch_millis(value: Any) -> int:
    if type(value) is not int:
        raise _reject(RejectCode.WRONG_TYPE, "ts must be integer epoch milliseconds")
    return _plausible_micros(value * 1000)


def _bahrain_wall_clock(value: Any) -> int:
    if not isinstance(value, str) or _LOCAL_TIME.fullmatch(value) is None:
        raise _reject(RejectCode.INVALID_TIMESTAMP, "local_time must be 'YYYY-MM-DD HH:MM:SS'")
    try:
        local = datetime.fromisoformat(value)
    except ValueError:
        raise _reject(RejectCode.INVALID_TIMESTAMP, f"no such time: {value!r}") from None
    # Kiosks send Bahrain wall-clock time with no offset (contract.md).
    return _plausible_micros(to_utc_micros(local.replace(tzinfo=BAHRAIN)))


FilsFromInt = Annotated[int, BeforeValidator(_fils_from_int)]
FilsFromText = Annotated[int, BeforeValidator(_fils_from_text)]
Currency = Annotated[str, BeforeValidator(_currency)]
Cpr = Annotated[str, BeforeValidator(_cpr)]
ServiceCode = Annotated[str, Field(strict=True), AfterValidator(_code)]
Identifier = Annotated[str, Field(strict=True, min_length=1, max_length=128)]
OffsetInstant = Annotated[AwareDatetime, Field(strict=True), AfterValidator(_plausible_instant)]
EpochMillis = Annotated[int, BeforeValidator(_epoch_millis)]
BahrainWallClock = Annotated[int, BeforeValidator(_bahrain_wall_clock)]


class _Raw(BaseModel):
    # Unknown extra fields are ignored, not rejected: source systems add fields before we do.
    model_config = ConfigDict(extra="ignore", frozen=True)


class PortalStatus(str, Enum):
    PAID = "PAID"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


class PortalMethod(str, Enum):
    DEBIT_CARD = "DEBIT_CARD"
    CREDIT_CARD = "CREDIT_CARD"
    BENEFIT_PAY = "BENEFIT_PAY"


class PortalService(_Raw):
    code: ServiceCode
    entity: Identifier


class Payer(_Raw):
    cpr: Cpr


class PortalEvent(_Raw):
    """A payment-gateway log line of the national portal."""

    channel: Literal["portal"]
    txn_id: Identifier
    service: PortalService
    amount_fils: FilsFromInt
    currency: Currency
    status: PortalStatus
    paid_at: OffsetInstant
    payer: Payer
    method: PortalMethod
    gateway_ref: Identifier | None = None


class AppOs(str, Enum):
    IOS = "ios"
    ANDROID = "android"
    HUAWEI = "huawei"


class AppOutcome(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    REFUND = "refund"


class AppInfo(_Raw):
    id: Identifier
    version: Identifier
    os: AppOs


class AppPayment(_Raw):
    amount: FilsFromText
    currency: Currency
    method: PaymentMethod
    outcome: AppOutcome


class MobileAppEvent(_Raw):
    """A payment event from one of the government apps."""

    channel: Literal["mobile_app"]
    event_id: Identifier
    app: AppInfo
    service_code: ServiceCode
    payment: AppPayment
    ts: EpochMillis
    user: Payer


class KioskResult(str, Enum):
    OK = "OK"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


class KioskEvent(_Raw):
    """A transaction of a self-service kiosk; `local_time` is Bahrain wall-clock time."""

    channel: Literal["kiosk"]
    kiosk_id: Identifier
    seq: Annotated[int, Field(strict=True, ge=0)]
    site: Identifier
    service: ServiceCode
    amount: FilsFromText
    local_time: BahrainWallClock
    result: KioskResult
    card: Annotated[str, Field(strict=True, max_length=64)] | None = None
    cpr: Cpr | None = None


RawEvent = Annotated[PortalEvent | MobileAppEvent | KioskEvent, Field(discriminator="channel")]
RAW_EVENT: TypeAdapter[PortalEvent | MobileAppEvent | KioskEvent] = TypeAdapter(RawEvent)


def raw_event_json_schema() -> dict[str, Any]:
    """JSON Schema of the input contract, derived from the models (for the source teams)."""
    return RAW_EVENT.json_schema()
