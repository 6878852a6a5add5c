"""Compare a run's H1 2017 output with the published per-channel figures (domain.md).

    python -m tools.calibration OUT [--tolerance 0.02]

Reads the daily aggregates the batch job wrote (an independent path from the generator) and
prints successful payments and BHD per channel against the published numbers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pipelines import cli
from schemas import layout
from schemas.enums import AggregateKind, PaymentStatus
from schemas.money import fils_to_decimal
from tools.generate import H1_2017_DAYS, H1_2017_START, PUBLISHED_H1_2017

H1_2017_END = date.fromordinal(H1_2017_START.toordinal() + H1_2017_DAYS - 1)
RUN_FIRST = (
    "generate and ingest H1 2017 first: python -m tools.generate --out h1/landing "
    "--profile h1-2017, then python -m pipelines.batch --input 'h1/landing/*/*.jsonl' "
    "--output {root}"
)


def refuse_if_no_aggregates(root: str) -> None:
    """Refuse (exit 2, one line) an output root without daily aggregates to compare: a wrong
    path, or the batch job has not run into it yet."""
    by_status = layout.join(root, layout.AGGREGATES, AggregateKind.BY_STATUS.value)
    hint = RUN_FIRST.format(root=root)
    if "://" in root:
        from transforms.storage.files import list_tree  # imports Beam: only for a gs:// root

        found = bool(list_tree(by_status, "*.parquet"))
    else:
        if not os.path.exists(root):
            cli.fail(f"{root} does not exist: {hint}")
        if not os.path.isdir(root):
            cli.fail(f"{root} is a file, not the batch job's output folder")
        found = any(p.endswith(".parquet") for _, _, files in os.walk(by_status) for p in files)
    if not found:
        cli.fail(f"{root} holds no daily aggregates ({by_status}/ is missing or empty): {hint}")


def measured(output_root: str) -> dict[str, tuple[int, Decimal]]:
    """(successful payments, BHD) per channel over H1 2017, from the by_status aggregates."""
    from transforms.storage.committed import committed_files  # imports Beam: after the checks

    by_status = layout.join(output_root, layout.AGGREGATES, AggregateKind.BY_STATUS.value)
    # The month files committed runs wrote, one version a month (transforms.storage.committed).
    files = [
        path
        for path in committed_files(output_root, layout.AGGREGATES)
        if path.startswith(by_status + "/")
    ]
    filesystem, base = pafs.FileSystem.from_uri(by_status) if "://" in by_status else (None, "")
    if filesystem is not None:  # a list of gs:// paths needs its filesystem named
        files = [base + path[len(by_status) :] for path in files]
        by_status = base
    dataset = ds.dataset(
        files,
        format="parquet",
        filesystem=filesystem,
        partitioning=ds.partitioning(pa.schema([("month", pa.string())]), flavor="hive"),
        partition_base_dir=by_status,
    )
    in_h1 = (
        (ds.field("status") == PaymentStatus.SUCCESS.value)
        & (ds.field("event_date") >= pa.scalar(H1_2017_START, pa.date32()))
        & (ds.field("event_date") <= pa.scalar(H1_2017_END, pa.date32()))
    )
    table = dataset.to_table(filter=in_h1)
    totals = table.group_by("channel").aggregate([("payments", "sum"), ("amount", "sum")])
    return {
        row["channel"]: (row["payments_sum"], Decimal(row["amount_sum"]))
        for row in totals.to_pylist()
    }


def compare(output_root: str) -> list[tuple[str, int, int, Decimal, Decimal, float]]:
    """(channel, published count, measured count, published BHD, measured BHD, worst deviation)."""
    got = measured(output_root)
    rows = []
    for channel, (count, fils) in PUBLISHED_H1_2017.items():
        n, amount = got.get(channel.value, (0, Decimal(0)))
        published_bhd = fils_to_decimal(fils)
        deviation = max(abs(n - count) / count, float(abs(amount - published_bhd) / published_bhd))
        rows.append((channel.value, count, n, published_bhd, amount, deviation))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Parser(
        prog="python -m tools.calibration",
        description=__doc__.split("\n\n")[0],
        epilog=cli.exit_statuses(
            "when every channel is within the tolerance", error="when one is not, or on error"
        )
        + " A missing or empty output folder is refused with status 2.",
    )
    parser.add_argument("output", help="the batch job's --output root")
    parser.add_argument("--tolerance", type=float, default=0.02, help="default %(default)s")
    args = parser.parse(argv)
    if not 0 <= args.tolerance < 1:
        parser.error(f"--tolerance is a fraction (0.02 is 2%), not {args.tolerance:g}")
    root = args.output.rstrip("/") or args.output
    refuse_if_no_aggregates(root)
    rows = compare(root)
    print(
        f"{'channel':<11}{'published':>11}{'measured':>11}{'published BHD':>17}"
        f"{'measured BHD':>17}{'off by':>9}"
    )
    for channel, count, n, published, amount, deviation in rows:
        print(
            f"{channel:<11}{count:>11,}{n:>11,}{published:>17,.3f}{amount:>17,.3f}{deviation:>8.2%}"
        )
    worst = max(row[5] for row in rows)
    verdict = "within" if worst <= args.tolerance else "NOT within"
    print(f"worst deviation {worst:.2%}: {verdict} {args.tolerance:.0%} of the published figures")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
