"""The compaction pipeline as Dataflow builds it, offline (DataflowRunner --dry_run): a batch
job whose steps stage, verify and commit, on the project's worker image."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud.dataflow import JobType

from pipelines import compact
from schemas.run import COMPACT, Run
from tests.deploy.dataflow_jobs import (
    DATAFLOW_FLAGS,
    LAKE,
    WORKER_IMAGE,
    build_batch_job,
    captured_dataflow_jobs,
    labelled_step_names,
    worker_pool,
)
from transforms.core.compaction import PartitionFiles


@pytest.fixture(scope="module")
def compact_job() -> Any:
    """The job compact.build wires over two partitions (listed by hand: the lake is not there)."""
    argv = [*DATAFLOW_FLAGS, f"--sdk_container_image={WORKER_IMAGE}", f"--output={LAKE}"]
    options = PipelineOptions(argv)
    day = date(2017, 6, 30)
    chosen = [
        PartitionFiles(channel, day, tuple(f"{LAKE}/payments/x/part-{i}.parquet" for i in "ab"), 9)
        for channel in ("kiosk", "portal")
    ]
    plan = compact.CompactPlan(Run.start(COMPACT, LAKE), options, None)
    pipeline = beam.Pipeline(options=options)
    with captured_dataflow_jobs() as jobs:
        compact.build(pipeline, plan, chosen, "20170630T230000Z-abcdef")
        pipeline.run()
    return jobs[0]


def test_compaction_is_a_batch_job_of_named_steps(compact_job: Any) -> None:
    assert compact_job.proto.type_ == JobType.JOB_TYPE_BATCH
    steps = labelled_step_names(compact_job)
    for step in (
        "RewritePartitions/StagePartition",
        "RewritePartitions/VerifyPartition",
        "Commit/PublishCompaction",
    ):
        assert step in steps


def test_compaction_runs_on_the_projects_worker_image(compact_job: Any) -> None:
    pool = worker_pool(compact_job)
    assert [image.container_image for image in pool.sdk_harness_container_images] == [WORKER_IMAGE]


def test_compact_run_returns_when_dataflow_only_builds_the_job(tmp_path: Path) -> None:
    """Chosen under the lease, then built: no manifest to read, the lease released, nothing
    moved or deleted."""
    folder = tmp_path / "payments" / "channel=kiosk" / "event_date=2017-06-30"
    folder.mkdir(parents=True)
    files = [str(folder / f"part-0123456789abcde{i}-00000.parquet") for i in "01"]
    for path in files:
        pq.write_table(pa.table({"event_id": ["kiosk:K:1"]}), path)
    run_dir = tmp_path / "runs" / "20170630T230000Z-abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(
        json.dumps({"pipeline": "batch", "output_root": str(tmp_path), "files_written": files})
    )
    (run_dir / "_SUCCESS").write_text("")
    with captured_dataflow_jobs() as jobs:
        result = compact.run([*DATAFLOW_FLAGS[:-1], f"--output={tmp_path}"])
    assert result["submitted"] is True
    assert len(jobs) == 1
    assert all(Path(f).exists() for f in files)
    assert not list((tmp_path / "_lease").iterdir())


def test_the_nightly_batch_job_compacts_after_its_commit() -> None:
    """Inside the job, so a template launch compacts too: from the commit's manifest on."""
    job = build_batch_job([f"--sdk_container_image={WORKER_IMAGE}"], compaction=True)
    steps = labelled_step_names(job)
    for step in (
        "CompactTouched/ChoosePartitions",
        "CompactTouched/RewritePartitions",
        "CompactTouched/CommitCompaction",
    ):
        assert step in steps
    assert "Commit/PublishRun" in steps
