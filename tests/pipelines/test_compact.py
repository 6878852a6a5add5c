"""Compaction end to end (pipelines/compact.py) on a lake made by three nightly batch runs with
late events: real files, real Beam runs, read back by pyarrow datasets and DuckDB; killed at
each step (a real process, SIGKILL) and re-run; and against a batch run on the same root."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines import batch, compact
from schemas import layout
from tests.emulators import PROJECT_ROOT, pipeline_command
from tests.pipelines.helpers import data_files, make_landing, manifests, payments, run_batch
from tests.samples import TEST_KEY
from transforms.batch import compact as job_compaction
from transforms.core.compaction import touched_partitions
from transforms.storage import lease
from transforms.storage.committed import committed_files

NIGHTS = {
    "start": date(2017, 6, 24),
    "days": 3,
    "scale": 0.2,
    "invalid_rate": 0.0,
    "duplicate_rate": 0.0,
    "conflict_rate": 0.0,
    "late_rate": 0.2,  # later nights add rows to earlier nights' partitions
}
DAY_AFTER = date(2017, 6, 27)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output root written by three nightly batch runs that did not compact (copied by
    each test)."""
    root = tmp_path_factory.mktemp("lake")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
        make_landing(root, **NIGHTS)
        landing = root / "landing"
        for night in sorted(p.name for p in landing.iterdir() if p.is_dir()):
            run_batch(str(landing / night / "*.jsonl"), root / "out", "--no_compact")
    return root


