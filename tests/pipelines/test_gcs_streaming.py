"""The streaming pipeline writing to Cloud Storage: events published to a real Pub/Sub emulator
(gcloud's), the pipeline run as a shell user would start it with `--output gs://…` against a
real GCS emulator, and everything it committed read back with clients of the test's own
(google-cloud-storage for the run records, pyarrow's C++ GCS client for the Parquet).

The pipeline runs once per module, in two runs like an operator's restart: a first run over a
few hundred generated events (with invalid lines, redeliveries and same-id conflicts), then,
after some events are resent, a second run that must find the first run's files on gs:// to
tell them apart. Each test then asserts one property of what is left in the bucket.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from schemas import layout
from tests.emulators import (
    PROJECT_ROOT,
    GcsEmulator,
    gcs_emulator,
    object_names,
    pubsub_emulator,
    streaming_command,
)
from tests.pipelines.helpers import (
    balanced,
    expected_per_partition,
    make_landing,
    payments_on_gcs,
    rows_per_partition,
)
from tests.samples import TEST_KEY
from tools.replay import publishable_lines
from transforms.core import stats as st

BUCKET = "payments-streaming-tests"
PROJECT = "demo-project"
TOPIC = "payments"
# One Bahrain day at a tenth of the published volume: a few hundred events, with every kind
# of bad input the generator makes. Events from 2017 are far behind the local runner's
# watermark, which only matters to the live aggregates: payments are written however late.
SAMPLE = {
    "start": date(2017, 6, 30),
    "days": 1,
    "scale": 0.1,
    "invalid_rate": 0.03,
    "duplicate_rate": 0.03,
    "conflict_rate": 0.01,
    "late_rate": 0.0,
}
# Messages the source publishes a second time within the first run, and again after it.
REDELIVERED_IN_RUN = 20
RESENT_AFTER_RESTART = 30
WRITE_EVERY_SECONDS = 2
BALANCE_TIMEOUT_SECONDS = 180.0
# After the stats balance, how long the rejected pane (written on its own cadence) may lag.
REJECTED_SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class Published:
    """What went to the topic: how many messages, and the ids Pub/Sub gave them."""

    count: int
    message_ids: frozenset[str]


@dataclass(frozen=True)
class StreamingOnGcs:
    """What the module's two runs left in the bucket, and what they were given."""

    out: str
    truth: dict[str, Any]
    published: Published
    first_run: str
    second_run: str
    counts: dict[str, dict[str, int]]  # run_id -> committed stats summed by kind


def publish(host: str, lines: Sequence[bytes], *, create: bool) -> list[str]:
    """Publish lines to the test topic (creating it and the pipeline's subscription first if
    asked); returns the message ids the emulator assigned."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(PROJECT, TOPIC)
        if create:
            subscriber = pubsub_v1.SubscriberClient()
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=subscription_path(), topic=topic)
        futures = [publisher.publish(topic, line) for line in lines]
        return [str(future.result()) for future in futures]


def subscription_path() -> str:
    return f"projects/{PROJECT}/subscriptions/{TOPIC}-ingest"


def _relative(emulator: GcsEmulator, uri: str) -> str:
    return uri.removeprefix(f"gs://{emulator.bucket}/")


def committed_stats(emulator: GcsEmulator, out: str) -> dict[str, dict[str, int]]:
    """run_id -> the run's committed stats files under runs/<run_id>/stats-*.json, summed by
    kind (read, accepted, rejected, duplicates, …), read with the test's own client."""
    client = emulator.client()
    prefix = _relative(emulator, layout.join(out, layout.RUNS)) + "/"
    totals: dict[str, dict[str, int]] = {}
    for blob in client.list_blobs(emulator.bucket, prefix=prefix):
        run_id, _, leaf = blob.name[len(prefix) :].partition("/")
        if not fnmatch.fnmatchcase(leaf, "stats-*.json"):
            continue
        stats = st.totals_by_kind(json.loads(blob.download_as_bytes()))
        totals[run_id] = st.merge([totals.get(run_id, {}), stats])
    return totals


