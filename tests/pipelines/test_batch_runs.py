"""Batch runs over several nights: late arrivals, crashes and the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines import batch
from schemas import layout
from schemas.run import Run
from tests.pipelines.helpers import (
    data_files,
    make_landing,
    manifests,
    payments,
    rejected,
    run_batch,
)
from tests.samples import run_of
from transforms.core.scanner import Leak, SecretInOutput

WEEK = {
    "start": date(2017, 6, 24),
    "days": 4,
    "scale": 0.2,
    "invalid_rate": 0.0,
    "duplicate_rate": 0.0,
    "conflict_rate": 0.0,
    "late_rate": 0.1,
}
WEEK_DAYS = ["2017-06-24", "2017-06-25", "2017-06-26", "2017-06-27"]


@pytest.mark.usefixtures("key_env")
def test_late_events_join_their_day_without_destroying_what_is_there(tmp_path: Path) -> None:
    truth = make_landing(tmp_path, **WEEK)
    landing = tmp_path / "landing"
    out = tmp_path / "out"
    for night in sorted(p.name for p in landing.iterdir() if p.is_dir()):
        run_batch(str(landing / night / "*.jsonl"), out)
    table = payments(out)
    assert table.num_rows == truth["valid_events"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows
    # A day that later nights added to holds one file: each night compacts the partitions it
    # wrote to (pipelines/compact.py; tests/pipelines/test_compact.py runs them with
    # --no_compact, one file per night that delivered to the day).
    first_day = out / "payments" / "channel=portal" / "event_date=2017-06-24"
    assert len(list(first_day.glob("*.parquet"))) == 1
    by_day = table.group_by("event_date").aggregate([("event_id", "count")])
    expected = {
        day: sum(channels.values()) for day, channels in truth["by_event_date_channel"].items()
    }
    got = {r["event_date"].isoformat(): r["event_id_count"] for r in by_day.to_pylist()}
    assert got == expected


@pytest.mark.usefixtures("key_env")
def test_an_event_delivered_again_on_a_later_night_is_a_duplicate_not_a_new_row(
    tmp_path: Path,
) -> None:
    make_landing(tmp_path, **{**WEEK, "days": 1, "late_rate": 0.0})
    day = tmp_path / "landing" / "2017-06-24"
    run_batch(str(day / "portal.jsonl"), tmp_path / "out")
    resent = tmp_path / "resent"
    resent.mkdir()
    lines = (day / "portal.jsonl").read_bytes().splitlines(keepends=True)
    (resent / "portal.jsonl").write_bytes(b"".join(lines[:10]))
    second = run_batch(str(resent / "portal.jsonl"), tmp_path / "out")
    assert second["counts"]["accepted"] == 0
    assert second["duplicates_by_kind"] == {"in_output": 10}
    assert payments(tmp_path / "out").num_rows == len(lines)


@pytest.mark.usefixtures("key_env")
def test_a_committed_run_leaves_no_staging_folder(tmp_path: Path) -> None:
    make_landing(tmp_path, **{**WEEK, "days": 1})
    run_batch(str(tmp_path / "landing" / "*" / "kiosk.jsonl"), tmp_path / "out")
    assert not (tmp_path / "out" / layout.STAGING).exists()


def _batch_command(inputs: str, output: Path) -> list[str]:
    return [sys.executable, "-m", "pipelines.batch", "--input", inputs, "--output", str(output)]


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_a_run_killed_part_way_leaves_earlier_output_intact(tmp_path: Path) -> None:
    make_landing(tmp_path, **{**WEEK, "days": 1, "late_rate": 0.0})
    out = tmp_path / "out"
    run_batch(str(tmp_path / "landing" / "*" / "*.jsonl"), out)
    before_files = data_files(out)
    before_rows = payments(out).sort_by("event_id")

    bigger = make_landing(tmp_path / "next", **{**WEEK, "start": date(2017, 6, 25), "days": 3})
    inputs = str(tmp_path / "next" / "landing" / "*" / "*.jsonl")
    process = subprocess.Popen(
        _batch_command(inputs, out),
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    staging = out / "_staging"
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.is_file() for p in staging.rglob("*.parquet")):
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not manifests(out)[1:], "the killed run must not have committed"
    assert data_files(out) == before_files
    assert payments(out).sort_by("event_id").equals(before_rows)

    rerun = run_batch(inputs, out)  # the re-run completes the night
    # The two landings come from two generator runs, whose ids can collide across days (a
    # kiosk's sequence restarts): an id the first night wrote is refused on another day.
    refused = rerun["rejected_by_reason"].get("DUPLICATE_CONFLICT", 0)
    assert rerun["counts"]["accepted"] == bigger["valid_events"] - refused
    table = payments(out)
    assert table.num_rows == before_rows.num_rows + rerun["counts"]["accepted"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows


def test_help_lists_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.batch", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--input", "--output", "--pseudonym_key_file", "--max_event_bytes"):
        assert option in result.stdout


@pytest.mark.usefixtures("key_env")
def test_an_input_that_matches_nothing_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        _batch_command(str(tmp_path / "nothing" / "*.jsonl"), tmp_path / "out"),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "no input file matches" in result.stderr


def test_a_missing_pseudonymisation_key_says_how_to_set_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PAYMENTS_PSEUDONYM_KEY"}
    result = subprocess.run(
        _batch_command(str(tmp_path / "*.jsonl"), tmp_path / "out"),
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode != 0
    assert "PAYMENTS_PSEUDONYM_KEY" in result.stderr


KIOSK_LINE = (
    '{{"channel": "kiosk", "kiosk_id": "KSK-017", "seq": 7, "site": "Isa Town",'
    ' "service": "VEH-REG-RENEW", "amount": "25.000", "local_time": "{time}", "result": "OK"}}\n'
)


@pytest.mark.usefixtures("key_env")
def test_a_resend_whose_clock_crossed_midnight_keeps_one_row(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.jsonl").write_text(KIOSK_LINE.format(time="2017-06-30 23:59:59"))
    (landing / "b.jsonl").write_text(KIOSK_LINE.format(time="2017-07-01 00:00:01"))
    manifest = run_batch(str(landing / "*.jsonl"), tmp_path / "out")
    table = payments(tmp_path / "out")
    assert table.column("event_date").to_pylist() == [date(2017, 6, 30)]
    assert manifest["rejected_by_reason"] == {"DUPLICATE_CONFLICT": 1}
    assert manifest["reconciles"]


@pytest.mark.usefixtures("key_env")
def test_aggregates_agree_with_the_payments_after_several_nights(tmp_path: Path) -> None:
    make_landing(tmp_path, **WEEK)
    landing = tmp_path / "landing"
    out = tmp_path / "out"
    for night in sorted(p.name for p in landing.iterdir() if p.is_dir()):
        run_batch(str(landing / night / "*.jsonl"), out)
    from_payments = duckdb.sql(
        f"""select event_date, channel, status, count(*), sum(amount)
            from read_parquet('{out}/payments/**/*.parquet', hive_partitioning = true)
            group by all order by all"""
    ).fetchall()
    from_aggregates = duckdb.sql(
        f"""select event_date, channel, status, payments, amount
            from read_parquet('{out}/aggregates/by_status/**/*.parquet',
                              hive_partitioning = true)
            order by all"""
    ).fetchall()
    assert from_aggregates == from_payments
    assert len(list((out / "aggregates" / "by_status").rglob("*.parquet"))) == 1


# --- the privacy scan before the commit ---------------------------------------------------------

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"


def _plant_foreign_file(out: Path, day: str) -> None:
    """A payments file another writer committed to a partition, one of whose rows has a card
    number as its service code: the next run touching that partition recomputes the partition's
    aggregates from every row there, so the number reaches a staged aggregate file."""
    [source, *_] = sorted((out / "payments" / "channel=portal").rglob("*.parquet"))
    row = pq.read_table(source).slice(0, 1)
    for name, value in (("event_id", "portal:PTL-2017-999999999"), ("service_code", CARD)):
        field = row.schema.field(name)
        row = row.set_column(row.schema.get_field_index(name), field, pa.array([value], field.type))
    partition = out / "payments" / "channel=portal" / f"event_date={day}"
    partition.mkdir(parents=True, exist_ok=True)
    pq.write_table(row, partition / "part-00000000000000ff-00000.parquet")


def _tree(out: Path) -> dict[str, bytes]:
    """Every file under the output root (run records included), with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.usefixtures("key_env")
