"""A batch run killed (SIGKILL, a real process) at each step of its commit (test_batch_runs
kills one while it stages): readers of committed runs see aggregates equal to the committed
payments at every point, and a re-run of the same input leaves glob readers the same, with one
aggregate file a month."""

from __future__ import annotations

import os
import subprocess
from datetime import date
from pathlib import Path

import duckdb
import pytest

from schemas import layout
from tests.emulators import PROJECT_ROOT, batch_command
from tests.pipelines.helpers import make_landing, run_batch
from transforms.storage.committed import committed_files

NIGHTS = {
    "start": date(2017, 6, 24),
    "days": 2,
    "scale": 0.2,
    "invalid_rate": 0.0,
    "duplicate_rate": 0.0,
    "conflict_rate": 0.0,
    "late_rate": 0.2,  # the second night adds rows to the first night's partitions
}
# Kills the run's own process, as `kill -9` would, when the commit reaches `step`.
KILL_AT = """
import os, signal
import transforms.batch.commit as commit
_step = getattr(commit, "{step}")
def _killed(*args, **kwargs):
    {before}
    os.kill(os.getpid(), signal.SIGKILL)
setattr(commit, "{step}", _killed)
"""
STEPS = {
    # staged and about to be scanned: nothing moved
    "before_the_moves": ("screen_staged", "pass"),
    # the first half of the staged files moved into place, the rest still staged
    "during_the_moves": ("replace", "_step(*(paths[: len(paths) // 2] for paths in args))"),
    # every file moved into place, no manifest yet
    "after_the_moves": ("build_manifest", "pass"),
    # committed (`_SUCCESS` written), the month versions it replaced not yet deleted
    "after_success": ("_delete_superseded", "pass"),
}

_SUMS = {"by_status": "status", "by_service": "service_code"}


def _figures(files: list[str], key: str, rows: str) -> list[tuple[object, ...]]:
    if not files:
        return []
    listed = ", ".join(f"'{f}'" for f in files)
    return duckdb.sql(
        f"""select event_date, channel, {key}, {rows}, sum(amount)
            from read_parquet([{listed}], union_by_name = true) group by all order by all"""
    ).fetchall()


def _assert_committed_readers_agree(out: Path) -> None:
    paid = committed_files(str(out), layout.PAYMENTS)
    aggregates = committed_files(str(out), layout.AGGREGATES)
    for kind, key in _SUMS.items():
        mine = [f for f in aggregates if f"/{kind}/" in f]
        assert _figures(mine, key, "sum(payments)") == _figures(paid, key, "count(*)"), kind


def _assert_glob_readers_agree(out: Path) -> None:
    paid = [str(p) for p in (out / layout.PAYMENTS).rglob("*.parquet")]
    for kind, key in _SUMS.items():
        months = list((out / layout.AGGREGATES / kind).glob("month=*"))
        assert all(len(list(m.glob("*.parquet"))) == 1 for m in months), kind
        mine = [str(p) for p in (out / layout.AGGREGATES / kind).rglob("*.parquet")]
        assert _figures(mine, key, "sum(payments)") == _figures(paid, key, "count(*)"), kind


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
@pytest.mark.parametrize("where", list(STEPS))
def test_a_run_killed_inside_its_commit_leaves_committed_aggregates_equal_to_the_payments(
    tmp_path: Path, where: str
) -> None:
    make_landing(tmp_path, **NIGHTS)
    out = tmp_path / "out"
    run_batch(str(tmp_path / "landing" / "2017-06-24" / "*.jsonl"), out)
    second = str(tmp_path / "landing" / "2017-06-25" / "*.jsonl")
    step, before = STEPS[where]
    command = batch_command(
        "--input", second, "--output", str(out), "--direct_num_workers", "1",
        prelude=KILL_AT.format(step=step, before=before),
    )  # fmt: skip
    killed = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    _assert_committed_readers_agree(out)

    run_batch(second, out)  # the re-run of the same input heals what glob readers see
    _assert_committed_readers_agree(out)
    _assert_glob_readers_agree(out)
