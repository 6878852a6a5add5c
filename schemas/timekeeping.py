"""Time rules of the contract: every instant is UTC; every reported day is the Bahrain day."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

# Asia/Bahrain has been UTC+03:00 all year, without daylight saving, since 1972: a fixed offset
# is exact for every date this pipeline sees and needs no tz database on the workers.
BAHRAIN_UTC_OFFSET = timedelta(hours=3)
BAHRAIN = timezone(BAHRAIN_UTC_OFFSET, "Asia/Bahrain")

_MICROS_PER_DAY = 86_400_000_000
_OFFSET_MICROS = 3 * 3_600_000_000
EPOCH_DATE = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def bahrain_day_number(utc_micros: int) -> int:
    """Days since 1970-01-01 of the Bahrain calendar day of a UTC instant (Arrow date32)."""
    return (utc_micros + _OFFSET_MICROS) // _MICROS_PER_DAY


def bahrain_day(utc_micros: int) -> date:
    """The Bahrain calendar day of a UTC instant given in epoch microseconds."""
    return EPOCH_DATE + timedelta(days=bahrain_day_number(utc_micros))


def to_utc_micros(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly (no float seconds on the way)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: say which time zone it is in")
    # timestamp() is a float of seconds: until the year 2255 its error is under 0.25 us, so
    # rounding the scaled value gives the exact microsecond (tests sweep the range).
    return round(moment.timestamp() * 1_000_000)


def from_utc_micros(utc_micros: int) -> datetime:
    """Aware UTC datetime of epoch microseconds."""
    return EPOCH + timedelta(microseconds=utc_micros)