def test_a_card_number_reaching_a_staged_file_publishes_nothing_and_exits_4(
    tmp_path: Path,
) -> None:
    make_landing(tmp_path, **{**WEEK, "days": 2, "late_rate": 0.0})
    out = tmp_path / "out"
    run_batch(str(tmp_path / "landing" / "2017-06-24" / "*.jsonl"), out)
    _plant_foreign_file(out, "2017-06-25")
    before = _tree(out)

    result = subprocess.run(
        _batch_command(str(tmp_path / "landing" / "2017-06-25" / "*.jsonl"), out),
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )

    assert result.returncode == batch.EXIT_SECRET_IN_OUTPUT == 4
    after = _tree(out)
    [refused] = [name for name in after if name not in before]
    assert refused.endswith("/_REFUSED.json")  # the only new file: no data, manifest, _SUCCESS
    assert {name: after[name] for name in before} == before  # the earlier output, byte for byte
    assert not list((out / "_staging").glob("*/*"))  # the refused run's staged files are gone
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: refusing to publish: the privacy scanner found 1 secret(s)")
    assert re.search(
        r"aggregates/by_service/month=2017-06/aggregate-v000002-\S+\.parquet: "
        r"column 'service_code', row",
        last,
    )
    assert CARD_DIGITS not in (result.stdout + result.stderr).replace(" ", "")
    assert CARD_DIGITS not in after[refused].decode().replace(" ", "")


