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

import re
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


# The sentence in each language: {names} are filled with fragments; a change clause is left out
# where there is no comparison, or no base to grow from.
SENTENCES: dict[str, dict[str, str]] = {
    "en": {
        "sentence": "{lead}{payments} payments{where} in {period}{count_change}, for {amount} BHD"
        "{amount_change}.",
        "count_up": ", {pct}% more than in {compare}",
        "count_down": ", {pct}% fewer than in {compare}",
        "amount_up": " ({pct}% more)",
        "amount_down": " ({pct}% less)",
        "about": "about",
        "more than": "more than",
        "million": " million",
    },
    "ar": {
        "sentence": "{lead}{payments} عملية دفع{where} في {period}{count_change}، بقيمة {amount} "
        "دينار بحريني{amount_change}.",
        "count_up": "، بزيادة {pct}% عن {compare}",
        "count_down": "، بانخفاض {pct}% عن {compare}",
        "amount_up": " (بزيادة {pct}%)",
        "amount_down": " (بانخفاض {pct}%)",
        "about": "نحو",
        "more than": "أكثر من",
        "million": " مليون",
    },
}
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class SentenceParts:
    """What one sentence says, in one language: whose payments, when, against when, how much."""

    key: str  # figures.json path of this line's press figures, e.g. press.portal
    lead: str  # "Over all three channels, "; "" for one channel
    where: str  # " through the national portal (bahrain.bh)"; "" for all channels
    period: tuple[str, str]  # (words, year)
    compare: tuple[str, str] | None
    payments: PressFigure
    amount: PressFigure
    growth_payments: int | None
    growth_amount: int | None


def _fill(template: str, slots: dict[str, list[Fragment]]) -> list[Fragment]:
    pieces = _SLOT.split(template)  # text, slot name, text, slot name, …
    out: list[Fragment] = []
    for i, piece in enumerate(pieces):
        out += slots[piece] if i % 2 else [piece]
    return [f for f in out if f != ""]


def _figure(key: str, figure: PressFigure, words: dict[str, str]) -> list[Fragment]:
    unit = words["million"] if figure.millions else ""
    return [f"{words[figure.qualifier]} ", number(f"{key}.value", figure.value), unit]


def _change(
    kind: str, growth: int | None, p: SentenceParts, words: dict[str, str]
) -> list[Fragment]:
    if p.compare is None or growth is None:
        return []
    template = words[f"{kind}_up" if growth >= 0 else f"{kind}_down"]
    which = "payments" if kind == "count" else "amount"
    compare: list[Fragment] = [p.compare[0], _year("compare.year", p.compare[1])]
    pct: list[Fragment] = [number(f"{p.key}.growth_{which}_pct", abs(growth))]
    return _fill(template, {"pct": pct, "compare": compare})


def _year(key: str, year: str) -> Number:
    return Number(key, int(year), year)


def sentence(p: SentenceParts, lang: str) -> list[Fragment]:
    """The seeds' sentence: "About 411,000 payments through …, 35% more than in …, for about 28
    million BHD (58% more)." / "نحو 411,000 عملية دفع عبر … في …، بزيادة 35% عن …، بقيمة نحو 28
    مليون دينار بحريني (بزيادة 58%)."; a change clause only with a comparison that has a base."""
    words = SENTENCES[lang]
    payments = _figure(f"{p.key}.payments", p.payments, words)
    if lang == "en" and not p.lead:  # the figure opens the sentence
        payments[0] = str(payments[0]).capitalize()
    slots: dict[str, list[Fragment]] = {
        "lead": [p.lead],
        "payments": payments,
        "where": [p.where],
        "period": [p.period[0], _year("period.year", p.period[1])],
        "count_change": _change("count", p.growth_payments, p, words),
        "amount": _figure(f"{p.key}.amount", p.amount, words),
        "amount_change": _change("amount", p.growth_amount, p, words),
    }
    return _fill(words["sentence"], slots)


def plain_text(fragments: list[Fragment]) -> str:
    """A sentence as text (figures.json keeps it so, for reuse)."""
    return "".join(f.text if isinstance(f, Number) else f for f in fragments)
