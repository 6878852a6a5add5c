"""Figures as a press release states them, and the seeds' sentences built from them.

Pure: no Beam, no I/O. iGA's reports round for reading ("about 411,000 payments", "more than
50,000", "about 28 million BHD"); the rule here makes those choices from the exact figures so
that the same data always reads the same way:

- a value just above a round figure of one significant digit (at most 1% above) is "more than"
  it: 50,300 is "more than 50,000", 30.2 million "more than 30 million";
- otherwise it is "about" the value to three significant figures (411,000; 152,000; 6,000), or
  from a million on, in millions: whole from 10 million (28, 500), one decimal below (2.5).

A sentence is a list of fragments, text and numbers, so that the pages can mark every number
with the figures.json key it shows (tests check each one).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)
_JUST_ABOVE = Decimal("0.01")


@dataclass(frozen=True)
class Number:
    """A number as a page shows it, and where figures.json holds it (a dotted path)."""

    key: str
    value: int | float
    text: str


Fragment = str | Number


@dataclass(frozen=True)
class PressFigure:
    """A rounded figure: "about"/"more than", its value, in units or in millions."""

    qualifier: str  # "about" | "more than"
    value: int | float
    millions: bool

    def as_dict(self) -> dict[str, object]:
        return {"qualifier": self.qualifier, "value": self.value, "millions": self.millions}


def _significant(value: Decimal, digits: int, rounding: str) -> Decimal:
    """`value` kept to `digits` significant figures (a positive value)."""
    exponent = value.adjusted() - digits + 1
    step = Decimal(1).scaleb(exponent)
    return (value / step).to_integral_value(rounding=rounding) * step


def _plain(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def press_figure(exact: Decimal | int) -> PressFigure:
    """The figure a press release would print for an exact count or BHD amount."""
    value = Decimal(exact)
    if value <= 0:
        return PressFigure("about", 0, False)
    floor = _significant(value, 1, ROUND_FLOOR)
    if floor < value <= floor * (1 + _JUST_ABOVE):
        millions = floor >= MILLION
        return PressFigure("more than", _plain(floor / MILLION if millions else floor), millions)
    if value < MILLION:
        return PressFigure("about", _plain(_significant(value, 3, ROUND_HALF_UP)), False)
    in_millions = value / MILLION
    step = Decimal(1) if in_millions >= 10 else Decimal("0.1")
    return PressFigure("about", _plain(in_millions.quantize(step, rounding=ROUND_HALF_UP)), True)


def whole_percent(pct: float) -> int:
    """A growth percentage as a press release prints it: whole, half away from zero."""
    return int(Decimal(str(pct)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def grouped(value: int | float) -> str:
    """Latin digits with thousands separators, as iGA publishes them in both languages."""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def number(key: str, value: int | float, text: str | None = None) -> Number:
    return Number(key, value, grouped(value) if text is None else text)


_QUALIFIER_AR = {"about": "نحو", "more than": "أكثر من"}


def _figure(key: str, figure: PressFigure, arabic: bool, first: bool) -> list[Fragment]:
    if arabic:
        words = _QUALIFIER_AR[figure.qualifier]
    else:
        words = figure.qualifier.capitalize() if first else figure.qualifier
    unit = (" مليون" if arabic else " million") if figure.millions else ""
    return [f"{words} ", number(f"{key}.value", figure.value), unit]


@dataclass(frozen=True)
class SentenceParts:
    """What one sentence says: whose payments, the period, the comparison, the figures."""

    key: str  # figures.json path of this line's press figures, e.g. press.portal
    where_en: str  # "through the national portal (bahrain.bh)"; "" for all channels
    where_ar: str
    period_en: tuple[str, str]  # (words, year)
    period_ar: tuple[str, str]
    compare_en: tuple[str, str] | None
    compare_ar: tuple[str, str] | None
    payments: PressFigure
    amount: PressFigure
    growth_payments: int | None
    growth_amount: int | None


def _year(key: str, year: str) -> Number:
    return Number(key, int(year), year)


def sentence_en(p: SentenceParts, lead: str = "") -> list[Fragment]:
    """The English sentence: "About 411,000 payments through …, 35% more than in …, for about
    28 million BHD (58% more)."; the growth clauses only with a comparison that has a base."""
    out: list[Fragment] = [lead] if lead else []
    out += _figure(f"{p.key}.payments", p.payments, arabic=False, first=not lead)
    out += [" payments", f" {p.where_en}" if p.where_en else "", f" in {p.period_en[0]}"]
    out.append(_year("period.year", p.period_en[1]))
    if p.compare_en is not None and p.growth_payments is not None:
        more = "more" if p.growth_payments >= 0 else "fewer"
        out += [", ", number(f"{p.key}.growth_payments_pct", abs(p.growth_payments))]
        out += [f"% {more} than in {p.compare_en[0]}", _year("compare.year", p.compare_en[1])]
    out += [", for "]
    out += _figure(f"{p.key}.amount", p.amount, arabic=False, first=False)
    out.append(" BHD")
    if p.compare_en is not None and p.growth_amount is not None:
        more = "more" if p.growth_amount >= 0 else "less"
        out += [" (", number(f"{p.key}.growth_amount_pct", abs(p.growth_amount)), f"% {more})"]
    out.append(".")
    return out


def sentence_ar(p: SentenceParts, lead: str = "") -> list[Fragment]:
    """The Arabic sentence, the same figures in the same order: "نحو 411,000 عملية دفع عبر … في
    …، بزيادة 35% عن …، بقيمة نحو 28 مليون دينار بحريني (بزيادة 58%)."."""
    out: list[Fragment] = [lead] if lead else []
    out += _figure(f"{p.key}.payments", p.payments, arabic=True, first=not lead)
    out += [" عملية دفع", f" {p.where_ar}" if p.where_ar else "", f" في {p.period_ar[0]}"]
    out.append(_year("period.year", p.period_ar[1]))
    if p.compare_ar is not None and p.growth_payments is not None:
        change = "بزيادة" if p.growth_payments >= 0 else "بانخفاض"
        out += [f"، {change} ", number(f"{p.key}.growth_payments_pct", abs(p.growth_payments))]
        out += [f"% عن {p.compare_ar[0]}", _year("compare.year", p.compare_ar[1])]
    out += ["، بقيمة "]
    out += _figure(f"{p.key}.amount", p.amount, arabic=True, first=False)
    out.append(" دينار بحريني")
    if p.compare_ar is not None and p.growth_amount is not None:
        change = "بزيادة" if p.growth_amount >= 0 else "بانخفاض"
        out += [f" ({change} ", number(f"{p.key}.growth_amount_pct", abs(p.growth_amount)), "%)"]
    out.append(".")
    return out


def plain_text(fragments: list[Fragment]) -> str:
    """A sentence as text (figures.json keeps it so, for reuse)."""
    return "".join(f.text if isinstance(f, Number) else f for f in fragments)