def test_the_batch_command_maps_a_refusal_to_its_own_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    leaks = [Leak("out/rejected/part-1.parquet", "reason", 3, "card")]

    def refused(_argv: object) -> None:
        raise SecretInOutput(leaks)

    monkeypatch.setattr(batch, "run", refused)
    assert batch.main(["--input", "x", "--output", "y"]) == 4
    err = capsys.readouterr().err.strip()
    assert err == f"error: {SecretInOutput(leaks)}"  # one line
    assert "out/rejected/part-1.parquet: column 'reason', row 3: a card number" in err


def _info(root: Path) -> Run:
    return run_of("20170701T000000Z-abcdef", str(root), input_key="00000000000000aa")


def test_a_refusal_is_recognised_from_the_text_of_a_workers_error(tmp_path: Path) -> None:
    leaks = [Leak("out/a.parquet", "kiosk_site", 2, "card")]
    error = RuntimeError(
        f"Traceback …\ntransforms.commit.PublishRefused: {SecretInOutput(leaks)} "
        "[while running 'Commit/PublishRun']"
    )
    refused = batch.refusal_of(_info(tmp_path), error)
    assert refused is not None
    assert refused.leaks == leaks


def test_a_refusal_is_recognised_in_the_exception_chain(tmp_path: Path) -> None:
    leaks = [Leak("out/a.parquet", "raw", 0, "cpr")]
    try:
        try:
            raise SecretInOutput(leaks)
        except SecretInOutput as original:
            raise RuntimeError("bundle failed") from original
    except RuntimeError as wrapped:
        refused = batch.refusal_of(_info(tmp_path), wrapped)
    assert refused is not None
    assert refused.leaks == leaks


def test_any_other_failure_is_not_taken_for_a_refusal(tmp_path: Path) -> None:
    assert batch.refusal_of(_info(tmp_path), RuntimeError("disk full")) is None


# --- quality gates and incomplete inputs: committed, with their own exit status -------------


def _committed_manifest(**changes: object) -> dict[str, object]:
    """What run() returns for a committed run, with `changes`."""
    return {
        "run_id": "20170701T000000Z-abcdef",
        "output_root": "out",
        "elapsed_seconds": 1.0,
        "by_channel": {},
        "counts": {"read": 0, "accepted": 0, "rejected": 0, "duplicates": 0},
        "reconciles": True,
        "incomplete_inputs": [],
        "quality_gate": "ok",
        "quality_gates": [],
        **changes,
    }


FAILED_GATE = {"channel": "kiosk", "level": "error", "message": "all 40 events rejected"}
CUT_INPUT = {
    "path": "in/portal.jsonl.gz",
    "fault": "TRUNCATED",
    "reason": "cut off",
    "lines_before_fault": 3,
}


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, 0),
        ({"quality_gate": "warn"}, 0),
        ({"quality_gate": "error", "quality_gates": [FAILED_GATE]}, 5),
        ({"incomplete_inputs": [CUT_INPUT]}, 7),
        ({"incomplete_inputs": [CUT_INPUT], "quality_gate": "error"}, 7),
        ({"reconciles": False, "incomplete_inputs": [CUT_INPUT], "quality_gate": "error"}, 3),
    ],
)
def test_the_batch_command_maps_a_committed_runs_alarms_to_exit_statuses(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, object], status: int
) -> None:
    monkeypatch.setattr(batch, "run", lambda _argv: _committed_manifest(**changes))
    assert batch.main(["--input", "x", "--output", "y"]) == status


def test_a_failed_gate_prints_one_error_line_naming_the_channel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = _committed_manifest(quality_gate="error", quality_gates=[FAILED_GATE])
    monkeypatch.setattr(batch, "run", lambda _argv: failed)
    assert batch.main(["--input", "x", "--output", "y"]) == batch.EXIT_QUALITY_GATE == 5
    err = capsys.readouterr().err.strip()
    assert err == "error: quality gate: kiosk: all 40 events rejected"


