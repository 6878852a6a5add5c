"""Helpers for end-to-end tests: generate landing data, run the batch job, read output back
with independent readers (pyarrow datasets and DuckDB), never with the pipeline's own code."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from pipelines import batch
from tools.generate import GeneratorConfig, generate

PARTITIONING = ds.partitioning(
    pa.schema([("channel", pa.string()), ("event_date", pa.date32())]), flavor="hive"
)


def make_landing(root: Path, **knobs: Any) -> dict[str, Any]:
    """Generate raw events under root/landing; returns the generator's ground truth."""
    return generate(GeneratorConfig(**knobs), str(root / "landing"))


def run_batch(inputs: str, output: Path, *extra: str, workers: int = 1) -> dict[str, Any]:
    """Run the batch pipeline in-process; returns its manifest. One local worker unless asked:
    starting worker processes costs seconds that small test inputs do not repay."""
    workers_flag = ["--direct_num_workers", str(workers)]
    return batch.run(["--input", inputs, "--output", str(output), *workers_flag, *extra])


def payments(output: Path) -> pa.Table:
    return ds.dataset(output / "payments", format="parquet", partitioning=PARTITIONING).to_table()


def rejected(output: Path) -> pa.Table:
    return ds.dataset(output / "rejected", format="parquet").to_table()


def manifests(output: Path, pipeline: str = "batch") -> list[dict[str, Any]]:
    """The manifests of one pipeline's runs, oldest first (batch runs by default: since each
    nightly run compacts what it touched, compaction runs have manifests there too)."""
    found = [json.loads(p.read_text()) for p in sorted((output / "runs").glob("*/manifest.json"))]
    return [m for m in found if m.get("pipeline") == pipeline]


def data_files(output: Path) -> list[str]:
    """Every file a reader could see (staging excluded), relative to the output root."""
    return sorted(
        str(p.relative_to(output))
        for p in output.rglob("*")
        if p.is_file()
        and not str(p.relative_to(output)).startswith(("_staging", "_lease"))
        and "runs" not in p.parts
    )


def rows_per_partition(table: pa.Table) -> dict[tuple[str, str], int]:
    """Rows per (ISO Bahrain day, channel) of payments read with their Hive partition keys."""
    pairs = zip(table["event_date"].to_pylist(), table["channel"].to_pylist(), strict=True)
    return dict(Counter((day.isoformat(), channel) for day, channel in pairs))


def expected_per_partition(truth: dict[str, Any]) -> dict[tuple[str, str], int]:
    """The generator's ground truth in the shape of `rows_per_partition`."""
    return {
        (day, channel): count
        for day, channels in truth["by_event_date_channel"].items()
        for channel, count in channels.items()
        if count
    }


def balanced(counts: dict[str, int], published: int) -> bool:
    """Every published event read, and each one accounted for in committed stats."""
    outcomes = counts.get("accepted", 0) + counts.get("rejected", 0) + counts.get("duplicates", 0)
    return counts.get("read", 0) == published == outcomes


def payments_on_gcs(filesystem: Any, out: str) -> pa.Table:
    """Every payment a reader of gs://…/payments/**/*.parquet sees, via pyarrow's GCS client
    (`filesystem`: a pyarrow.fs.GcsFileSystem pointed at the emulator)."""
    return ds.dataset(
        f"{out.removeprefix('gs://').rstrip('/')}/payments",
        filesystem=filesystem,
        format="parquet",
        partitioning=PARTITIONING,
    ).to_table()
