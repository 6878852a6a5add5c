"""The report's figures and sentences from aggregate rows written by hand (no Beam, no I/O)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from schemas.catalogue import load_catalogue
from tools.report.figures import (
    RejectedCount,
    ServiceRow,
    StatusRow,
    build_figures,
    lookup,
)
from tools.report.periods import parse_period

H1_2017, H1_2016 = parse_period("2017-H1"), parse_period("2016-H1")
# The seeds' H1 figures, all on one day of each half (the figures are sums over the period).
SEEDS = [
    ("portal", 411_000, "28000000.000", 304_444, "17723027.000"),
    ("mobile_app", 50_000, "2500000.000", 19_429, "1072961.000"),
    ("kiosk", 6_000, "152000.000", 5_000, "125000.000"),
]


def _rows() -> list[StatusRow]:
    rows = []
    for channel, n17, a17, n16, a16 in SEEDS:
        rows.append(StatusRow(date(2017, 3, 1), channel, "SUCCESS", n17, Decimal(a17)))
        rows.append(StatusRow(date(2016, 3, 1), channel, "SUCCESS", n16, Decimal(a16)))
    rows += [
        StatusRow(date(2017, 3, 1), "portal", "REFUNDED", 4_110, Decimal("280000.000")),
        StatusRow(date(2017, 3, 1), "portal", "FAILED", 16_440, Decimal("1120000.500")),
        StatusRow(date(2017, 7, 1), "portal", "SUCCESS", 999, Decimal("999.000")),  # H2
        StatusRow(date(2015, 12, 31), "kiosk", "SUCCESS", 7, Decimal("7.000")),  # before
    ]
    return rows


def _figures(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "period": H1_2017,
        "compare": H1_2016,
        "status_rows": _rows(),
        "service_rows": [],
        "rejected": [],
        "catalogue": load_catalogue(),
    }
    args.update(overrides)
    return build_figures(**args)


def test_the_seeds_give_the_seeds_growth() -> None:
    channels = _figures()["channels"]
    assert channels["portal"]["growth"]["payments_pct"] == 35.0
    assert channels["mobile_app"]["growth"]["amount_pct"] == 133.0
    assert channels["all"]["growth"] == {"payments_pct": 42.0, "amount_pct": 62.0}
    assert channels["all"]["current"]["payments"] == 467_000
    assert channels["all"]["current"]["amount"] == "30652000.000"


def test_days_outside_the_periods_are_left_out() -> None:
    portal = _figures()["channels"]["portal"]
    assert portal["current"]["payments"] == 411_000
    assert _figures()["channels"]["kiosk"]["compare"]["payments"] == 5_000


def test_refunds_and_failures_are_apart_from_revenue() -> None:
    fig = _figures()
    assert fig["channels"]["portal"]["current"]["amount"] == "28000000.000"
    refunded = fig["outcomes"]["current"]["portal"]["REFUNDED"]
    assert refunded == {"payments": 4_110, "amount": "280000.000", "amount_bhd": 280_000}
    assert fig["outcomes"]["current"]["all"]["FAILED"]["amount_bhd"] == 1_120_001


def test_average_and_shares() -> None:
    portal = _figures()["channels"]["portal"]["current"]
    assert portal["average_bhd"] == "68.127"  # 28,000,000 / 411,000, to the fils
    assert portal["share_payments_pct"] == 88.0  # 411,000 of 467,000
    assert portal["share_amount_pct"] == 91.3  # 28.0 of 30.652 million


def test_the_sentences_read_like_the_seeds() -> None:
    en, ar = _figures()["sentences"]["en"], _figures()["sentences"]["ar"]
    assert en[0] == (
        "About 411,000 payments through the national portal (bahrain.bh) in the first half of "
        "2017, 35% more than in the first half of 2016, for about 28 million BHD (58% more)."
    )
    assert en[1].startswith("About 50,000 payments through the government apps")
    assert en[1].endswith("for about 2.5 million BHD (133% more).")
    assert en[3] == (
        "Over all three channels, about 467,000 payments in the first half of 2017, 42% more "
        "than in the first half of 2016, for about 31 million BHD (62% more)."
    )
    assert ar[0] == (
        "نحو 411,000 عملية دفع عبر البوابة الوطنية (bahrain.bh) في النصف الأول من عام 2017، "
        "بزيادة 35% عن النصف الأول من عام 2016، بقيمة نحو 28 مليون دينار بحريني (بزيادة 58%)."
    )


def test_a_fall_reads_as_a_fall_and_no_comparison_leaves_growth_out() -> None:
    backwards = _figures(period=H1_2016, compare=H1_2017)["sentences"]["en"][0]
    assert "26% fewer than in the first half of 2017" in backwards
    assert "(37% less)" in backwards
    alone = _figures(compare=None)
    assert alone["channels"]["portal"]["growth"] is None
    assert alone["sentences"]["en"][0] == (
        "About 411,000 payments through the national portal (bahrain.bh) in the first half of "
        "2017, for about 28 million BHD."
    )


def test_a_channel_new_in_the_period_has_no_growth_and_no_sentence_when_empty() -> None:
    rows = [r for r in _rows() if not (r.channel == "kiosk" and r.event_date.year == 2016)]
    fig = _figures(status_rows=rows)
    assert fig["channels"]["kiosk"]["growth"] == {"payments_pct": None, "amount_pct": None}
    assert "kiosks in the first half of 2017, for about 152,000 BHD." in fig["sentences"]["en"][2]
    no_kiosk = [r for r in _rows() if r.channel != "kiosk"]
    assert len(_figures(status_rows=no_kiosk)["sentences"]["en"]) == 3


def test_top_services_take_catalogue_names_in_both_languages() -> None:
    day = date(2017, 2, 1)
    services = [
        ServiceRow(day, "kiosk", "VEH-REG-RENEW", None, "SUCCESS", 30, Decimal("900.000")),
        ServiceRow(day, "kiosk", "GDT-FINE", None, "SUCCESS", 10, Decimal("300.000")),
        ServiceRow(day, "kiosk", "GDT-FINE", None, "REFUNDED", 50, Decimal("1500.000")),
        ServiceRow(day, "kiosk", "NOT-IN-CATALOGUE", "Old fee", "SUCCESS", 10, Decimal("1")),
    ]
    top = _figures(service_rows=services)["top_services"]["kiosk"]
    assert [s["code"] for s in top] == ["VEH-REG-RENEW", "GDT-FINE", "NOT-IN-CATALOGUE"]
    assert top[0]["name_ar"] == "تجديد تسجيل المركبة"
    assert top[0]["share_payments_pct"] == 60.0
    assert top[2]["name_en"] == "Old fee"


def test_rejected_events_are_counted_by_reason_most_first() -> None:
    rejected = [
        RejectedCount("portal", "MALFORMED_JSON", 3),
        RejectedCount(None, "MALFORMED_JSON", 4),
        RejectedCount("kiosk", "INVALID_CPR", 9),
    ]
    fig = _figures(rejected=rejected)["rejected"]
    assert fig["total"] == 16
    assert fig["by_reason"] == [
        {"code": "INVALID_CPR", "count": 9},
        {"code": "MALFORMED_JSON", "count": 7},
    ]
    assert fig["by_channel"] == {"kiosk": 9, "portal": 3, "unknown": 4}


def test_every_month_of_a_period_has_its_figures() -> None:
    monthly = _figures()["monthly"]["current"]["portal"]
    assert [m["month"] for m in monthly] == [f"2017-0{m}" for m in range(1, 7)]
    assert monthly[2]["payments"] == 411_000
    assert monthly[0]["payments"] == 0


def test_lookup_reads_dotted_paths_through_lists() -> None:
    fig = {"a": {"b": [{"c": 5}]}}
    assert lookup(fig, "a.b.0.c") == 5
