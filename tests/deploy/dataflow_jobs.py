"""Dataflow jobs built offline: the real pipelines wired by DataflowRunner with --dry_run, which
builds the whole job (graph, environments, options) and submits nothing."""

from __future__ import annotations

import base64
import bz2
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
from apache_beam.runners.dataflow.internal import apiclient

from pipelines import batch, streaming
from pipelines.cli import InputFile
from pipelines.options import KEY_ENV, IngestOptions, pseudonym_key_source
from schemas.run import BATCH, COMPACT, Run
from tests.samples import TEST_KEY
from transforms.core.gates import GateThresholds
from transforms.storage.keys import PseudonymKey

KEY_SECRET = "projects/payments-test/secrets/pseudonym-key/versions/1"
WORKER_IMAGE = "me-central2-docker.pkg.dev/payments-test/payments/payments-worker:test"
# Beam validates these offline: a project id must look like one ("p" is refused) and a bucket
# name too (a 1-letter bucket makes Beam look up a default bucket over the network).
DATAFLOW_FLAGS = (
    "--runner=DataflowRunner",
    "--dry_run=True",
    "--project=payments-test",
    "--region=me-central2",
    "--temp_location=gs://payments-test-dataflow/tmp",
    "--sdk_location=container",
    f"--pseudonym_key_secret={KEY_SECRET}",
)
LANDING_DAY = "gs://payments-test-landing/2017-06-30"
LAKE = "gs://payments-test-lake/payments-v1"
SUBSCRIPTION = "projects/payments-test/subscriptions/payments-ingest"


@contextmanager
def captured_dataflow_jobs() -> Iterator[list[Any]]:
    """Collects the apiclient.Job of every pipeline DataflowRunner runs meanwhile."""
    jobs: list[Any] = []
    original = DataflowRunner.run_pipeline

    def run_pipeline(
        self: DataflowRunner, pipeline: Any, options: Any, pipeline_proto: Any = None
    ) -> Any:
        result = original(self, pipeline, options, pipeline_proto)
        jobs.append(result.job)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DataflowRunner, "run_pipeline", run_pipeline)
        patch.setenv(KEY_ENV, TEST_KEY.decode())
        yield jobs


def build_batch_job(
    extra: Sequence[str] = (), key: PseudonymKey | bytes | None = None, compaction: bool = False
) -> Any:
    """The nightly batch job, built by batch.build from the plan batch.plan would make
    (unless `key` is given), but for its inputs, which are not there to list: batch.run itself
    reads the run manifest once the job ends, which a dry run never writes. Without its
    compaction steps unless `compaction` (the checked-in step names are the run's own)."""
    argv = [*DATAFLOW_FLAGS, *extra, f"--input={LANDING_DAY}/*.jsonl*", f"--output={LAKE}"]
    options = PipelineOptions(argv)
    files = [
        InputFile(f"{LANDING_DAY}/{c}.jsonl", 50_000_000) for c in ("kiosk", "mobile_app", "portal")
    ]
    now = datetime(2017, 6, 30, 23, 0, tzinfo=timezone.utc)
    run = Run.start(
        BATCH, LAKE, batch.input_key(files, ["crc32c:AAAAAA=="] * len(files)), files, now
    )
    common = options.view_as(IngestOptions)
    pipeline = beam.Pipeline(options=options)
    with captured_dataflow_jobs() as jobs:
        source = pseudonym_key_source(common, "DataflowRunner") if key is None else key
        compacting = Run.start(COMPACT, LAKE, now=now) if compaction else None
        gates = GateThresholds.from_options(options)
        plan = batch.BatchPlan(run, options, source, gates, compaction=compacting)
        batch.build(pipeline, plan)
        pipeline.run()
    return jobs[0]


def build_streaming_job(extra: Sequence[str] = ()) -> Any:
    """The streaming job, through the pipeline's own streaming.run(argv)."""
    argv = [*DATAFLOW_FLAGS, *extra, f"--input_subscription={SUBSCRIPTION}", f"--output={LAKE}"]
    with captured_dataflow_jobs() as jobs:
        streaming.run(argv)
    return jobs[0]


def step_names(job: Any) -> list[str]:
    """Full names of every step of the job graph (Dataflow matches steps by these on --update)."""
    components = job.proto_pipeline.components
    roots = set(job.proto_pipeline.root_transform_ids)
    return [t.unique_name for i, t in components.transforms.items() if i not in roots]


def labelled_step_names(job: Any) -> list[str]:
    """Top-level steps and their direct parts, as labelled in this project's code: Beam's own
    generated labels (ParDo(...), <lambda at ...>) are left out, they change with Beam."""
    return sorted(
        name
        for name in step_names(job)
        if name.count("/") <= 1 and not any(c in name for c in "(<")
    )


def user_code(job: Any) -> list[bytes]:
    """The pickled DoFns of the job graph, decoded (Beam stores them as base64 of bz2 or
    zlib): what a worker, or anyone who can read the job, gets."""
    pickles = []
    for transform in job.proto_pipeline.components.transforms.values():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            pardo = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
            packed = base64.b64decode(pardo.do_fn.payload)
            try:
                pickles.append(bz2.decompress(packed))
            except OSError:
                pickles.append(zlib.decompress(packed))
    return pickles


def worker_pool(job: Any) -> Any:
    """The worker pool the Dataflow service would be asked for, built by Beam's own
    apiclient.Environment as in create_job_description (minus staging, which needs GCS)."""
    proto = beam_runner_api_pb2.Pipeline()
    proto.CopyFrom(job.proto_pipeline)
    apiclient.DataflowApplicationClient._apply_sdk_environment_overrides(proto, {}, job.options)
    environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=getattr(apiclient, "_FNAPI_ENVIRONMENT_MAJOR_VERSION", "8"),
        proto_pipeline_staged_url="gs://payments-test-dataflow/staging/pipeline.pb",
        proto_pipeline=proto,
    )
    return environment.proto.worker_pools[0]
