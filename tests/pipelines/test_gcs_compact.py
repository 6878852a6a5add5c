"""Compaction on Cloud Storage, against a real GCS emulator server: a lake written by three
nightly batch runs, uploaded as it is, compacted gs:// to gs:// (moves are copies then
deletes), read back with pyarrow's own GCS client; killed half-way through its moves and
run again."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipelines import compact
from schemas import layout
from tests.emulators import (
    PROJECT_ROOT,
    GcsEmulator,
    gcs_emulator,
    object_names,
    pipeline_command,
    upload_tree,
    use_gcs_emulator,
)
from tests.pipelines.helpers import PARTITIONING, make_landing, payments_on_gcs, run_batch
from tests.samples import TEST_KEY
from transforms.storage.committed import committed_files

BUCKET = "compact-tests"
NIGHTS = {
    "start": date(2017, 6, 24),
    "days": 3,
    "scale": 0.1,
    "invalid_rate": 0.0,
    "duplicate_rate": 0.0,
    "conflict_rate": 0.0,
    "late_rate": 0.2,
}
KILLED_HALF_WAY_THROUGH_THE_MOVES = """
import os, signal
import transforms.batch.compact as compact
_replace = compact.replace
def _half_then_die(staged, final):
    _replace(staged[: len(staged) // 2], final[: len(final) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
compact.replace = _half_then_die
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    with gcs_emulator(BUCKET) as running:
        yield running


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local output root written by three nightly batch runs that did not compact."""
    root = tmp_path_factory.mktemp("gcs-lake")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
        make_landing(root, **NIGHTS)
        for night in sorted(p.name for p in (root / "landing").iterdir() if p.is_dir()):
            run_batch(str(root / "landing" / night / "*.jsonl"), root / "out", "--no_compact")
    return root / "out"


@pytest.fixture
def out(emulator: GcsEmulator, lake: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The lake uploaded to a gs:// folder of this test's own (manifests name the local root:
    committed readers take their paths relative to it, so the copy reads the same)."""
    use_gcs_emulator(emulator, monkeypatch)
    root = emulator.url(uuid.uuid4().hex[:12], "out")
    upload_tree(emulator.client(), lake, root)
    return root


def _files_per_partition(emulator: GcsEmulator, out: str) -> Counter[str]:
    names = object_names(emulator.client(), layout.join(out, layout.PAYMENTS))
    return Counter(name.rsplit("/", 1)[0] for name in names if name.endswith(".parquet"))


def _rows(emulator: GcsEmulator, out: str) -> pa.Table:
    table = payments_on_gcs(emulator.arrow_filesystem(), out)
    return table.select(sorted(table.column_names)).sort_by("event_id")


def _assert_compacted(emulator: GcsEmulator, out: str, rows: pa.Table, run_id: str) -> None:
    assert set(_files_per_partition(emulator, out).values()) == {1}
    assert _rows(emulator, out).equals(rows)
    glob = sorted(
        layout.join(out, layout.PAYMENTS, name)
        for name in object_names(emulator.client(), layout.join(out, layout.PAYMENTS))
    )
    assert committed_files(out) == glob
    # The run's own staging is gone. (A killed run's is deleted by the writer that takes its
    # lease over; gcp-storage-emulator ignores preconditions, so there the lease is simply
    # created again and that staging stays: fake-gcs-server, as tests/transforms/test_lease.py
    # uses, and Cloud Storage do not.)
    assert not object_names(emulator.client(), layout.staging_dir(out, run_id))


def test_compaction_on_gcs_leaves_one_object_per_partition_with_the_same_rows(
    emulator: GcsEmulator, out: str
) -> None:
    before = _files_per_partition(emulator, out)
    rows = _rows(emulator, out)
    assert max(before.values()) >= 2

    manifest = compact.run(["--output", out])

    _assert_compacted(emulator, out, rows, manifest["run_id"])
    assert manifest["counts"]["files_before"] == sum(v for v in before.values() if v > 1)
    assert compact.run(["--output", out])["compacted"] == 0


@pytest.mark.slow
def test_a_compaction_killed_during_its_moves_on_gcs_is_healed_by_the_next(
    emulator: GcsEmulator, out: str
) -> None:
    rows = _rows(emulator, out)
    command = pipeline_command(
        "pipelines.compact", "--output", out, prelude=KILLED_HALF_WAY_THROUGH_THE_MOVES
    )
    killed = subprocess.run(
        command, cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    committed = committed_files(out)
    assert len(committed) == len({*committed})
    assert _rows_of(emulator, committed).equals(rows)  # committed readers: every row once

    healed = compact.run(["--output", out])

    assert healed["leftovers_deleted"] > 0
    _assert_compacted(emulator, out, rows, healed["run_id"])


def _rows_of(emulator: GcsEmulator, paths: list[str]) -> pa.Table:
    """The rows of the given gs:// payments files, read with pyarrow's GCS client."""
    table = ds.dataset(
        [p.removeprefix("gs://") for p in paths],
        filesystem=emulator.arrow_filesystem(),
        format="parquet",
        partitioning=PARTITIONING,
        partition_base_dir=paths[0].removeprefix("gs://").split("/payments/")[0] + "/payments",
    ).to_table()
    return table.select(sorted(table.column_names)).sort_by("event_id")
