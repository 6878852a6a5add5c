"""Two batch runs into one output root at the same time, as real `python -m pipelines.batch`
processes: one writer at a time (transforms/storage/lease.py), so no event is written twice and no
aggregate update is lost; the second run is refused (exit 6) or waits its turn. A run killed
while it holds the root is taken over: at once on this machine, after its lease expires when
it ran elsewhere."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pytest

from pipelines import batch
from schemas import layout
from tests.emulators import PROJECT_ROOT, batch_command, pubsub_emulator
from tests.pipelines.helpers import balanced, make_landing, manifests, payments
from tools.replay import publishable_lines
from transforms.core import stats as st

NIGHTS = {
    "start": date(2017, 6, 24),
    "days": 3,
    "scale": 0.2,
    "invalid_rate": 0.0,
    "duplicate_rate": 0.0,
    "conflict_rate": 0.0,
    "late_rate": 0.1,
}
# Stands in for a longer run: it keeps the lease a few seconds before it starts its pipeline,
# so that two runs started together certainly overlap.
HOLD_LONGER = """
import time
from transforms.storage import lease
_acquire = lease.acquire
def _acquire_and_hold(*args, **kwargs):
    held = _acquire(*args, **kwargs)
    time.sleep(6)
    return held
lease.acquire = _acquire_and_hold
"""


def _inputs(tmp_path: Path, *nights: str) -> str:
    return ",".join(str(tmp_path / "landing" / night / "*.jsonl") for night in nights)


def _start(inputs: str, out: Path, *extra: str, prelude: str = "") -> subprocess.Popen[str]:
    command = batch_command(
        "--input", inputs, "--output", str(out), "--direct_num_workers", "1", *extra,
        prelude=prelude,
    )  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _assert_consistent(out: Path, truth: dict[str, Any]) -> None:
    """Every event once, aggregates equal to the committed payments, every manifest sound."""
    table = payments(out)
    assert table.num_rows == truth["valid_events"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows
    for kind, key in (("by_status", "status"), ("by_service", "service_code")):
        from_payments = duckdb.sql(
            f"""select event_date, channel, {key}, count(*), sum(amount)
                from read_parquet('{out}/payments/**/*.parquet', hive_partitioning = true)
                group by all order by all"""
        ).fetchall()
        from_aggregates = duckdb.sql(
            f"""select event_date, channel, {key}, sum(payments), sum(amount)
                from read_parquet('{out}/aggregates/{kind}/**/*.parquet',
                                  hive_partitioning = true)
                group by all order by all"""
        ).fetchall()
        assert from_aggregates == from_payments, kind
    runs = manifests(out)
    assert runs
    assert all(m["reconciles"] for m in runs)
    assert all((out / "runs" / m["run_id"] / layout.SUCCESS_MARKER).exists() for m in runs)
    assert not [p for p in (out / layout.STAGING).rglob("*") if p.is_file()]


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_of_two_runs_started_together_one_commits_and_the_other_exits_6(tmp_path: Path) -> None:
    truth = make_landing(tmp_path, **NIGHTS)
    out = tmp_path / "out"
    first = _inputs(tmp_path, "2017-06-24", "2017-06-25")
    second = _inputs(tmp_path, "2017-06-25", "2017-06-26")  # one night in common
    processes = {
        first: _start(first, out, prelude=HOLD_LONGER),
        second: _start(second, out, prelude=HOLD_LONGER),
    }
    results = {inputs: _finish(process) for inputs, process in processes.items()}

    statuses = sorted(status for status, _ in results.values())
    assert statuses == [0, batch.EXIT_OUTPUT_BUSY], results
    [winner] = manifests(out)
    [(refused, err)] = [(i, err) for i, (status, err) in results.items() if status != 0]
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        f"error: output root {out} is busy: held by batch run {winner['run_id']} "
    )
    holder = processes[first if refused == second else second]
    assert f"(host {socket.gethostname()}, pid {holder.pid}) since 20" in last
    assert ", last heartbeat " in last
    assert last.endswith("; run again once it has finished, or pass --wait_for_lease SECONDS")
    # It wrote nothing: the runs are the winner and the compaction the winner ran after it.
    ran = {m["run_id"] for m in [winner, *manifests(out, "compact")]}
    assert {p.name for p in (out / "runs").iterdir()} == ran

    status, err = _finish(_start(refused, out))  # run again once it has finished
    assert status == 0, err
    _assert_consistent(out, truth)
    later = manifests(out)[-1]
    assert later["duplicates_by_kind"]["in_output"] > 0  # the shared night, counted not written


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_with_wait_for_lease_two_runs_started_together_both_commit_in_turn(
    tmp_path: Path,
) -> None:
    truth = make_landing(tmp_path, **NIGHTS)
    out = tmp_path / "out"
    processes = [
        _start(_inputs(tmp_path, *nights), out, "--wait_for_lease", "120", prelude=HOLD_LONGER)
        for nights in (("2017-06-24", "2017-06-25"), ("2017-06-25", "2017-06-26"))
    ]
    results = [_finish(process) for process in processes]
    assert [status for status, _ in results] == [0, 0], results
    assert any("waiting for the writer lease" in err for _, err in results)
    _assert_consistent(out, truth)
    assert len(manifests(out)) == 2


def _kill_while_staging(inputs: str, out: Path, *extra: str) -> str:
    """Start a run, SIGKILL it (and its worker processes) once it has staged files; returns
    its run id, read from the lease it leaves behind."""
    process = subprocess.Popen(
        batch_command("--input", inputs, "--output", str(out), *extra),
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.is_file() for p in (out / layout.STAGING).rglob("*.arrows")):
            break
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stored = json.loads((out / layout.LEASE_DIR / layout.LEASE_FILE).read_text())
    run_id: str = stored["run_id"]
    assert (out / layout.STAGING / run_id).is_dir(), "killed before it staged anything"
    assert not (out / "runs" / run_id / layout.MANIFEST).exists()
    return run_id


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_a_run_killed_on_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    truth = make_landing(tmp_path, **NIGHTS)
    out = tmp_path / "out"
    inputs = _inputs(tmp_path, "2017-06-24", "2017-06-25", "2017-06-26")
    dead = _kill_while_staging(inputs, out)

    status, err = _finish(_start(inputs, out))  # no --wait_for_lease: its process is gone
    assert status == 0, err
    assert f"took over the writer lease on {out} from batch run {dead}" in err
    assert "its process is gone" in err
    assert not (out / layout.STAGING / dead).exists()
    assert json.loads((out / "runs" / dead / layout.LEASE_REVOKED).read_text())["run_id"] == dead
    _assert_consistent(out, truth)


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_a_run_that_died_elsewhere_is_taken_over_once_its_lease_expires(tmp_path: Path) -> None:
    truth = make_landing(tmp_path, **NIGHTS)
    out = tmp_path / "out"
    inputs = _inputs(tmp_path, "2017-06-24", "2017-06-25", "2017-06-26")
    dead = _kill_while_staging(inputs, out, "--lease_ttl_seconds", "12")
    # As if it had run on another machine: this one cannot tell whether it is alive.
    path = out / layout.LEASE_DIR / layout.LEASE_FILE
    stored = json.loads(path.read_text())
    stored["owner"] = {"host": "another-host", "pid": stored["owner"]["pid"], "machine": ""}
    path.write_text(json.dumps(stored))
    expires = datetime.fromisoformat(stored["expires_at"]).timestamp()

    status, err = _finish(_start(inputs, out))
    assert status == batch.EXIT_OUTPUT_BUSY, err
    assert f"held by batch run {dead} (host another-host" in err.strip().splitlines()[-1]

    status, err = _finish(_start(inputs, out, "--wait_for_lease", "120"))
    assert status == 0, err
    assert time.time() >= expires
    assert "waiting for the writer lease" in err
    assert "its heartbeat expired" in err
    assert not (out / layout.STAGING / dead).exists()
    assert (out / "runs" / dead / layout.LEASE_REVOKED).exists()
    _assert_consistent(out, truth)


# --- the nightly batch and the streaming pipeline on one root --------------------------------


def _stream_stats(out: Path) -> dict[str, int]:
    files = [json.loads(path.read_text()) for path in out.glob("runs/*/stats-*.json")]
    return st.totals_by_kind(st.merge(files))


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_a_batch_run_and_the_streaming_pipeline_on_one_root_never_write_an_event_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = make_landing(tmp_path, **{**NIGHTS, "days": 1, "late_rate": 0.0})
    lines = publishable_lines(tmp_path / "landing")
    out = tmp_path / "out"
    with pubsub_emulator() as host:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        from google.cloud import pubsub_v1

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = publisher.topic_path("demo-project", "payments")
        subscription = subscriber.subscription_path("demo-project", "payments-ingest")
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        streaming = subprocess.Popen(
            [
                *(sys.executable, "-m", "pipelines.streaming", "--output", str(out)),
                *("--input_subscription", subscription, "--write_every_seconds", "2"),
            ],
            cwd=PROJECT_ROOT,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The same events reach both: the batch run's landing files, and Pub/Sub, half
            # before the batch run starts and half while it runs.
            half = len(lines) // 2
            for future in [publisher.publish(topic, line) for line in lines[:half]]:
                future.result()
            deadline = time.monotonic() + 120
            while not list(out.glob("payments/*/*/*.parquet")) and time.monotonic() < deadline:
                time.sleep(0.2)  # streaming has published a pane
            night = _start(
                _inputs(tmp_path, "2017-06-24"), out, "--wait_for_lease", "120", prelude=HOLD_LONGER
            )
            for future in [publisher.publish(topic, line) for line in lines[half:]]:
                future.result()
            status, err = _finish(night)
            assert status == 0, err
            deadline = time.monotonic() + 180
            while not balanced(_stream_stats(out), len(lines)):
                assert streaming.poll() is None, "the streaming pipeline exited on its own"
                assert time.monotonic() < deadline, _stream_stats(out)
                time.sleep(1)
        finally:
            streaming.send_signal(signal.SIGTERM)
            streaming.communicate(timeout=60)
    table = payments(out)
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows  # none twice
    assert table.num_rows == truth["valid_events"]  # and none missing
    streamed = _stream_stats(out)
    [night_manifest] = manifests(out)
    written_by_batch = night_manifest["counts"]["accepted"]
    assert streamed["accepted"] + written_by_batch == truth["valid_events"]
    assert night_manifest["reconciles"]
    # The night compacted the partitions it wrote to, streaming panes included, while the
    # streaming pipeline went on writing: still none twice and none missing (above).
    compactions = manifests(out, "compact")
    if not compactions:
        # On a slow machine streaming can rewrite its open file in every partition the night
        # chose before the night's compaction commits: it then leaves them to the next one, and
        # says so (seen once in CI, 2026-12-03). Anything else that stops it is a failure.
        assert "changed since it was chosen: not compacted this time" in err, err[-4000:]
        return
    [compaction] = compactions
    assert any(layout.run_of_pane_part(Path(f).name) for f in compaction["files_removed"])
