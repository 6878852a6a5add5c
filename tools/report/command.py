"""The report's command line: check it, read the committed aggregates, write the three files."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from pipelines import cli
from schemas.catalogue import CHANNEL_NAMES, load_catalogue
from schemas.enums import Channel
from tools.report.figures import build_figures
from tools.report.periods import Period, parse_period

FILES = ("report.en.html", "report.ar.html", "figures.json")


def _period(parser: cli.Parser, text: str, option: str) -> Period:
    try:
        return parse_period(text)
    except ValueError as error:
        parser.error(f"{option}: {error}")


def _charts(fig: dict[str, Any], lang: str) -> dict[str, bytes]:
    from tools.report import charts  # matplotlib: only once the figures are there
    from tools.report.text import LABELS

    side = 1 if lang == "ar" else 0
    names = {c.value: CHANNEL_NAMES[c][side] for c in Channel}
    compare = fig["compare"]
    period_names = (
        str(fig["period"][f"name_{lang}"]),
        None if compare is None else str(compare[f"name_{lang}"]),
    )
    return {
        metric: charts.monthly_chart(fig, column, LABELS[lang][title], names, period_names, lang)
        for metric, column, title in (
            ("payments", "payments", "chart_payments"),
            ("amount", "amount_bhd", "chart_amount"),
        )
    }


def write_report(root: str, period: Period, compare: Period | None, out: str) -> dict[str, Any]:
    """Read the root's committed aggregates, write the three files into `out`; the figures."""
    from tools.report import read
    from tools.report.html import render_page

    read.refuse_if_no_aggregates(root)
    status, services = read.aggregates(root, [period, *([compare] if compare else [])])
    fig = build_figures(period, compare, status, services, read.rejected_counts(root),
                        load_catalogue())  # fmt: skip
    os.makedirs(out, exist_ok=True)
    for lang in ("en", "ar"):
        page = render_page(fig, lang, _charts(fig, lang))
        with open(os.path.join(out, f"report.{lang}.html"), "w", encoding="utf-8") as handle:
            handle.write(page)
    with open(os.path.join(out, "figures.json"), "w", encoding="utf-8") as handle:
        json.dump(fig, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m tools.report",
        description="Write the per-channel payments report of a period, in English and Arabic, "
        "with growth against a comparison period, from the committed aggregates of an output "
        "root: DIR/report.en.html, DIR/report.ar.html (self-contained pages) and "
        "DIR/figures.json (every number they show).",
        epilog=cli.exit_statuses("when the three files are written"),
    )
    parser.add_argument("--output", required=True, help="the batch job's --output root")
    parser.add_argument("--period", required=True, help="YYYY-H1, YYYY-H2, YYYY-Qn or YYYY")
    parser.add_argument("--compare", help="the period to compare with, e.g. 2016-H1")
    parser.add_argument("--out", required=True, help="folder to write the report into")
    args = parser.parse(argv)
    period = _period(parser, args.period, "--period")
    compare = _period(parser, args.compare, "--compare") if args.compare else None
    cli.check_output(args.out, "--out", network=False)
    root = args.output.rstrip("/") or args.output
    began = time.perf_counter()
    fig = write_report(root, period, compare, args.out)
    took = time.perf_counter() - began
    total = fig["channels"]["all"]["current"]
    for which, named in (("current", period), ("compare", compare)):
        side = fig["channels"]["all"][which]
        if named is not None and side is not None and not side["payments"]:
            # Written all the same (an empty period is a fact), but most likely a wrong root or
            # period: say so where a person sees it.
            print(f"warning: no committed payment in {named.label} under {root}", file=sys.stderr)
    print(f"{period.label}: {total['payments']:,} successful payments, {total['amount']} BHD "
          f"over all channels ({took:.1f} s)")  # fmt: skip
    for name in FILES:
        print(f"  {os.path.join(args.out, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
