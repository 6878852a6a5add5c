"""Every figure of the report, from the committed aggregates' rows: figures.json's content.

Pure: no Beam, no I/O, no matplotlib, so the arithmetic is tested on rows written by hand.
Payments and revenue are successful payments only (the seeds' figures are); failed, cancelled
and refunded payments are counted apart, never netted against revenue. Amounts stay exact
(Decimal strings to the fils); what a page rounds for display is stored rounded beside them,
so a page shows nothing figures.json does not hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from schemas.catalogue import CHANNEL_NAMES, Catalogue
from schemas.enums import Channel, PaymentStatus
from tools.report import press
from tools.report.periods import Period

ALL = "all"
CHANNELS = [c.value for c in Channel]
OUTCOMES = [s.value for s in PaymentStatus if s is not PaymentStatus.SUCCESS]
_SUCCESS = PaymentStatus.SUCCESS.value
_FILS, _TENTH = Decimal("0.001"), Decimal("0.1")


@dataclass(frozen=True)
class StatusRow:
    """One row of the by_status aggregates: a (day, channel, status) and its figures."""

    event_date: date
    channel: str
    status: str
    payments: int
    amount: Decimal


@dataclass(frozen=True)
class ServiceRow:
    """One row of the by_service aggregates."""

    event_date: date
    channel: str
    service_code: str
    service_name_en: str | None
    status: str
    payments: int
    amount: Decimal


@dataclass(frozen=True)
class RejectedCount:
    """Rejected events of one claimed channel (None: unreadable) and error code."""

    channel: str | None
    error_code: str
    count: int


def _pct(part: Decimal | int, whole: Decimal | int) -> float | None:
    if not whole:
        return None
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(_TENTH, rounding=ROUND_HALF_UP))


def _growth(now: Decimal | int, before: Decimal | int) -> float | None:
    if not before:
        return None
    change = (Decimal(now) - Decimal(before)) * 100 / Decimal(before)
    return float(change.quantize(_TENTH, rounding=ROUND_HALF_UP))


def _whole_bhd(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _money(payments: int, amount: Decimal) -> dict[str, Any]:
    return {"payments": payments, "amount": f"{amount:.3f}", "amount_bhd": _whole_bhd(amount)}


def _in(period: Period, day: date) -> bool:
    return period.start <= day <= period.end


def _success_totals(rows: list[StatusRow], period: Period) -> dict[str, tuple[int, Decimal]]:
    totals: dict[str, list[Any]] = {ch: [0, Decimal(0)] for ch in [*CHANNELS, ALL]}
    for row in rows:
        if row.status == _SUCCESS and _in(period, row.event_date):
            for key in (row.channel, ALL):
                totals[key][0] += row.payments
                totals[key][1] += row.amount
    return {ch: (n, amount) for ch, (n, amount) in totals.items()}


def _headline(totals: dict[str, tuple[int, Decimal]]) -> dict[str, dict[str, Any]]:
    all_n, all_amount = totals[ALL]
    out = {}
    for channel, (n, amount) in totals.items():
        average = f"{(amount / n).quantize(_FILS, rounding=ROUND_HALF_UP)}" if n else None
        out[channel] = {
            **_money(n, amount),
            "average_bhd": average,
            "share_payments_pct": _pct(n, all_n),
            "share_amount_pct": _pct(amount, all_amount),
        }
    return out


def _outcomes(rows: list[StatusRow], period: Period) -> dict[str, dict[str, dict[str, Any]]]:
    """Failed, cancelled and refunded payments per channel and over all: apart from revenue."""
    sums: dict[str, dict[str, list[Any]]] = {
        ch: {st: [0, Decimal(0)] for st in OUTCOMES} for ch in [*CHANNELS, ALL]
    }
    for row in rows:
        if row.status in OUTCOMES and _in(period, row.event_date):
            for key in (row.channel, ALL):
                sums[key][row.status][0] += row.payments
                sums[key][row.status][1] += row.amount
    return {ch: {st: _money(n, a) for st, (n, a) in by.items()} for ch, by in sums.items()}


def _monthly(rows: list[StatusRow], period: Period) -> dict[str, list[dict[str, Any]]]:
    """Successful payments per channel and month (the charts' data)."""
    sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for row in rows:
        if row.status == _SUCCESS and _in(period, row.event_date):
            pair = sums[row.channel, f"{row.event_date:%Y-%m}"]
            pair[0] += row.payments
            pair[1] += row.amount
    return {
        ch: [{"month": m, **_money(*sums.get((ch, m), (0, Decimal(0))))} for m in period.months]
        for ch in CHANNELS
    }


def _top_services(
    rows: list[ServiceRow], period: Period, catalogue: Catalogue, top: int
) -> dict[str, list[dict[str, Any]]]:
    """Each channel's services with the most successful payments (ties: by code)."""
    sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, Decimal(0), None])
    for row in rows:
        if row.status == _SUCCESS and _in(period, row.event_date):
            entry = sums[row.channel, row.service_code]
            entry[0] += row.payments
            entry[1] += row.amount
            entry[2] = entry[2] or row.service_name_en
    out: dict[str, list[dict[str, Any]]] = {}
    for channel in CHANNELS:
        mine = [(code, v) for (ch, code), v in sums.items() if ch == channel]
        total = sum(v[0] for _, v in mine)
        mine.sort(key=lambda item: (-item[1][0], item[0]))
        out[channel] = []
        for code, (n, amount, name_en) in mine[:top]:
            service = catalogue.get(code)
            out[channel].append(
                {
                    "code": code,
                    "name_en": service.name_en if service else (name_en or code),
                    "name_ar": service.name_ar if service else (name_en or code),
                    **_money(n, amount),
                    "share_payments_pct": _pct(n, total),
                }
            )
    return out


