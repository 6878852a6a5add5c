"""What the report reads of an output root: committed aggregates and committed rejected rows.

Only what committed runs published (transforms/storage/committed.py): per month the newest
aggregate version whose run committed, so the report's figures always equal the committed
payments, whatever a killed run left behind. Rejected events are counted from the committed
rejected files; they carry no trusted Bahrain day (many could not be parsed at all), so they
are the root's, not a period's.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pipelines import cli
from schemas import layout
from tools.report.figures import RejectedCount, ServiceRow, StatusRow
from tools.report.periods import Period


def refuse_if_no_aggregates(root: str) -> None:
    """Refuse (exit 2, one line) a root with no aggregates: a wrong path, or no run yet."""
    hint = (
        "run the batch job into it first: python -m pipelines.batch --input "
        f"'LANDING/*/*.jsonl*' --output {root}"
    )
    if "://" in root:
        return  # checked after listing: a bucket has no cheap existence test
    if not os.path.isdir(root):
        cli.fail(f"--output {root} is not a folder: {hint}")
    if not os.path.isdir(layout.join(root, layout.AGGREGATES)):
        cli.fail(f"--output {root} holds no aggregates: {hint}")


def _dataset(folder: str, files: list[str], partitioned: bool) -> ds.Dataset:
    filesystem, base = pafs.FileSystem.from_uri(folder) if "://" in folder else (None, "")
    if filesystem is not None:  # a list of gs:// paths needs its filesystem named
        files = [base + path[len(folder) :] for path in files]
        folder = base
    partitioning = (
        ds.partitioning(pa.schema([("month", pa.string())]), flavor="hive") if partitioned else None
    )
    return ds.dataset(
        files,
        format="parquet",
        filesystem=filesystem,
        partitioning=partitioning,
        partition_base_dir=folder if partitioned else None,
    )


def _in_periods(periods: list[Period]) -> ds.Expression:
    wanted: ds.Expression | None = None
    for period in periods:
        inside = (ds.field("event_date") >= pa.scalar(period.start, pa.date32())) & (
            ds.field("event_date") <= pa.scalar(period.end, pa.date32())
        )
        wanted = inside if wanted is None else wanted | inside
    assert wanted is not None
    return wanted


def _aggregate_table(root: str, kind: str, periods: list[Period], committed: list[str]) -> pa.Table:
    folder = layout.join(root, layout.AGGREGATES, kind)
    files = [p for p in committed if p.startswith(folder + "/")]
    if not files:
        return pa.table({})
    return _dataset(folder, files, partitioned=True).to_table(filter=_in_periods(periods))


def aggregates(root: str, periods: list[Period]) -> tuple[list[StatusRow], list[ServiceRow]]:
    """The committed by_status and by_service rows of the days of `periods`."""
    from transforms.storage.committed import committed_files  # imports Beam: after the checks

    committed = committed_files(root, layout.AGGREGATES)
    if not committed:
        cli.fail(f"--output {root} holds no committed aggregates: run the batch job into it")
    status = _aggregate_table(root, "by_status", periods, committed)
    service = _aggregate_table(root, "by_service", periods, committed)
    status_rows = [
        StatusRow(r["event_date"], r["channel"], r["status"], r["payments"], Decimal(r["amount"]))
        for r in (status.to_pylist() if status.num_columns else [])
    ]
    service_rows = [
        ServiceRow(
            r["event_date"],
            r["channel"],
            r["service_code"],
            r["service_name_en"],
            r["status"],
            r["payments"],
            Decimal(r["amount"]),
        )
        for r in (service.to_pylist() if service.num_columns else [])
    ]
    return status_rows, service_rows


def rejected_counts(root: str) -> list[RejectedCount]:
    """Committed rejected events per claimed channel and error code, over the whole root."""
    from transforms.storage.committed import committed_files

    files = committed_files(root, layout.REJECTED)
    if not files:
        return []
    folder = layout.join(root, layout.REJECTED)
    table = _dataset(folder, files, partitioned=False).to_table(columns=["channel", "error_code"])
    grouped = table.group_by(["channel", "error_code"], use_threads=False).aggregate(
        [("error_code", "count")]
    )
    return [
        RejectedCount(r["channel"], r["error_code"], r["error_code_count"])
        for r in grouped.to_pylist()
    ]
