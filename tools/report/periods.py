"""Reporting periods as the seeds name them: a half, a quarter or a whole year of Bahrain days.

Pure: no Beam, no I/O. A period is named on the command line as `2017-H1`, `2017-Q3` or
`2021`, and in a page as "the first half of 2017" / "النصف الأول من عام 2017".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

_PATTERN = re.compile(r"^(?P<year>\d{4})(?:-(?P<kind>[HQ])(?P<n>\d))?$")
_ORDINAL_EN = ("first", "second", "third", "fourth")
_HALF_AR = ("النصف الأول", "النصف الثاني")
_QUARTER_AR = ("الربع الأول", "الربع الثاني", "الربع الثالث", "الربع الرابع")


@dataclass(frozen=True)
class Period:
    """A span of whole months; `start` and `end` are Bahrain days, both included."""

    label: str  # as given on the command line: 2017-H1, 2017-Q2, 2021
    year: int
    kind: str  # "H", "Q" or "Y"
    number: int  # which half or quarter; 1 for a year
    start: date
    end: date

    @property
    def months(self) -> list[str]:
        """The period's months as "YYYY-MM", in order (the aggregates' month folders)."""
        first, count = self.start.month, self.end.month - self.start.month + 1
        return [f"{self.year}-{m:02d}" for m in range(first, first + count)]

    def name_en(self) -> tuple[str, str]:
        """(words before the year, the year): "the first half of ", "2017"."""
        if self.kind == "Y":
            return "", str(self.year)
        what = "half" if self.kind == "H" else "quarter"
        return f"the {_ORDINAL_EN[self.number - 1]} {what} of ", str(self.year)

    def name_ar(self) -> tuple[str, str]:
        """(words before the year, the year): "النصف الأول من عام ", "2017"."""
        if self.kind == "Y":
            return "عام ", str(self.year)
        names = _HALF_AR if self.kind == "H" else _QUARTER_AR
        return f"{names[self.number - 1]} من عام ", str(self.year)

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "year": self.year,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "name_en": "".join(self.name_en()),
            "name_ar": "".join(self.name_ar()),
        }


def _month_end(year: int, month: int) -> date:
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def parse_period(text: str) -> Period:
    """`YYYY-H1|H2`, `YYYY-Q1..Q4` or `YYYY`; anything else is a ValueError that says so."""
    forms = "use YYYY-H1, YYYY-H2, YYYY-Q1..YYYY-Q4 or YYYY"
    match = _PATTERN.match(text.strip())
    if match is None:
        raise ValueError(f"period {text!r}: {forms}")
    year, kind = int(match["year"]), match["kind"] or "Y"
    number = int(match["n"]) if match["n"] else 1
    months = {"Y": 12, "H": 6, "Q": 3}[kind]
    if number < 1 or number * months > 12:
        raise ValueError(f"period {text!r}: a year has 2 halves and 4 quarters; {forms}")
    first = (number - 1) * months + 1
    last = first + months - 1
    label = str(year) if kind == "Y" else f"{year}-{kind}{number}"
    return Period(label, year, kind, number, date(year, first, 1), _month_end(year, last))