@pytest.fixture
def out(lake: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(lake / "out", copy)
    return copy


def _files_per_partition(out: Path) -> dict[str, int]:
    found = Counter(
        str(p.parent.relative_to(out / layout.PAYMENTS))
        for p in (out / layout.PAYMENTS).rglob("*.parquet")
    )
    return dict(sorted(found.items()))


def _rows(out: Path) -> pa.Table:
    """Every row a glob reader sees (pyarrow dataset, Hive keys), in one order."""
    table = payments(out)
    return table.select(sorted(table.column_names)).sort_by("event_id")


def _duckdb_figures(files: list[str]) -> tuple[object, ...]:
    listed = ", ".join(f"'{f}'" for f in files)
    row = duckdb.sql(
        f"""select count(*), count(distinct event_id), sum(amount),
                   sum(hash(event_id, amount, status, occurred_at, payer_key))
            from read_parquet([{listed}], hive_partitioning = true)"""
    ).fetchall()
    return tuple(row[0])


def _glob(out: Path) -> list[str]:
    return sorted(str(p) for p in (out / layout.PAYMENTS).rglob("*.parquet"))


def _aggregate_bytes(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in (out / layout.AGGREGATES).rglob("*.parquet")
    }


def _assert_compacted(out: Path, rows: pa.Table, figures: tuple[object, ...]) -> None:
    """One file per partition, holding exactly `rows`, for glob and committed readers."""
    assert set(_files_per_partition(out).values()) == {1}
    assert _rows(out).equals(rows)
    assert _duckdb_figures(_glob(out)) == figures
    assert committed_files(str(out)) == _glob(out)
    assert not any((out / layout.STAGING).rglob("*.parquet"))


def test_compaction_leaves_one_file_per_partition_holding_the_same_rows(out: Path) -> None:
    before = _files_per_partition(out)
    rows, figures, aggregates = _rows(out), _duckdb_figures(_glob(out)), _aggregate_bytes(out)
    assert max(before.values()) >= 3  # three nights delivered to the first day

    manifest = compact.run(["--output", str(out)])

    _assert_compacted(out, rows, figures)
    assert _files_per_partition(out).keys() == before.keys()
    assert _aggregate_bytes(out) == aggregates  # figured from equal rows: not rewritten
    assert manifest["pipeline"] == "compact"
    rewritten = {k: v for k, v in before.items() if v > 1}
    assert manifest["counts"]["partitions"] == len(rewritten)
    assert manifest["counts"]["files_before"] == sum(rewritten.values())
    assert manifest["counts"]["rows"] == sum(p["rows"]["rows"] for p in manifest["partitions"])
    assert len(manifest["files_removed"]) == sum(rewritten.values())
    assert all(Path(f).exists() for f in manifest["files_written"])
    assert not any(Path(f).exists() for f in manifest["files_removed"])
    for path in manifest["files_written"]:  # sorted as the writers sort
        table = pq.read_table(path)
        keys = pc.binary_join_element_wise(
            pc.strftime(table["occurred_at"], "%Y%m%d%H%M%S%f"), table["event_id"], "|"
        )
        assert keys.to_pylist() == sorted(keys.to_pylist())
    assert manifest["privacy_scan"]["files"] == len(manifest["files_written"])


def test_a_second_compaction_changes_nothing(out: Path) -> None:
    compact.run(["--output", str(out)])
    files, runs = data_files(out), sorted(p.name for p in (out / layout.RUNS).iterdir())

    again = compact.run(["--output", str(out)])

    assert again["compacted"] == 0
    assert data_files(out) == files
    assert sorted(p.name for p in (out / layout.RUNS).iterdir()) == runs  # no manifest


def test_only_the_named_partitions_and_days_are_compacted(out: Path) -> None:
    before = _files_per_partition(out)
    many = sorted(k for k, v in before.items() if v > 1)
    named = many[0]

    compact.run(["--output", str(out), "--partitions", named])
    after = _files_per_partition(out)
    assert after == {**before, named: 1}

    compact.run(["--output", str(out), "--since", "2017-06-25"])
    late = {k: v for k, v in _files_per_partition(out).items() if k.endswith(("25", "26"))}
    assert set(late.values()) == {1}


@pytest.mark.usefixtures("key_env")
def test_a_batch_run_after_compaction_writes_no_event_twice(out: Path, lake: Path) -> None:
    rows = _rows(out)
    compact.run(["--output", str(out)])

    night = str(lake / "landing" / "2017-06-25" / "*.jsonl")
    rerun = run_batch(night, out)  # the same night again: every event is already there

    assert rerun["counts"]["accepted"] == 0
    assert rerun["counts"]["duplicates"] == rerun["counts"]["read"]
    assert _rows(out).equals(rows)
    assert set(_files_per_partition(out).values()) == {1}


# --- the nightly batch compacts what it touched --------------------------------------------


@pytest.mark.usefixtures("key_env")
def test_the_nightly_batch_compacts_the_partitions_it_wrote_to(lake: Path, tmp_path: Path) -> None:
    out = tmp_path / "nightly"
    landing = lake / "landing"
    for night in sorted(p.name for p in landing.iterdir() if p.is_dir()):
        manifest = run_batch(str(landing / night / "*.jsonl"), out)
        assert set(_files_per_partition(out).values()) == {1}, night
    assert manifest["compaction"]["pipeline"] == "compact"
    lineage = ["ingested_at", "run_id"]  # other runs, other clocks: all else is the same
    assert _rows(out).drop_columns(lineage).equals(_rows(lake / "out").drop_columns(lineage))
    assert committed_files(str(out)) == _glob(out)
    assert _files_per_partition(out).keys() == _files_per_partition(lake / "out").keys()


@pytest.mark.usefixtures("key_env")
def test_a_partition_that_does_not_verify_after_a_batch_run_is_left_and_the_run_stands(
    lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "nightly"
    nights = sorted(p for p in (lake / "landing").iterdir() if p.is_dir())
    for night in nights[:2]:
        run_batch(str(night / "*.jsonl"), out, "--no_compact")
    before = _files_per_partition(out)
    monkeypatch.setattr(job_compaction, "differences", lambda _old, _new: ["planted"])

    last = str(nights[2] / "*.jsonl")  # one worker: the planted mismatch is in this process
    status = batch.main(["--input", last, "--output", str(out), "--direct_num_workers", "1"])

    assert status == 0  # committed; its compaction published nothing
    assert len(manifests(out)) == 3
    assert not manifests(out, "compact")
    after = _files_per_partition(out)
    assert all(after[k] >= v for k, v in before.items())
    assert max(after.values()) > 1
    assert not any((out / layout.STAGING).rglob("*.parquet"))


def test_a_partition_compacted_by_another_writer_since_it_was_chosen_is_left_out(
    out: Path,
) -> None:
    """A template-launched job chooses its partitions before its commit takes the lease."""
    chosen = job_compaction.partitions_of(str(out))
    current = job_compaction.CompactedPartition(chosen[0], ())
    gone_file = replace(chosen[1], files=(*chosen[1].files, f"{out}/payments/gone.parquet"))
    gone = job_compaction.CompactedPartition(gone_file, ())
    assert job_compaction.still_committed(str(out), [current, gone]) == [current]


def test_the_nightly_batch_compacts_its_partitions_and_yesterdays() -> None:
    root = "/lake"
    written = [
        f"{root}/payments/channel=kiosk/event_date=2017-06-20/part-0123456789abcdef-00000.parquet",
        f"{root}/rejected/part-0123456789abcdef-00000.parquet",
        f"{root}/aggregates/by_status/month=2017-06/aggregate-v000002-r.parquet",
    ]
    assert touched_partitions(written, root, DAY_AFTER) == [
        ("kiosk", date(2017, 6, 20)),
        ("kiosk", DAY_AFTER),
        ("mobile_app", DAY_AFTER),
        ("portal", DAY_AFTER),
    ]


# --- killed at each step, then re-run -------------------------------------------------------

KILL_AT = """
import os, signal
import transforms.batch.compact as compact
_step = getattr(compact, "{step}")
def _killed(*args, **kwargs):
    {before}
    os.kill(os.getpid(), signal.SIGKILL)
setattr(compact, "{step}", _killed)
"""
STEPS = {
    # the first partition staged (and scanned), nothing verified or moved
    "staging": ("stage_partition", "_step(*args, **kwargs)"),
    # every partition staged, verification under way
    "verification": ("verify_partition", "pass"),
    # half the staged files moved into place, no manifest
    "commit_moves": ("replace", "_step(*(paths[: len(paths) // 2] for paths in args))"),
    # `_SUCCESS` written, the old files not yet deleted
    "after_success": ("delete_replaced", "pass"),
}


@pytest.mark.slow
@pytest.mark.parametrize("where", list(STEPS))
def test_a_compaction_killed_at_any_step_and_run_again_loses_and_duplicates_nothing(
    out: Path, where: str
) -> None:
    rows, figures = _rows(out), _duckdb_figures(_glob(out))
    step, before = STEPS[where]
    command = pipeline_command(
        "pipelines.compact", "--output", str(out), "--direct_num_workers", "1",
        prelude=KILL_AT.format(step=step, before=before),
    )  # fmt: skip
    killed = subprocess.run(
        command, cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    # Readers of committed files see every row once, at any point of a killed compaction.
    assert _duckdb_figures(committed_files(str(out))) == figures

    manifest = compact.run(["--output", str(out)])  # takes over the dead run's lease

    _assert_compacted(out, rows, figures)
    committed_compactions = manifests(out, "compact")
    assert len(committed_compactions) == 1  # the killed one, or the re-run: never both
    if where == "commit_moves":
        assert manifest["leftovers_deleted"] > 0  # the moved half of the killed run's files
    if where == "after_success":
        assert manifest["compacted"] == 0
        assert manifest["leftovers_deleted"] > 0


def test_a_secret_in_a_file_to_compact_is_refused_by_the_scan_and_nothing_changes(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Staged files are scanned like every other: a card number that reached a committed file
    (by a defect since fixed) is not copied into a new one."""
    partition = next(k for k, v in _files_per_partition(out).items() if v > 1)
    target = sorted((out / layout.PAYMENTS / partition).glob("*.parquet"))[0]
    table = pq.read_table(target)
    names = ["Card 4111 1111 1111 1111", *table["service_name_en"].to_pylist()[1:]]
    pq.write_table(table.set_column(2, "service_name_en", pa.array(names)), target)
    files = data_files(out)

    assert compact.main(["--output", str(out)]) == compact.EXIT_SECRET_IN_OUTPUT

    assert "card" in capsys.readouterr().err.lower()
    assert data_files(out) == files
    assert not manifests(out, "compact")


# --- against another writer ----------------------------------------------------------------


def test_a_compaction_refuses_while_a_batch_run_holds_the_output(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = data_files(out)
    with lease.acquire(str(out), "20261202T000000Z-abcdef", lease.BATCH):
        assert compact.main(["--output", str(out)]) == compact.EXIT_OUTPUT_BUSY
    assert "held by batch run 20261202T000000Z-abcdef" in capsys.readouterr().err
    assert data_files(out) == files


PAUSE_AT_VERIFICATION = """
import pathlib, time
import transforms.batch.compact as compact
_verify = compact.verify_partition
def _paused(*args, **kwargs):
    pathlib.Path({flag!r}).touch()
    while not pathlib.Path({go!r}).exists():
        time.sleep(0.05)
    return _verify(*args, **kwargs)
compact.verify_partition = _paused
"""


@pytest.mark.usefixtures("key_env")
def test_a_batch_run_refuses_while_a_compaction_holds_the_output(
    out: Path, lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rows(out)
    flag, go = tmp_path / "verifying", tmp_path / "go"
    prelude = PAUSE_AT_VERIFICATION.format(flag=str(flag), go=str(go))
    command = pipeline_command("pipelines.compact", "--output", str(out), prelude=prelude)
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=os.environ.copy(), stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), "the compaction never reached its verification"
        night = str(lake / "landing" / "2017-06-26" / "*.jsonl")
        status = batch.main(["--input", night, "--output", str(out), "--direct_num_workers", "1"])
        assert status == batch.EXIT_OUTPUT_BUSY
        assert "held by compact run" in capsys.readouterr().err
    finally:
        go.touch()
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert _rows(out).equals(rows)
    assert set(_files_per_partition(out).values()) == {1}


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "--output is required"),
        (["--partitions", "channel=atm/event_date=2017-06-24"], "--partitions 'channel=atm"),
        (["--partitions", "channel=kiosk/event_date=2017-13-01"], "is not a date"),
        (["--since", "yesterday"], "'yesterday' is not a day (YYYY-MM-DD)"),
        (["--max_files", "0"], "'0' is not a count >= 1"),
        (["--target_mb", "64"], "unknown option --target_mb"),
    ],
)
def test_a_bad_command_line_is_refused_with_status_2(
    tmp_path: Path, argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    output = [] if not argv else ["--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as refused:
        compact.main([*output, *argv])
    assert refused.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert said in last
    assert not (tmp_path / "out").exists()
