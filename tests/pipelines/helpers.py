"""Helpers for end-to-end tests: generate landing data, run the batch job, read output back
with independent readers (pyarrow datasets and DuckDB), never with the pipeline's own code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from pipelines import batch
from pipelines.generate import GeneratorConfig, generate

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


def manifests(output: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((output / "runs").glob("*/manifest.json"))]


def data_files(output: Path) -> list[str]:
    """Every file a reader could see (staging excluded), relative to the output root."""
    return sorted(
        str(p.relative_to(output))
        for p in output.rglob("*")
        if p.is_file()
        and not str(p.relative_to(output)).startswith("_staging")
        and "runs" not in p.parts
    )
