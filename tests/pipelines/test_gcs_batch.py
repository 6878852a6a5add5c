"""The nightly batch job on Cloud Storage, against a real GCS emulator server: gs:// landing
files in, gs:// Parquet out, read back with pyarrow's own GCS client and a storage client of
the test's own; the commit protocol holds with copies instead of renames."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from pipelines import batch
from schemas import layout
from tests.emulators import (
    PROJECT_ROOT,
    GcsEmulator,
    batch_command,
    gcs_emulator,
    object_names,
    upload_tree,
    use_gcs_emulator,
)
from tests.pipelines.helpers import (
    expected_per_partition,
    make_landing,
    payments_on_gcs,
    rows_per_partition,
)
from tests.samples import TEST_KEY

BUCKET = "payments-tests"
# Two days at a twentieth of the published volume, with every kind of bad input.
SAMPLE = {
    "start": date(2017, 6, 24),
    "days": 2,
    "scale": 0.05,
    "invalid_rate": 0.02,
    "duplicate_rate": 0.02,
    "conflict_rate": 0.005,
    "late_rate": 0.05,
}
NIGHT = {**SAMPLE, "days": 1, "late_rate": 0.0}
CLEAN_NIGHT = {**NIGHT, "invalid_rate": 0.0, "duplicate_rate": 0.0, "conflict_rate": 0.0}

# Preludes for `batch_command`: SIGKILL the run at a chosen point of its commit step (the
# single-worker runner commits in the main process), as a crash or a preempted VM would.
KILLED_AS_COMMIT_BEGINS = """
import os, signal
import transforms.batch.commit
transforms.batch.commit.replace = lambda staged, final: os.kill(os.getpid(), signal.SIGKILL)
"""
KILLED_HALF_WAY_THROUGH_PUBLISHING = """
import os, signal
import transforms.batch.commit
from transforms.storage.files import replace
def publish_half_then_die(staged, final):
    half = max(1, len(staged) // 2)
    replace(staged[:half], final[:half])
    os.kill(os.getpid(), signal.SIGKILL)
transforms.batch.commit.replace = publish_half_then_die
"""


def run_gcs_batch(inputs: str, output: str) -> dict[str, Any]:
    """Run the batch pipeline in-process on one local worker (as helpers.run_batch does)."""
    return batch.run(["--input", inputs, "--output", output, "--direct_num_workers", "1"])


def killed_batch(inputs: str, output: str, prelude: str) -> subprocess.CompletedProcess[str]:
    command = batch_command(
        "--input", inputs, "--output", output, "--direct_num_workers", "1", prelude=prelude
    )
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, text=True
    )


def payments(emulator: GcsEmulator, out: str) -> pa.Table:
    return payments_on_gcs(emulator.arrow_filesystem(), out)


def rejected(emulator: GcsEmulator, out: str) -> pa.Table:
    return ds.dataset(
        layout.join(out, layout.REJECTED).removeprefix("gs://"),
        filesystem=emulator.arrow_filesystem(),
        format="parquet",
    ).to_table()


def committed_runs(emulator: GcsEmulator, out: str) -> dict[str, dict[str, Any]]:
    """run_id -> manifest of every run a reader may trust: those with `_SUCCESS`."""
    names = object_names(emulator.client(), layout.join(out, layout.RUNS))
    bucket = emulator.client().bucket(emulator.bucket)
    prefix = layout.join(out, layout.RUNS).removeprefix(f"gs://{emulator.bucket}/")
    return {
        run_id: json.loads(bucket.blob(f"{prefix}/{run_id}/{layout.MANIFEST}").download_as_bytes())
        for run_id, _, leaf in (name.partition("/") for name in names)
        if leaf == layout.SUCCESS_MARKER
    }


def published(emulator: GcsEmulator, out: str) -> list[str]:
    """Every object a dataset reader could see (staging and run records excluded)."""
    return [
        name
        for name in object_names(emulator.client(), out)
        if not name.startswith((f"{layout.STAGING}/", f"{layout.RUNS}/", f"{layout.LEASE_DIR}/"))
    ]


def upload_landing(emulator: GcsEmulator, local: Path, root: str) -> str:
    """Upload generated landing files; returns the gs:// glob of this night's input."""
    upload_tree(emulator.client(), local / "landing", layout.join(root, "landing"))
    return layout.join(root, "landing", "*", "*.jsonl")


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    with gcs_emulator(BUCKET) as running:
        yield running


@pytest.fixture
def root(emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh gs:// folder of this test's own, every client pointed at the emulator, and the
    pseudonymisation key set (for in-process runs and subprocesses alike)."""
    use_gcs_emulator(emulator, monkeypatch)
    monkeypatch.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
    return emulator.url(uuid.uuid4().hex[:12])


@dataclass(frozen=True)
class SampleRun:
    out: str
    truth: dict[str, Any]
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def sample_run(
    emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SampleRun]:
    """One run over two days of generated landing files, gs:// to gs://."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_gcs_emulator(emulator, monkeypatch)
        monkeypatch.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
        local = tmp_path_factory.mktemp("gcs-sample")
        truth = make_landing(local, **SAMPLE)
        root = emulator.url("sample")
        inputs = upload_landing(emulator, local, root)
        out = layout.join(root, "out")
        yield SampleRun(out, truth, run_gcs_batch(inputs, out))


def test_every_valid_event_of_gcs_landing_files_is_read_back_once_from_gcs_parquet(
    emulator: GcsEmulator, sample_run: SampleRun
) -> None:
    table = payments(emulator, sample_run.out)
    assert table.num_rows == sample_run.truth["valid_events"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows


def test_rows_on_gcs_land_in_their_channel_and_bahrain_day_partition(
    emulator: GcsEmulator, sample_run: SampleRun
) -> None:
    table = payments(emulator, sample_run.out)
    assert rows_per_partition(table) == expected_per_partition(sample_run.truth)


def test_rejected_events_are_read_back_from_gcs_one_row_per_rejection(
    emulator: GcsEmulator, sample_run: SampleRun
) -> None:
    table = rejected(emulator, sample_run.out)
    assert table.num_rows == sample_run.manifest["counts"]["rejected"] > 0
    reasons = Counter(table["error_code"].to_pylist())
    assert dict(reasons) == sample_run.manifest["rejected_by_reason"]


def test_the_manifest_on_gcs_reconciles_every_line_read(
    emulator: GcsEmulator, sample_run: SampleRun
) -> None:
    manifest = committed_runs(emulator, sample_run.out)[sample_run.manifest["run_id"]]
    counts = manifest["counts"]
    assert manifest["reconciles"]
    assert counts["read"] == sample_run.truth["lines_written"]
    assert counts["read"] == counts["accepted"] + counts["rejected"] + counts["duplicates"]
    assert counts["accepted"] == sample_run.truth["valid_events"]
    assert counts["duplicates"] > 0


def test_a_committed_gcs_run_leaves_nothing_under_staging(
    emulator: GcsEmulator, sample_run: SampleRun
) -> None:
    staging = layout.join(sample_run.out, layout.STAGING)
    assert object_names(emulator.client(), staging) == []


def test_rerunning_the_same_gcs_input_adds_no_rows(
    emulator: GcsEmulator, root: str, tmp_path: Path
) -> None:
    make_landing(tmp_path, **NIGHT)
    inputs = upload_landing(emulator, tmp_path, root)
    out = layout.join(root, "out")
    run_gcs_batch(inputs, out)
    before = payments(emulator, out).sort_by("event_id")
    files = published(emulator, out)
    again = run_gcs_batch(inputs, out)
    assert again["reconciles"]
    assert published(emulator, out) == files
    after = payments(emulator, out).sort_by("event_id")
    assert after.select(["event_id", "amount"]).equals(before.select(["event_id", "amount"]))


def test_an_event_redelivered_on_a_later_night_on_gcs_is_a_duplicate_not_a_new_row(
    emulator: GcsEmulator, root: str, tmp_path: Path
) -> None:
    make_landing(tmp_path, **CLEAN_NIGHT)
    out = layout.join(root, "out")
    portal = tmp_path / "landing" / "2017-06-24" / "portal.jsonl"
    upload_tree(emulator.client(), portal.parent, layout.join(root, "night1"))
    run_gcs_batch(layout.join(root, "night1", "portal.jsonl"), out)
    resent = tmp_path / "resent"
    resent.mkdir()
    (resent / "portal.jsonl").write_bytes(b"".join(portal.read_bytes().splitlines(True)[:10]))
    upload_tree(emulator.client(), resent, layout.join(root, "night2"))
    second = run_gcs_batch(layout.join(root, "night2", "portal.jsonl"), out)
    assert second["duplicates_by_kind"] == {"in_output": 10}
    assert payments(emulator, out).num_rows == len(portal.read_bytes().splitlines())


def _commit_first_night(emulator: GcsEmulator, root: str, tmp_path: Path) -> tuple[str, str]:
    """(output root, the next night's input glob) after one committed night on GCS."""
    out = layout.join(root, "out")
    make_landing(tmp_path / "first", **NIGHT)
    run_gcs_batch(upload_landing(emulator, tmp_path / "first", layout.join(root, "first")), out)
    make_landing(tmp_path / "next", **{**NIGHT, "start": date(2017, 6, 25)})
    return out, upload_landing(emulator, tmp_path / "next", layout.join(root, "next"))


def test_a_gcs_run_killed_as_its_commit_begins_leaves_the_published_output_unchanged(
    emulator: GcsEmulator, root: str, tmp_path: Path
) -> None:
    out, next_night = _commit_first_night(emulator, root, tmp_path)
    runs = committed_runs(emulator, out).keys()
    files = published(emulator, out)
    rows = payments(emulator, out).sort_by("event_id")

    killed = killed_batch(next_night, out, KILLED_AS_COMMIT_BEGINS)

    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert object_names(emulator.client(), layout.join(out, layout.STAGING)), "nothing staged"
    assert committed_runs(emulator, out).keys() == runs
    assert published(emulator, out) == files
    assert payments(emulator, out).sort_by("event_id").equals(rows)


def test_a_rerun_completes_a_night_whose_gcs_run_was_killed_before_committing(
    emulator: GcsEmulator, root: str, tmp_path: Path
) -> None:
    out, next_night = _commit_first_night(emulator, root, tmp_path)
    before = payments(emulator, out).num_rows
    killed = killed_batch(next_night, out, KILLED_AS_COMMIT_BEGINS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]  # it was killed

    manifest = run_gcs_batch(next_night, out)

    table = payments(emulator, out)
    assert manifest["reconciles"]
    assert table.num_rows == before + manifest["counts"]["accepted"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows


def test_a_rerun_after_a_gcs_run_killed_half_way_through_publishing_leaves_no_duplicates(
    emulator: GcsEmulator, root: str, tmp_path: Path
) -> None:
    out, next_night = _commit_first_night(emulator, root, tmp_path)
    before = payments(emulator, out).num_rows
    files = published(emulator, out)
    runs = committed_runs(emulator, out).keys()
    killed = killed_batch(next_night, out, KILLED_HALF_WAY_THROUGH_PUBLISHING)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # The window the protocol leaves open (half of 6 files is more than the 2 aggregate files
    # the killed run would overwrite): some of its files are visible, whole, without _SUCCESS.
    assert published(emulator, out) != files
    assert committed_runs(emulator, out).keys() == runs

    manifest = run_gcs_batch(next_night, out)

    table = payments(emulator, out)
    assert manifest["reconciles"]
    assert manifest["duplicates_by_kind"].get("in_output", 0) == 0
    assert table.num_rows == before + manifest["counts"]["accepted"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows


@pytest.mark.slow
def test_the_batch_command_runs_on_gcs_with_only_the_emulator_environment(
    emulator: GcsEmulator, root: str, tmp_path: Path
) -> None:
    """What a shell user runs: no test patch, no credentials at all. Beam spends ~25 s
    failing to find credentials before it connects anonymously."""
    make_landing(tmp_path, **NIGHT)
    inputs = upload_landing(emulator, tmp_path, root)
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env["CLOUDSDK_CONFIG"] = str(tmp_path / "gcloud")  # no gcloud credentials either
    command = [sys.executable, "-m", "pipelines.batch", "--input", inputs]
    command += ["--output", layout.join(root, "out"), "--direct_num_workers", "1"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read = accepted + rejected + duplicates: yes" in result.stdout
    assert len(committed_runs(emulator, layout.join(root, "out"))) == 1