def summed(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """Stats of several runs added up."""
    total: Counter[str] = Counter()
    for run in counts.values():
        total.update(run)
    return dict(total)


def payments(emulator: GcsEmulator, out: str) -> pa.Table:
    return payments_on_gcs(emulator.arrow_filesystem(), out)


def rejected_rows(emulator: GcsEmulator, out: str) -> int:
    """Rows under gs://…/rejected/, via pyarrow's GCS client (0 before the first file)."""
    filesystem = emulator.arrow_filesystem()
    folder = layout.join(out, layout.REJECTED).removeprefix("gs://")
    if filesystem.get_file_info(folder).type == pafs.FileType.NotFound:
        return 0
    return int(ds.dataset(folder, filesystem=filesystem, format="parquet").count_rows())


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


def run_until_balanced(
    emulator: GcsEmulator, pubsub_host: str, out: str, published: int, log: IO[bytes]
) -> None:
    """Run `python -m pipelines.streaming --output gs://…` until everything published so far
    is accounted for in the committed stats of all runs and the rejected rows they count are
    on gs:// too, then stop it as an operator would (SIGTERM).

    The rejected rows are waited for because they are written on their own processing-time
    cadence, not before the stats that count them: a stop right after the stats balance may
    otherwise lose a pane the local runner held (Dataflow's drain would flush it)."""
    command = streaming_command(
        "--input_subscription",
        subscription_path(),
        "--output",
        out,
        "--write_every_seconds",
        str(WRITE_EVERY_SECONDS),
    )
    env = {
        **os.environ,
        **emulator.env(),
        "PUBSUB_EMULATOR_HOST": pubsub_host,
        "PAYMENTS_PSEUDONYM_KEY": TEST_KEY.decode(),
    }
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + BALANCE_TIMEOUT_SECONDS
        while not balanced(summed(committed_stats(emulator, out)), published):
            assert process.poll() is None, f"the pipeline exited on its own:\n{_tail(log)}"
            assert time.monotonic() < deadline, (
                f"stats did not balance within {BALANCE_TIMEOUT_SECONDS:.0f} s: "
                f"{summed(committed_stats(emulator, out))}, published {published}\n{_tail(log)}"
            )
            time.sleep(1)
        settle = time.monotonic() + REJECTED_SETTLE_SECONDS
        while time.monotonic() < settle and rejected_rows(emulator, out) < summed(
            committed_stats(emulator, out)
        ).get("rejected", 0):
            time.sleep(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def pubsub() -> Iterator[str]:
    with pubsub_emulator() as host:
        yield host


@pytest.fixture(scope="module")
def gcs() -> Iterator[GcsEmulator]:
    with gcs_emulator(BUCKET) as running:
        yield running


@pytest.fixture(scope="module")
def streamed(
    pubsub: str, gcs: GcsEmulator, tmp_path_factory: pytest.TempPathFactory
) -> StreamingOnGcs:
    """Publish a generated day, stream it to gs:// until it is all accounted for, restart
    after some events are resent, and let that run account for them too."""
    local = tmp_path_factory.mktemp("gcs-streaming")
    truth = make_landing(local, **SAMPLE)
    lines = publishable_lines(local / "landing")
    lines += lines[:REDELIVERED_IN_RUN]
    ids = publish(pubsub, lines, create=True)
    out = gcs.url("streaming", "out")
    with tempfile.TemporaryFile() as log:
        run_until_balanced(gcs, pubsub, out, len(ids), log)
        (first_run,) = committed_stats(gcs, out)
        ids += publish(pubsub, lines[:RESENT_AFTER_RESTART], create=False)
        run_until_balanced(gcs, pubsub, out, len(ids), log)
    counts = committed_stats(gcs, out)
    (second_run,) = set(counts) - {first_run}
    published = Published(len(ids), frozenset(ids))
    return StreamingOnGcs(out, truth, published, first_run, second_run, counts)


@pytest.mark.slow
def test_the_committed_stats_on_gcs_account_for_every_published_message(
    streamed: StreamingOnGcs,
) -> None:
    counts = summed(streamed.counts)
    assert counts["read"] == streamed.published.count
    assert counts["read"] == counts["accepted"] + counts["rejected"] + counts["duplicates"]
    assert counts["accepted"] == streamed.truth["valid_events"]
    assert counts["rejected"] > 0
    assert counts["duplicates"] >= streamed.truth["duplicate_lines"] > 0


@pytest.mark.slow
def test_every_valid_event_streamed_to_gcs_is_read_back_once(
    gcs: GcsEmulator, streamed: StreamingOnGcs
) -> None:
    table = payments(gcs, streamed.out)
    assert table.num_rows == summed(streamed.counts)["accepted"] == streamed.truth["valid_events"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows


@pytest.mark.slow
def test_streamed_rows_on_gcs_land_in_their_channel_and_bahrain_day_partition(
    gcs: GcsEmulator, streamed: StreamingOnGcs
) -> None:
    table = payments(gcs, streamed.out)
    assert rows_per_partition(table) == expected_per_partition(streamed.truth)


@pytest.mark.slow
def test_every_streamed_row_on_gcs_names_the_pubsub_message_it_came_from(
    gcs: GcsEmulator, streamed: StreamingOnGcs
) -> None:
    ids = payments(gcs, streamed.out)["source_message_id"]
    assert ids.null_count == 0
    assert set(ids.to_pylist()) <= streamed.published.message_ids
    assert pc.count_distinct(ids).as_py() == len(ids), "two rows from one message"


@pytest.mark.slow
def test_rejected_rows_on_gcs_match_the_rejected_count(
    gcs: GcsEmulator, streamed: StreamingOnGcs
) -> None:
    assert rejected_rows(gcs, streamed.out) == summed(streamed.counts)["rejected"] > 0


@pytest.mark.slow
def test_a_restarted_run_finds_the_first_runs_files_on_gcs_and_writes_no_second_row(
    streamed: StreamingOnGcs,
) -> None:
    """The restarted run has no memory of ids: only listing and reading the partitions on
    gs:// can tell it that the resent events were written already."""
    second = streamed.counts[streamed.second_run]
    assert second["read"] == RESENT_AFTER_RESTART
    assert second.get("accepted", 0) == 0
    assert second["duplicates"] > 0


@pytest.mark.slow
def test_streaming_to_gcs_leaves_no_staged_object_behind(
    gcs: GcsEmulator, streamed: StreamingOnGcs
) -> None:
    staging = layout.join(streamed.out, layout.STAGING)
    assert object_names(gcs.client(), staging) == []
