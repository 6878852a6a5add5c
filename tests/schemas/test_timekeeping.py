"""schemas.timekeeping: instants are exact UTC microseconds; a day is the Bahrain calendar day."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from schemas.timekeeping import (
    BAHRAIN,
    bahrain_day,
    bahrain_day_number,
    from_utc_micros,
    to_utc_micros,
)

UTC = timezone.utc
MICROS_PER_HOUR = 3_600_000_000


def _micros(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> int:
    return to_utc_micros(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


def _bahrain_zone() -> timezone:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        return zoneinfo.ZoneInfo("Asia/Bahrain")  # type: ignore[no-any-return]
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database with Asia/Bahrain on this machine")


def test_late_evening_local_stays_on_the_same_day() -> None:
    # 22:30 local on 30 June is 19:30 UTC on 30 June.
    moment = datetime(2017, 6, 30, 22, 30, tzinfo=BAHRAIN)
    assert moment.astimezone(UTC) == datetime(2017, 6, 30, 19, 30, tzinfo=UTC)
    assert bahrain_day(to_utc_micros(moment)) == date(2017, 6, 30)


def test_early_morning_local_belongs_to_the_next_bahrain_day() -> None:
    # 02:00 local on 1 July is 23:00 UTC on 30 June, but belongs to 1 July.
    utc_micros = _micros(2017, 6, 30, 23, 0)
    assert utc_micros == to_utc_micros(datetime(2017, 7, 1, 2, 0, tzinfo=BAHRAIN))
    assert bahrain_day(utc_micros) == date(2017, 7, 1)


def test_21_00_utc_exactly_starts_the_next_bahrain_day() -> None:
    boundary = _micros(2017, 6, 30, 21, 0)
    assert bahrain_day(boundary) == date(2017, 7, 1)


def test_one_microsecond_before_21_00_utc_is_still_the_same_bahrain_day() -> None:
    boundary = _micros(2017, 6, 30, 21, 0)
    assert bahrain_day(boundary - 1) == date(2017, 6, 30)


def test_bahrain_day_number_counts_days_since_epoch() -> None:
    assert bahrain_day_number(0) == 0
    assert bahrain_day_number(21 * MICROS_PER_HOUR) == 1
    assert (
        bahrain_day_number(_micros(2017, 7, 1, 0, 0)) == (date(2017, 7, 1) - date(1970, 1, 1)).days
    )


def test_bahrain_day_before_the_epoch_floors_to_the_earlier_day() -> None:
    # 1969-12-31 20:59:59.999999 UTC is 23:59:59.999999 on 31 December in Bahrain.
    assert bahrain_day(-3 * MICROS_PER_HOUR - 1) == date(1969, 12, 31)
    assert bahrain_day(-3 * MICROS_PER_HOUR) == date(1970, 1, 1)


def test_bahrain_offset_is_plus_three_hours() -> None:
    assert datetime(2017, 1, 1, tzinfo=BAHRAIN).utcoffset() == timedelta(hours=3)


def test_to_utc_micros_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_utc_micros(datetime(2017, 6, 30, 21, 15, 3))


def test_to_utc_micros_is_exact_to_the_microsecond() -> None:
    moment = datetime(2017, 6, 30, 18, 15, 3, 123_457, tzinfo=UTC)
    assert to_utc_micros(moment) == 1_498_846_503_123_457


def test_to_utc_micros_is_exact_far_from_the_epoch() -> None:
    # A float of seconds would lose the last microsecond here.
    moment = datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert to_utc_micros(moment) == 4_102_444_799_999_999


def test_to_utc_micros_applies_the_offset() -> None:
    local = datetime(2017, 6, 30, 21, 15, 3, tzinfo=BAHRAIN)
    assert to_utc_micros(local) == _micros(2017, 6, 30, 18, 15, 3)


@pytest.mark.parametrize("utc_micros", [0, 1, 1_498_846_503_123_457, 4_102_444_799_999_999, -1])
def test_from_utc_micros_inverts_to_utc_micros(utc_micros: int) -> None:
    moment = from_utc_micros(utc_micros)
    assert moment.utcoffset() == timedelta(0)
    assert to_utc_micros(moment) == utc_micros


def test_bahrain_day_agrees_with_zoneinfo_across_2017() -> None:
    zone = _bahrain_zone()
    start = _micros(2017, 1, 1, 0, 0)
    end = _micros(2018, 1, 1, 0, 0)
    step = 37 * 60 * 1_000_000 + 1_234_567  # not a divisor of a day: every time of day is hit
    boundaries = [
        _micros(2017, 1, 1, 21, 0) + days * 24 * MICROS_PER_HOUR + delta
        for days in range(365)
        for delta in (-1, 0)
    ]
    for utc_micros in [*range(start, end, step), *boundaries]:
        expected = from_utc_micros(utc_micros).astimezone(zone).date()
        assert bahrain_day(utc_micros) == expected, utc_micros
