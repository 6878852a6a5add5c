"""Periods and press rounding of the report, without Beam or matplotlib."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tools.report.periods import parse_period
from tools.report.press import PressFigure, press_figure, whole_percent

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    ("text", "start", "end", "months"),
    [
        ("2017-H1", date(2017, 1, 1), date(2017, 6, 30), 6),
        ("2016-H2", date(2016, 7, 1), date(2016, 12, 31), 6),
        ("2016-Q1", date(2016, 1, 1), date(2016, 3, 31), 3),
        ("2021-Q4", date(2021, 10, 1), date(2021, 12, 31), 3),
        ("2020", date(2020, 1, 1), date(2020, 12, 31), 12),
    ],
)
def test_a_period_is_its_whole_months(text: str, start: date, end: date, months: int) -> None:
    period = parse_period(text)
    assert (period.start, period.end, len(period.months)) == (start, end, months)
    assert period.label == text


@pytest.mark.parametrize("text", ["2017-H3", "2017-Q5", "2017-Q0", "17-H1", "2017H1", "H1"])
def test_a_period_that_is_none_is_refused_with_the_forms_that_are(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-H1"):
        parse_period(text)


def test_periods_are_named_as_the_seeds_name_them() -> None:
    assert "".join(parse_period("2017-H1").name_en()) == "the first half of 2017"
    assert "".join(parse_period("2017-H1").name_ar()) == "النصف الأول من عام 2017"
    assert "".join(parse_period("2016-Q3").name_en()) == "the third quarter of 2016"
    assert "".join(parse_period("2021").name_en()) == "2021"
    assert "".join(parse_period("2021").name_ar()) == "عام 2021"


@pytest.mark.parametrize(
    ("exact", "qualifier", "value", "millions"),
    [
        (411_000, "about", 411_000, False),
        (410_874, "about", 411_000, False),
        (50_300, "more than", 50_000, False),
        (50_000, "about", 50_000, False),
        (6_000, "about", 6_000, False),
        (152_240, "about", 152_000, False),
        (937_400, "about", 937_000, False),
        (Decimal("28000000.000"), "about", 28, True),
        (Decimal("27612345.125"), "about", 28, True),
        (Decimal("2500000.000"), "about", 2.5, True),
        (Decimal("30200000.000"), "more than", 30, True),
        (Decimal("30652000.000"), "about", 31, True),
        (3_700_000, "about", 3.7, True),
        (Decimal("499000000.000"), "about", 499, True),
        (0, "about", 0, False),
    ],
)
def test_press_rounding(
    exact: int | Decimal, qualifier: str, value: int | float, millions: bool
) -> None:
    assert press_figure(exact) == PressFigure(qualifier, value, millions)


def test_growth_is_printed_whole_half_away_from_zero() -> None:
    assert [whole_percent(p) for p in (34.5, 35.4, -2.5, 133.0, 0.4)] == [35, 35, -3, 133, 0]


def test_the_pure_report_modules_load_without_beam_or_matplotlib() -> None:
    modules = ["tools.report.periods", "tools.report.press", "tools.report.figures"]
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        "print('apache_beam' in sys.modules, 'matplotlib' in sys.modules)"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip() == "False False"
