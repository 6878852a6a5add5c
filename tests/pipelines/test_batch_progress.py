"""A batch run says how far it is at a steady cadence: events validated, then partitions staged
(every `_PROGRESS_PARTITIONS` partitions a worker, or once `_PROGRESS_SECONDS` have passed)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tests.pipelines.helpers import make_landing, run_batch
from transforms.batch import stage

pytestmark = pytest.mark.usefixtures("key_env")

STAGED = re.compile(r"staged (\d+) partitions \(([\d,]+) payment rows\) in this worker")


def _staged_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    found = (STAGED.fullmatch(r.getMessage()) for r in caplog.records)
    return [(int(m[1]), int(m[2].replace(",", ""))) for m in found if m]


def test_a_batch_run_logs_staging_progress_every_few_partitions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage, "_PROGRESS_PARTITIONS", 2)
    monkeypatch.setattr(stage, "_PROGRESS_SECONDS", 3600.0)
    make_landing(tmp_path, days=2, scale=0.05, seed=3)
    caplog.set_level(logging.INFO, logger=stage.__name__)
    manifest = run_batch(str(tmp_path / "landing" / "*" / "*.jsonl*"), tmp_path / "out")
    partitions = {f.parent for f in (tmp_path / "out" / "payments").rglob("*.parquet")}
    lines = _staged_lines(caplog)
    assert len(partitions) >= 4
    assert [n for n, _ in lines] == list(range(2, len(partitions) + 1, 2))
    assert lines[-1][1] <= manifest["counts"]["accepted"]


def test_a_staging_progress_line_is_logged_once_the_interval_has_passed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 1.0, 11.0, 12.0])
    monkeypatch.setattr(stage.time, "monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO, logger=stage.__name__)
    fn = stage.StagePartitionFn(None)  # type: ignore[arg-type]  # it writes no partition here
    fn.setup()  # at 0 s
    for rows in (5, 7, 9):  # staged at 1 s, 11 s and 12 s
        fn._progress(rows)
    assert _staged_lines(caplog) == [(2, 12)]
