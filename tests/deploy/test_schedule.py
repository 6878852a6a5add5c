"""The nightly schedule: which Bahrain day a run processes, how its manifest is judged, and the
Airflow DAG file (checked as source: Airflow is not installed here)."""

from __future__ import annotations

import ast
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from deploy.schedule.payments_schedule import (
    batch_job_name,
    day_to_process,
    days_from_to,
    landing_day_prefix,
    landing_glob,
    manifest_problems,
    newest_run_of,
    previous_bahrain_day,
    run_alarms,
    run_id_floor,
)
from schemas.run import new_run_id
from schemas.timekeeping import bahrain_day, to_utc_micros

SCHEDULE = Path(__file__).parents[2] / "deploy" / "schedule"
DAG_FILE = SCHEDULE / "payments_nightly_dag.py"
LANDING = "gs://payments-landing"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


def manifest(run_id: str, day: str, **channel_counts: tuple[int, int, int, int]) -> dict[str, Any]:
    """A batch manifest over one landing day; counts per channel: read, accepted, rejected,
    duplicates."""
    by_channel = {
        channel: {
            "read": read,
            "accepted": accepted,
            "rejected": rejected,
            "duplicates": duplicates,
            "reconciles": read == accepted + rejected + duplicates,
        }
        for channel, (read, accepted, rejected, duplicates) in channel_counts.items()
    }
    return {
        "run_id": run_id,
        "pipeline": "batch",
        "inputs": [{"path": f"{LANDING}/{day}/portal.jsonl", "bytes": 10}],
        "by_channel": by_channel,
        "reconciles": all(c["reconciles"] for c in by_channel.values()),
    }


def test_previous_bahrain_day_just_before_21_utc_is_the_utc_day_before() -> None:
    assert previous_bahrain_day(utc(2017, 7, 1, 20, 59, 59)) == date(2017, 6, 30)


def test_previous_bahrain_day_from_21_utc_is_the_same_utc_day() -> None:
    """21:00 UTC is already midnight of the next day in Bahrain (UTC+3)."""
    assert previous_bahrain_day(utc(2017, 7, 1, 21, 0, 0)) == date(2017, 7, 1)


def test_previous_bahrain_day_of_the_nightly_run_is_yesterday_in_bahrain() -> None:
    bahrain = timezone(timedelta(hours=3))
    assert previous_bahrain_day(datetime(2017, 7, 1, 2, 0, tzinfo=bahrain)) == date(2017, 6, 30)


def test_previous_bahrain_day_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        previous_bahrain_day(datetime(2017, 7, 1, 21, 0))


@pytest.mark.parametrize("hour", range(24))
def test_previous_bahrain_day_agrees_with_the_pipelines_bahrain_day(hour: int) -> None:
    instant = utc(2017, 12, 31, hour, 30)
    assert previous_bahrain_day(instant) == bahrain_day(to_utc_micros(instant)) - timedelta(1)


def test_explicit_day_overrides_the_schedule() -> None:
    assert day_to_process(utc(2025, 1, 2, 0, 0), "2017-06-30") == date(2017, 6, 30)


def test_no_explicit_day_means_the_previous_bahrain_day() -> None:
    assert day_to_process(utc(2025, 1, 1, 23, 0), None) == date(2025, 1, 1)


def test_backfill_range_includes_both_ends() -> None:
    assert days_from_to(date(2017, 6, 29), date(2017, 7, 1)) == [
        date(2017, 6, 29),
        date(2017, 6, 30),
        date(2017, 7, 1),
    ]


def test_backfill_range_refuses_an_end_before_its_start() -> None:
    with pytest.raises(ValueError, match="before"):
        days_from_to(date(2017, 7, 1), date(2017, 6, 30))


def test_landing_glob_is_the_days_landing_folder() -> None:
    assert landing_glob(LANDING + "/", date(2017, 6, 30)) == f"{LANDING}/2017-06-30/*.jsonl*"


def test_job_name_is_one_per_day_and_valid_for_dataflow() -> None:
    name = batch_job_name(date(2017, 6, 30))
    assert name == "payments-batch-20170630"
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)


def test_run_id_floor_sorts_between_runs_started_before_and_after() -> None:
    instant = utc(2017, 7, 1, 23, 0, 0)
    floor = run_id_floor(instant)
    assert new_run_id(instant - timedelta(seconds=1)) < floor <= new_run_id(instant)


def test_newest_run_of_the_day_is_picked() -> None:
    runs = [
        manifest("20170701T230000Z-aaaaaa", "2017-06-30", portal=(5, 5, 0, 0)),
        manifest("20170702T010000Z-bbbbbb", "2017-06-30", portal=(5, 5, 0, 0)),
        manifest("20170702T020000Z-cccccc", "2017-07-01", portal=(5, 5, 0, 0)),
    ]
    picked = newest_run_of(runs, landing_day_prefix(LANDING, date(2017, 6, 30)))
    assert picked is not None
    assert picked["run_id"] == "20170702T010000Z-bbbbbb"