def _rejected(counts: Iterable[RejectedCount]) -> dict[str, Any]:
    by_reason: dict[str, int] = defaultdict(int)
    by_channel: dict[str, int] = defaultdict(int)
    for count in counts:
        by_reason[count.error_code] += count.count
        by_channel[count.channel or "unknown"] += count.count
    reasons = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    return {
        "total": sum(by_reason.values()),
        "by_reason": [{"code": code, "count": n} for code, n in reasons],
        "by_channel": dict(sorted(by_channel.items())),
    }


def _press(channels: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, entry in channels.items():
        growth = entry["growth"] or {}
        pay_growth, amount_growth = growth.get("payments_pct"), growth.get("amount_pct")
        out[key] = {
            "payments": press.press_figure(entry["current"]["payments"]).as_dict(),
            "amount": press.press_figure(Decimal(entry["current"]["amount"])).as_dict(),
            "growth_payments_pct": None if pay_growth is None else press.whole_percent(pay_growth),
            "growth_amount_pct": None
            if amount_growth is None
            else press.whole_percent(amount_growth),
        }
    return out


_LEADS = {"en": "Over all three channels, ", "ar": "عبر القنوات الثلاث: "}


def _parts(
    key: str, fig: dict[str, Any], period: Period, compare: Period | None, lang: str
) -> press.SentenceParts:
    entry = fig["press"][key]
    arabic = lang == "ar"
    if key == ALL:
        lead, where = _LEADS[lang], ""
    else:
        en, ar = CHANNEL_NAMES[Channel(key)]
        lead, where = "", f" عبر {ar}" if arabic else f" through the {en[0].lower()}{en[1:]}"
    return press.SentenceParts(
        key=f"press.{key}",
        lead=lead,
        where=where,
        period=period.name_ar() if arabic else period.name_en(),
        compare=None if compare is None else compare.name_ar() if arabic else compare.name_en(),
        payments=press.PressFigure(**entry["payments"]),
        amount=press.PressFigure(**entry["amount"]),
        growth_payments=entry["growth_payments_pct"],
        growth_amount=entry["growth_amount_pct"],
    )


def sentences(
    fig: dict[str, Any], period: Period, compare: Period | None
) -> dict[str, list[list[press.Fragment]]]:
    """The seeds' sentences, one per channel with payments and one over all channels."""
    keys = [ch for ch in CHANNELS if fig["channels"][ch]["current"]["payments"]] + [ALL]
    return {
        lang: [press.sentence(_parts(key, fig, period, compare, lang), lang) for key in keys]
        for lang in ("en", "ar")
    }


def build_figures(
    period: Period,
    compare: Period | None,
    status_rows: list[StatusRow],
    service_rows: list[ServiceRow],
    rejected: Iterable[RejectedCount],
    catalogue: Catalogue,
    top: int = 5,
) -> dict[str, Any]:
    """figures.json: headline per channel and overall, outcomes, months, services, rejected,
    press figures and the sentences made of them."""
    now = _headline(_success_totals(status_rows, period))
    before = _headline(_success_totals(status_rows, compare)) if compare else None
    channels: dict[str, dict[str, Any]] = {}
    for key, current in now.items():
        previous = before[key] if before else None
        growth = None
        if previous is not None:
            growth = {
                "payments_pct": _growth(current["payments"], previous["payments"]),
                "amount_pct": _growth(Decimal(current["amount"]), Decimal(previous["amount"])),
            }
        channels[key] = {"current": current, "compare": previous, "growth": growth}
    fig: dict[str, Any] = {
        "period": period.as_dict(),
        "compare": compare.as_dict() if compare else None,
        "channels": channels,
        "outcomes": {
            "current": _outcomes(status_rows, period),
            "compare": _outcomes(status_rows, compare) if compare else None,
        },
        "monthly": {
            "current": _monthly(status_rows, period),
            "compare": _monthly(status_rows, compare) if compare else None,
        },
        "top_services": _top_services(service_rows, period, catalogue, top),
        "rejected": _rejected(rejected),
    }
    fig["press"] = _press(channels)
    said = sentences(fig, period, compare)
    fig["sentences"] = {lang: [press.plain_text(s) for s in said[lang]] for lang in said}
    return fig


def lookup(fig: dict[str, Any], key: str) -> Any:
    """The value at a dotted figures.json path ("channels.portal.current.payments",
    "top_services.kiosk.0.payments"): what a page's number claims to show."""
    node: Any = fig
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node
