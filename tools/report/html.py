"""The report's two static pages, English and Arabic, from figures.json and the charts.

Self-contained: the CSS, the font (`fonts`) and the charts (base64 PNG) are inline; the page
names no address, so it opens offline and from an e-mail attachment alike. Every number is
a `<data value=… data-key=…>` element naming the figures.json path it shows: a test reads
each one back, and nothing else on a page holds a digit.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from html import escape
from typing import Any

from schemas.catalogue import CHANNEL_NAMES
from schemas.enums import Channel
from tools.report import press
from tools.report.figures import ALL, CHANNELS, OUTCOMES, lookup, sentences
from tools.report.fonts import font_face_css
from tools.report.periods import parse_period
from tools.report.text import LABELS, REJECT_REASONS, STATUS_NAMES

_CSS = """
body{font-family:"Report Sans","DejaVu Sans",Arial,sans-serif;
margin:2rem auto;max-width:68rem;padding:0 1.5rem;color:#1d2329;line-height:1.5}
h1{font-size:1.6rem;margin-bottom:.2rem;color:#b5121b}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:2px solid #b5121b;padding-bottom:.2rem}.sub{color:#56606b;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{padding:.3rem .6rem;
border-bottom:1px solid #d8dde2;text-align:start}td.n,th.n{text-align:end}
tr.all td{font-weight:bold;border-top:2px solid #1d2329}
data{unicode-bidi:isolate;direction:ltr}img{max-width:100%;display:block;margin:.8rem 0}
.lead p{font-size:1.05rem;margin:.4rem 0}.note{color:#56606b;font-size:.85rem}
.services{display:flex;flex-wrap:wrap;gap:1.5rem}.services>div{flex:1 1 20rem}
"""


def _text(value: Any, kind: str) -> str:
    if kind == "pct":
        return f"{value:,.1f}%"
    if kind == "bhd3":
        return f"{Decimal(value):,.3f}"
    return press.grouped(value)


def num(fig: dict[str, Any], key: str, kind: str = "int") -> str:
    """The number at `key` as a marked-up element; a dash where there is none (no base)."""
    value = lookup(fig, key)
    if value is None:
        return "—"
    return f'<data value="{escape(str(value))}" data-key="{key}">{_text(value, kind)}</data>'


def _fragments(parts: list[press.Fragment]) -> str:
    return "".join(
        f'<data value="{p.value}" data-key="{p.key}">{escape(p.text)}</data>'
        if isinstance(p, press.Number)
        else escape(p)
        for p in parts
    )


def period_name(fig: dict[str, Any], which: str, lang: str) -> str:
    period = parse_period(fig[which]["label"])
    words, year = period.name_ar() if lang == "ar" else period.name_en()
    return escape(words) + f'<data value="{year}" data-key="{which}.year">{year}</data>'


def channel_name(channel: str, lang: str) -> str:
    if channel == ALL:
        return LABELS[lang]["all_channels"]
    en, ar = CHANNEL_NAMES[Channel(channel)]
    return ar if lang == "ar" else en


def _channel_table(
    fig: dict[str, Any], lang: str, head: str, columns: list[tuple[str, str]], top: str = ""
) -> str:
    """A table with a row per channel and one over all: `columns` are (figures.json path with
    {channel} in it, kind of number), `head` their header cells, `top` an optional row above."""
    rows = []
    for channel in [*CHANNELS, ALL]:
        cells = "".join(
            f'<td class="n">{num(fig, path.format(channel=channel), kind)}</td>'
            for path, kind in columns
        )
        css = ' class="all"' if channel == ALL else ""
        rows.append(f"<tr{css}><td>{escape(channel_name(channel, lang))}</td>{cells}</tr>")
    top_row = f"<tr>{top}</tr>" if top else ""
    return (
        f"<table><thead>{top_row}<tr><th>{LABELS[lang]['channel']}</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _head(names: list[str]) -> str:
    return "".join(f'<th class="n">{escape(name)}</th>' for name in names)


def _headline(fig: dict[str, Any], lang: str) -> str:
    t, base = LABELS[lang], "channels.{channel}"
    top = f'<th></th><th colspan="5">{period_name(fig, "period", lang)}</th>'
    names = [t["payments"], t["amount"], t["average"], t["share_payments"], t["share_amount"]]
    columns = [
        (f"{base}.current.payments", "int"),
        (f"{base}.current.amount_bhd", "int"),
        (f"{base}.current.average_bhd", "bhd3"),
        (f"{base}.current.share_payments_pct", "pct"),
        (f"{base}.current.share_amount_pct", "pct"),
    ]
    if fig["compare"] is not None:
        top += f'<th colspan="2">{period_name(fig, "compare", lang)}</th>'
        top += f'<th colspan="2">{t["growth"]}</th>'
        names += [t["payments"], t["amount"], t["growth_payments"], t["growth_amount"]]
        columns += [
            (f"{base}.compare.payments", "int"),
            (f"{base}.compare.amount_bhd", "int"),
            (f"{base}.growth.payments_pct", "pct"),
            (f"{base}.growth.amount_pct", "pct"),
        ]
    return _channel_table(fig, lang, _head(names), columns, top)


def _outcomes(fig: dict[str, Any], lang: str) -> str:
    t, status = LABELS[lang], STATUS_NAMES[lang]
    names = [f"{status[s]}: {t[what]}" for s in OUTCOMES for what in ("count", "amount")]
    columns = [
        (f"outcomes.current.{{channel}}.{s}.{what}", "int")
        for s in OUTCOMES
        for what in ("payments", "amount_bhd")
    ]
    return _channel_table(fig, lang, _head(names), columns)


def _services(fig: dict[str, Any], lang: str) -> str:
    t, blocks = LABELS[lang], []
    for channel in CHANNELS:
        rows = []
        for i, service in enumerate(fig["top_services"][channel]):
            key = f"top_services.{channel}.{i}"
            name = service["name_ar"] if lang == "ar" else service["name_en"]
            rows.append(
                f"<tr><td>{escape(name)}</td><td class='n'>{num(fig, f'{key}.payments')}</td>"
                f"<td class='n'>{num(fig, f'{key}.amount_bhd')}</td>"
                f"<td class='n'>{num(fig, f'{key}.share_payments_pct', 'pct')}</td></tr>"
            )
        blocks.append(
            f"<div><h3>{escape(channel_name(channel, lang))}</h3><table><thead><tr>"
            f"<th>{t['service']}</th><th class='n'>{t['payments']}</th>"
            f"<th class='n'>{t['amount']}</th><th class='n'>{t['share_of_channel']}</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        )
    return f'<div class="services">{"".join(blocks)}</div>'


def _rejected(fig: dict[str, Any], lang: str) -> str:
    t, rows = LABELS[lang], []
    for i, reason in enumerate(fig["rejected"]["by_reason"]):
        words = REJECT_REASONS.get(reason["code"], ("", ""))[1 if lang == "ar" else 0]
        rows.append(
            f"<tr><td><code>{escape(reason['code'])}</code></td><td>{escape(words)}</td>"
            f"<td class='n'>{num(fig, f'rejected.by_reason.{i}.count')}</td></tr>"
        )
    rows.append(
        f"<tr class='all'><td>{t['total']}</td><td></td>"
        f"<td class='n'>{num(fig, 'rejected.total')}</td></tr>"
    )
    return (
        f"<table><thead><tr><th>{t['code']}</th><th>{t['reason']}</th>"
        f"<th class='n'>{t['events']}</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def render_page(fig: dict[str, Any], lang: str, charts: dict[str, bytes]) -> str:
    """One whole page; `charts` maps "payments" and "amount" to this language's PNGs."""
    t = LABELS[lang]
    period = parse_period(fig["period"]["label"])
    compare = parse_period(fig["compare"]["label"]) if fig["compare"] else None
    said = sentences(fig, period, compare)[lang]
    subtitle = period_name(fig, "period", lang)
    if compare is not None:
        subtitle += f" {t['against']} " + period_name(fig, "compare", lang)
    attrs = 'lang="ar" dir="rtl"' if lang == "ar" else 'lang="en" dir="ltr"'
    parts = [
        f"<h1>{t['title']}</h1>",
        f'<p class="sub">{subtitle}</p>',
        f"<h2>{t['key_figures']}</h2>",
        '<div class="lead">' + "".join(f"<p>{_fragments(s)}</p>" for s in said) + "</div>",
        f"<h2>{t['by_channel']}</h2>",
        _headline(fig, lang),
        f'<p class="note">{t["headline_note"]}</p>',
        f"<h2>{t['per_month']}</h2>",
        _image(charts["payments"], t["chart_payments"]),
        _image(charts["amount"], t["chart_amount"]),
        f"<h2>{t['outcomes']}</h2>",
        f'<p class="note">{t["outcomes_note"]}</p>',
        _outcomes(fig, lang),
        f"<h2>{t['top_services']}</h2>",
        _services(fig, lang),
        f"<h2>{t['rejected']}</h2>",
        f'<p class="note">{t["rejected_note"]}</p>',
        _rejected(fig, lang),
        f'<p class="note">{t["source_note"]}</p>',
    ]
    body = "".join(parts)
    fonts = font_face_css(t["title"] + body)
    return (
        f'<!DOCTYPE html>\n<html {attrs}><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{t['title']}</title><style>{fonts}{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