def test_no_run_of_the_day_is_none() -> None:
    runs = [manifest("20170702T020000Z-cccccc", "2017-07-01", portal=(5, 5, 0, 0))]
    assert newest_run_of(runs, landing_day_prefix(LANDING, date(2017, 6, 30))) is None


def test_streaming_runs_are_not_taken_for_the_batch_run() -> None:
    run = {**manifest("20170702T010000Z-bbbbbb", "2017-06-30"), "pipeline": "streaming"}
    assert newest_run_of([run], landing_day_prefix(LANDING, date(2017, 6, 30))) is None


def test_reconciling_manifest_has_no_problems() -> None:
    sound = manifest("r", "2017-06-30", portal=(10, 7, 2, 1), kiosk=(0, 0, 0, 0))
    assert manifest_problems(sound) == []


def test_manifest_problem_names_the_channel_and_its_counts() -> None:
    off = manifest("r", "2017-06-30", portal=(10, 7, 2, 1), kiosk=(9, 5, 1, 1))
    assert manifest_problems(off) == [
        "kiosk: read 9 != accepted 5 + rejected 1 + duplicates 1 (= 7)"
    ]


def test_manifest_that_says_it_does_not_reconcile_is_a_problem() -> None:
    odd = {**manifest("r", "2017-06-30", portal=(1, 1, 0, 0)), "reconciles": False}
    assert manifest_problems(odd) == ["manifest says it does not reconcile"]


def gate(channel: str, level: str, message: str) -> dict[str, Any]:
    return {"channel": channel, "level": level, "message": message}


def test_a_run_that_read_everything_and_passed_its_gates_raises_no_alarm() -> None:
    sound = {
        **manifest("r", "2017-06-30", portal=(10, 10, 0, 0)),
        "incomplete_inputs": [],
        "quality_gates": [gate("portal", "ok", "fine"), gate("kiosk", "warn", "no events read")],
    }
    assert run_alarms(sound) == []


def test_a_manifest_from_before_gates_and_incomplete_inputs_raises_no_alarm() -> None:
    assert run_alarms(manifest("r", "2017-06-30", portal=(10, 10, 0, 0))) == []


def test_a_failed_quality_gate_is_an_alarm_naming_the_channel() -> None:
    failed = {
        **manifest("r", "2017-06-30", kiosk=(40, 0, 40, 0)),
        "quality_gates": [gate("kiosk", "error", "all 40 events rejected")],
    }
    assert run_alarms(failed) == ["quality gate: kiosk: all 40 events rejected"]


def test_an_incomplete_input_is_an_alarm_naming_the_file_and_its_fault() -> None:
    path = f"{LANDING}/2017-06-30/portal.jsonl.gz"
    cut = {
        **manifest("r", "2017-06-30", portal=(0, 0, 0, 0)),
        "incomplete_inputs": [{"path": path, "fault": "TRUNCATED"}],
    }
    assert run_alarms(cut) == [
        f"input not read: {path}: TRUNCATED (have it delivered again, then re-run the day)"
    ]


def test_the_dag_fails_its_check_without_retry_on_an_alarm() -> None:
    tree = ast.parse(DAG_FILE.read_text())
    (check,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "check_manifest"
    ]
    calls = {
        n.func.id
        for n in ast.walk(check)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    assert {"manifest_problems", "run_alarms"} <= calls
    fails = [
        node
        for node in ast.walk(check)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and ast.unparse(node.exc.func) == "AirflowFailException"
    ]
    assert len(fails) == 2  # does not reconcile; committed, but with an alarm


def dag_call() -> ast.Call:
    """The DAG(...) call of the DAG file."""
    tree = ast.parse(DAG_FILE.read_text())
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "DAG"
    ]
    return call


def test_dag_file_is_valid_python() -> None:
    compile(DAG_FILE.read_text(), str(DAG_FILE), "exec")


def test_dag_runs_nightly_in_bahrain_time_one_run_at_a_time_with_retries() -> None:
    keywords = {k.arg: k.value for k in dag_call().keywords}
    assert ast.literal_eval(keywords["schedule"]) == "0 2 * * *"
    assert "tz='Asia/Bahrain'" in ast.unparse(keywords["start_date"])
    assert ast.literal_eval(keywords["max_active_runs"]) == 1
    assert ast.literal_eval(keywords["catchup"]) is False
    defaults = keywords["default_args"]
    assert isinstance(defaults, ast.Dict)
    default_args = {
        ast.literal_eval(k): v for k, v in zip(defaults.keys, defaults.values, strict=True) if k
    }
    assert ast.literal_eval(default_args["retries"]) > 0


def test_dag_uses_exactly_the_documented_settings() -> None:
    source = DAG_FILE.read_text()
    used = set(re.findall(r"\{CONFIG\}\.(\w+)", source)) | set(
        re.findall(r"config\[\"(\w+)\"\]", source)
    )
    documented = set(json.loads((SCHEDULE / "payments_config.example.json").read_text()))
    assert used == documented


def test_dag_imports_only_rules_the_schedule_module_has() -> None:
    tree = ast.parse(DAG_FILE.read_text())
    (imported,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "payments_schedule"
    ]
    import deploy.schedule.payments_schedule as rules

    assert all(hasattr(rules, alias.name) for alias in imported.names)
