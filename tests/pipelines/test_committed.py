"""Readers that trust only committed files never see a run's partial output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from schemas import layout
from tests.pipelines.helpers import make_landing, run_batch
from tools import committed as committed_cli
from transforms.storage.committed import committed_files, committed_runs


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One committed nightly run over a small generated day."""
    root = tmp_path_factory.mktemp("committed")
    with pytest.MonkeyPatch.context() as patch:
        from tests.samples import TEST_KEY

        patch.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
        make_landing(root, start=date(2017, 6, 30), days=1, scale=0.05, invalid_rate=0.01)
        run_batch(str(root / "landing" / "*" / "*.jsonl"), root / "out")
    return root / "out"


def _all(output: Path, dataset: str) -> list[str]:
    return sorted(str(p) for p in (output / dataset).rglob("*.parquet"))


def test_every_file_of_a_committed_run_is_trusted(output: Path) -> None:
    assert committed_files(str(output)) == _all(output, "payments")
    assert committed_files(str(output), "rejected") == _all(output, "rejected")


def test_a_file_no_committed_manifest_lists_is_left_out(tmp_path: Path, output: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    # What a run killed while publishing leaves: a whole file, named for its input, no manifest.
    partition = next((copy / "payments").glob("channel=portal/event_date=*"))
    orphan = partition / layout.part_name("feedface00000000", 0)
    shutil.copy(next(partition.glob("*.parquet")), orphan)
    assert str(orphan) not in committed_files(str(copy))
    assert len(committed_files(str(copy))) == len(_all(output, "payments"))


def test_streaming_pane_files_are_trusted(tmp_path: Path, output: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    partition = next((copy / "payments").glob("channel=kiosk/event_date=*"))
    pane = partition / layout.pane_part_name("20261123T120000Z-a1b2c3")
    shutil.copy(next(partition.glob("*.parquet")), pane)
    assert str(pane) in committed_files(str(copy))


def test_a_run_without_success_is_not_committed(tmp_path: Path, output: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    [run_id] = committed_runs(str(copy))
    (copy / "runs" / run_id / "_SUCCESS").unlink()
    assert committed_runs(str(copy)) == []
    assert committed_files(str(copy)) == []


def test_an_unknown_dataset_is_refused(output: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        committed_files(str(output), "payment")


def test_the_command_prints_one_committed_file_per_line(
    output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert committed_cli.main(["--output", str(output)]) == 0
    printed = capsys.readouterr()
    assert printed.out.split() == _all(output, "payments")
    assert "from 1 committed runs" in printed.err


def test_the_command_piped_into_head_stops_quietly(tmp_path: Path) -> None:
    """`committed --output OUT | head -1`: no BrokenPipeError traceback, exit status 0."""
    root = tmp_path / "out"
    (root / layout.RUNS / "20261123T120000Z-a1b2c3").mkdir(parents=True)
    partition = root / layout.PAYMENTS / "channel=portal" / "event_date=2017-06-30"
    partition.mkdir(parents=True)
    for _ in range(2000):  # more than a pipe holds (64 KiB), so printing meets the closed pipe
        (partition / layout.pane_part_name("20261123T120000Z-a1b2c3")).touch()
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.committed", "--output", str(root)],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.readline().endswith(b".parquet\n")
    process.stdout.close()  # what `head -1` does once it has its line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, stderr
    assert stderr == ""
