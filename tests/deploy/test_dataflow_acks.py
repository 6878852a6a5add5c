"""Deferred acknowledgements are the local runner's alone: the Dataflow streaming job reads
Pub/Sub with Beam's own source (Dataflow acknowledges once its checkpoint is durable), and no
step of it settles messages or commits stats of its own."""

from __future__ import annotations

import pickle
from typing import Any

from pipelines import streaming
from tests.deploy.dataflow_jobs import DATAFLOW_FLAGS, LAKE, SUBSCRIPTION, user_code

PUBSUB_READ_URN = "beam:transform:pubsub_read:v1"


def test_the_streaming_job_reads_pubsub_with_beams_own_source(streaming_job: Any) -> None:
    transforms = streaming_job.proto_pipeline.components.transforms.values()
    [read] = [t for t in transforms if t.unique_name == "ReadPubSub/Read"]
    assert read.spec.urn == PUBSUB_READ_URN


def test_no_step_of_the_streaming_job_defers_acknowledgements(streaming_job: Any) -> None:
    settling = []
    for code in user_code(streaming_job):
        fn, args, *_ = pickle.loads(code)
        if hasattr(fn, "_settle"):
            settling.append(fn._settle)
        if b"write_rejected_pane" in code:
            settling.append(args[-1])
    assert settling == [False] * 3  # de-duplication, payments writer, rejected writer


def test_a_dataflow_plan_defers_no_acknowledgements() -> None:
    argv = [*DATAFLOW_FLAGS, f"--input_subscription={SUBSCRIPTION}", f"--output={LAKE}"]
    assert not streaming.plan(argv).deferred_acks


def test_the_dataflow_stats_line_says_its_rows_are_counted_when_their_files_commit(
    streaming_job: Any,
) -> None:
    """Its reads are counted when pulled and its rows a pane later: its line says so."""
    flags = []
    for code in user_code(streaming_job):
        if b"write_stats_pane" in code:
            _, args, *_ = pickle.loads(code)
            flags.append(args[-1])
    assert flags == [False]  # reads_with_outcomes
