"""Closed vocabularies of the contract: one enum per concept, shared by every module."""

from __future__ import annotations

from enum import Enum


class Channel(str, Enum):
    """The three electronic channels, by their canonical names (contract.md)."""

    PORTAL = "portal"
    MOBILE_APP = "mobile_app"
    KIOSK = "kiosk"


class PaymentStatus(str, Enum):
    """Normalised outcome of a payment, whatever the channel called it."""

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


class PaymentMethod(str, Enum):
    """Normalised payment method. Kiosks only say a card was used, hence CARD."""

    DEBIT_CARD = "DEBIT_CARD"
    CREDIT_CARD = "CREDIT_CARD"
    BENEFIT_PAY = "BENEFIT_PAY"
    APPLE_PAY = "APPLE_PAY"
    GOOGLE_PAY = "GOOGLE_PAY"
    HUAWEI_PAY = "HUAWEI_PAY"
    CARD = "CARD"


class RejectCode(str, Enum):
    """Machine-readable reason an event was rejected; the only place these codes are defined."""

    INVALID_UTF8 = "INVALID_UTF8"
    MALFORMED_JSON = "MALFORMED_JSON"
    NOT_AN_OBJECT = "NOT_AN_OBJECT"
    LINE_TOO_LONG = "LINE_TOO_LONG"
    TOO_DEEPLY_NESTED = "TOO_DEEPLY_NESTED"
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    MISSING_FIELD = "MISSING_FIELD"
    WRONG_TYPE = "WRONG_TYPE"
    INVALID_VALUE = "INVALID_VALUE"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    NON_POSITIVE_AMOUNT = "NON_POSITIVE_AMOUNT"
    WRONG_CURRENCY = "WRONG_CURRENCY"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    INVALID_CPR = "INVALID_CPR"
    DUPLICATE_CONFLICT = "DUPLICATE_CONFLICT"
    # An object repeats a key: parsers disagree on which value wins, so neither is booked.
    DUPLICATE_KEY = "DUPLICATE_KEY"
    # An identifier the event_id is built from holds a card number or the payer's CPR: the
    # id cannot be written, and masking it would break de-duplication.
    PERSONAL_DATA_IN_ID = "PERSONAL_DATA_IN_ID"
    # Processing the event raised: the exception class is in the reason; the run goes on.
    UNPROCESSABLE = "UNPROCESSABLE"


class QualityWarning(str, Enum):
    """Data-quality warnings: the event is accepted, but the run manifest counts it."""

    UNKNOWN_SERVICE = "UNKNOWN_SERVICE"
    UNMASKED_CARD_NUMBER = "UNMASKED_CARD_NUMBER"


class InputFault(str, Enum):
    """Why a whole input file was quarantined instead of read: it is never taken as complete.

    A file-level code, not a RejectCode: no event of the file is read, so none is rejected."""

    # The compressed stream ends before its end-of-stream marker (an empty file included):
    # cut off mid-transfer, typically.
    TRUNCATED = "TRUNCATED"
    # The compressed data fails its own checks: the CRC-32 or the length (ISIZE) in a gzip
    # trailer, or invalid compressed data.
    CORRUPT = "CORRUPT"
    # Named as a compressed file (.gz…) but not in that format at all.
    NOT_COMPRESSED = "NOT_COMPRESSED"


class GateLevel(str, Enum):
    """Outcome of a quality gate, from best to worst."""

    OK = "ok"
    WARN = "warn"
    ERROR = "error"


class RejectStep(str, Enum):
    """Where in the path an event was rejected (the `step` column of rejected rows)."""

    PARSE = "parse"
    VALIDATE = "validate"
    NORMALISE = "normalise"
    DEDUPLICATE = "deduplicate"


class PaneTiming(str, Enum):
    """When a live aggregate pane fired against the watermark (Beam's PaneInfo timing)."""

    EARLY = "EARLY"
    ON_TIME = "ON_TIME"
    LATE = "LATE"
    UNKNOWN = "UNKNOWN"


class AggregateKind(str, Enum):
    """The aggregate datasets under aggregates/: the two a batch run versions per month, and
    the live windows streaming writes per pane."""

    BY_STATUS = "by_status"
    BY_SERVICE = "by_service"
    LIVE = "live"


# The kinds published one file per month and version by a batch run (schemas/layout.py).
MONTHLY_AGGREGATES: tuple[AggregateKind, ...] = (AggregateKind.BY_STATUS, AggregateKind.BY_SERVICE)
