"""Both pipelines as Dataflow builds them, offline (DataflowRunner --dry_run): job type, step
names Dataflow matches on --update, and the worker image."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from google.cloud.dataflow import JobType

from pipelines import batch
from tests.deploy.dataflow_jobs import (
    DATAFLOW_FLAGS,
    KEY_SECRET,
    WORKER_IMAGE,
    build_batch_job,
    captured_dataflow_jobs,
    labelled_step_names,
    step_names,
    user_code,
    worker_pool,
)
from tests.samples import TEST_KEY

STEP_NAMES = Path(__file__).parent / "step_names"


def test_batch_job_is_a_batch_job(batch_job: Any) -> None:
    assert batch_job.proto.type_ == JobType.JOB_TYPE_BATCH


def test_streaming_job_is_a_streaming_job(streaming_job: Any) -> None:
    assert streaming_job.proto.type_ == JobType.JOB_TYPE_STREAMING


def test_step_names_are_unique(pipeline_job: tuple[str, Any]) -> None:
    _, job = pipeline_job
    repeated = [name for name, n in Counter(step_names(job)).items() if n > 1]
    assert repeated == []


def test_step_names_match_the_checked_in_list(pipeline_job: tuple[str, Any]) -> None:
    """A renamed step is a new step to Dataflow: `--update` of a running streaming job then
    needs --transform-name-mappings, or it loses that step's state. Change the list on purpose."""
    name, job = pipeline_job
    expected = (STEP_NAMES / f"{name}.txt").read_text().split()
    assert labelled_step_names(job) == expected, (
        f"step names of the {name} job changed: if intended, update tests/deploy/step_names/"
        f"{name}.txt and see deploy/README.md (update the streaming job)"
    )


def test_worker_pool_runs_the_sdk_container_image(pipeline_job: tuple[str, Any]) -> None:
    _, job = pipeline_job
    pool = worker_pool(job)
    assert pool.worker_harness_container_image == WORKER_IMAGE
    assert [image.container_image for image in pool.sdk_harness_container_images] == [WORKER_IMAGE]


def test_worker_image_defaults_to_beams_own_without_sdk_container_image() -> None:
    """The check above is not vacuous: without the flag the job asks for another image."""
    pool = worker_pool(build_batch_job())
    assert pool.worker_harness_container_image != WORKER_IMAGE
    assert "beam_python3.11_sdk" in pool.worker_harness_container_image


def test_job_graph_names_the_key_secret_but_holds_no_key(pipeline_job: tuple[str, Any]) -> None:
    """The key in the environment (as a local run has it) must not reach the job: workers read
    it from Secret Manager."""
    _, job = pipeline_job
    pickles = user_code(job)
    assert not [p for p in pickles if TEST_KEY in p]
    assert [p for p in pickles if KEY_SECRET.encode() in p]
    assert TEST_KEY not in job.proto_pipeline.SerializeToString()


def test_a_key_given_to_the_job_would_be_found_in_its_graph() -> None:
    """The check above is not vacuous: a key passed directly is visible in the job graph."""
    pickles = user_code(build_batch_job(key=TEST_KEY))
    assert [p for p in pickles if TEST_KEY in p]


def test_batch_run_returns_when_dataflow_only_builds_the_job(tmp_path: Path) -> None:
    landing = tmp_path / "landing" / "2017-06-30"
    landing.mkdir(parents=True)
    (landing / "portal.jsonl").write_text("{}\n")
    argv = [
        *DATAFLOW_FLAGS,
        f"--input={landing}/*.jsonl*",
        f"--output={tmp_path / 'out'}",
    ]
    with captured_dataflow_jobs() as jobs:
        submitted = batch.run(argv)
    assert len(jobs) == 1
    assert submitted["submitted"] is True
