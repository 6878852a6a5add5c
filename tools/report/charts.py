"""The report's charts: payments and amount per month and channel, both periods, as PNG bytes.

PNG, not SVG: Arabic inside an embedded SVG is laid out by the viewer and comes out wrong in
some renderers, where matplotlib (3.11 and later) shapes and orders Arabic itself into the
pixels. No reshaper or bidi step: applied on top of matplotlib's own, it reverses the text.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, ever: the report runs in CI and on servers

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from tools.report.figures import CHANNELS

MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "ar": ("يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر",
           "أكتوبر", "نوفمبر", "ديسمبر"),
}  # fmt: skip
COLOURS = ("#b5121b", "#9aa5b1")  # the period, then the comparison
_FONT = "DejaVu Sans"  # shipped with matplotlib, with Arabic glyphs: the same on every machine


def _grouped(value: float, _position: int) -> str:
    return f"{value:,.0f}"


def monthly_chart(
    fig: dict[str, Any],
    metric: str,
    title: str,
    channel_names: dict[str, str],
    period_names: tuple[str, str | None],
    lang: str,
) -> bytes:
    """One panel per channel, a bar per month for the period and one for the comparison;
    `metric` is "payments" or "amount_bhd"."""
    now, before = fig["monthly"]["current"], fig["monthly"]["compare"]
    plt.rcParams["font.family"] = _FONT
    figure, axes = plt.subplots(1, len(CHANNELS), figsize=(11, 3.4), dpi=110)
    months = [int(m["month"][5:]) for m in now[CHANNELS[0]]]
    width = 0.4 if before else 0.8
    panels = list(reversed(axes)) if lang == "ar" else list(axes)  # the first at the right
    for ax, channel in zip(panels, CHANNELS, strict=True):
        xs = list(range(len(months)))
        ax.bar(
            [x - width / 2 if before else x for x in xs],
            [m[metric] for m in now[channel]],
            width,
            color=COLOURS[0],
            label=period_names[0],
        )
        if before:
            ax.bar(
                [x + width / 2 for x in xs[: len(before[channel])]],
                [m[metric] for m in before[channel]][: len(xs)],
                width,
                color=COLOURS[1],
                label=period_names[1],
            )
        ax.set_title(channel_names[channel], fontsize=10)
        ax.set_xticks(xs, [MONTHS[lang][m - 1] for m in months], fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(_grouped))
        ax.tick_params(axis="y", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        if lang == "ar":  # a right-to-left reader starts at the right: months run leftwards
            ax.invert_xaxis()
            ax.yaxis.tick_right()
            ax.spines[["left"]].set_visible(False)
            ax.spines[["right"]].set_visible(True)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    figure.suptitle(title, fontsize=12)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