BAD_KIOSK_LINE = KIOSK_LINE.replace('"amount": "25.000"', '"amount": "-1.000"').replace(
    '"seq": 7', '"seq": {seq}'
)


@pytest.mark.usefixtures("key_env")
def test_a_channel_whose_events_are_all_rejected_commits_and_exits_5(tmp_path: Path) -> None:
    make_landing(tmp_path, **{**WEEK, "days": 1, "late_rate": 0.0})
    day = tmp_path / "landing" / "2017-06-24"
    bad = "".join(BAD_KIOSK_LINE.format(seq=n, time="2017-06-24 10:00:00") for n in range(12))
    (day / "kiosk.jsonl").write_text(bad)

    result = subprocess.run(
        _batch_command(str(day / "*.jsonl"), tmp_path / "out"),
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )

    assert result.returncode == batch.EXIT_QUALITY_GATE, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line == "error: quality gate: kiosk: all 12 events rejected"
    [manifest] = manifests(tmp_path / "out")
    assert manifest["reconciles"]
    assert manifest["quality_gate"] == "error"
    assert (tmp_path / "out" / "runs" / manifest["run_id"] / "_SUCCESS").exists()
    assert payments(tmp_path / "out").num_rows == manifest["counts"]["accepted"] > 0
    assert "kiosk      error  all 12 events rejected" in result.stdout


@pytest.mark.usefixtures("key_env")
def test_a_landing_file_rewritten_with_other_events_of_the_same_size_is_another_input(
    tmp_path: Path,
) -> None:
    """A producer that reuses one file name every night: the second night's file, padded with
    blank lines to the first one's size, must not replace the first night's rows."""
    make_landing(tmp_path, **{**WEEK, "days": 2, "late_rate": 0.0})
    nights = [(tmp_path / "landing" / d / "portal.jsonl").read_bytes() for d in WEEK_DAYS[:2]]
    size = max(len(night) for night in nights)
    reused = tmp_path / "drop" / "portal.jsonl"
    reused.parent.mkdir()
    out = tmp_path / "out"
    accepted = []
    for night in nights:
        reused.write_bytes(night + b"\n" * (size - len(night)))
        accepted.append(run_batch(str(reused), out)["counts"]["accepted"])
    assert len({m["input_key"] for m in manifests(out)}) == 2
    assert payments(out).num_rows == sum(accepted)


@pytest.mark.usefixtures("key_env")
def test_a_landing_file_copied_again_unchanged_is_the_same_input(tmp_path: Path) -> None:
    make_landing(tmp_path, **{**WEEK, "days": 1, "late_rate": 0.0})
    source = tmp_path / "landing" / WEEK_DAYS[0] / "portal.jsonl"
    out = tmp_path / "out"
    first = run_batch(str(source), out)
    os.utime(source, (1, 1))  # a copy made again: a new mtime, the same bytes
    second = run_batch(str(source), out)
    assert first["input_key"] == second["input_key"]
    assert payments(out).num_rows == first["counts"]["accepted"]


@pytest.mark.usefixtures("key_env")
def test_an_event_sent_again_on_a_later_night_with_another_day_is_not_written_twice(
    tmp_path: Path,
) -> None:
    """De-duplication is global: an event_id an earlier run wrote to one day's partition is
    refused in any other (its clock moved it), as a conflict with a reason."""
    make_landing(tmp_path, **{**WEEK, "days": 1, "late_rate": 0.0})
    out = tmp_path / "out"
    first = tmp_path / "landing" / WEEK_DAYS[0] / "portal.jsonl"
    run_batch(str(first), out)
    line = json.loads(first.read_bytes().splitlines()[0])
    line["paid_at"] = "2017-06-27T10:00:00+03:00"  # three days later
    again = tmp_path / "again" / "portal.jsonl"
    again.parent.mkdir()
    again.write_text(json.dumps(line) + "\n")

    manifest = run_batch(str(again), out)

    table = payments(out)
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows
    assert manifest["counts"]["accepted"] == 0
    assert manifest["rejected_by_reason"] == {"DUPLICATE_CONFLICT": 1}
    assert manifest["reconciles"]
    [reason] = (
        rejected(out)
        .filter(pc.equal(rejected(out)["run_id"], manifest["run_id"]))["reason"]
        .to_pylist()
    )
    assert "already written to the partition of 2017-06-24" in reason
