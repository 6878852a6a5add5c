"""Sustained throughput, publish-to-file latency and memory of the streaming pipeline, on the
local streaming DirectRunner reading the real Pub/Sub emulator.

    .venv/bin/python benchmarks/streaming.py                      # 2,500 events/s for 10 min
    .venv/bin/python benchmarks/streaming.py --rate 0 --events 200000   # drain a backlog

1. Starts `gcloud beta emulators pubsub` on a free port, creates a topic and a subscription.
2. Starts `python -m pipelines.streaming` as a child process (default cadence: a file every
   10 s), and samples the RSS of its whole process tree every 0.5 s from /proc.
3. Publishes payments happening *now* (the three contract shapes, every id unique, 1% bad
   lines, 1% published twice) at `--rate` events/s for `--seconds`, remembering when each
   message id was published. `--rate 0` publishes `--events` up front: a backlog to drain.
4. Watches the output: each new Parquet file's rows are matched to their message ids, so
   latency = when the file appeared - when its event was published (median, p95).
5. Stops when everything published is accounted for in the pipeline's committed stats (or at
   a deadline), prints a summary and appends a row to benchmarks/RESULTS.md.

Public tools only: the standard library, google-cloud-pubsub and pyarrow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from results_table import add_rows

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "streaming"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PROJECT = "bench-project"
KEY = "benchmark-pseudonym-key-not-a-secret-0123456789"
TARGET_RATE = 2000.0  # events/s sustained (issue #3)
BAHRAIN = timezone(timedelta(hours=3))


def payment(n: int, now: datetime) -> bytes:
    """A valid payment happening now, in the shape of one of the three channels (most are
    portal payments, as in the published volumes); ids are unique per n."""
    if n % 10 < 8:
        paid_at = now.astimezone(BAHRAIN).isoformat(timespec="seconds")
        event = {
            "channel": "portal",
            "txn_id": f"PTL-{now.year}-{n:09d}",
            "service": {"code": "GDT-FINE", "entity": "GDT"},
            "amount_fils": 12500 + n % 7 * 1000,
            "currency": "BHD",
            "status": "PAID",
            "paid_at": paid_at,
            "payer": {"cpr": "850101234"},
            "method": "DEBIT_CARD",
            "gateway_ref": f"BNF{n:07d}",
        }
    elif n % 10 == 8:
        event = {
            "channel": "mobile_app",
            "event_id": f"00000000-0000-4000-8000-{n:012d}",
            "app": {"id": "traffic", "version": "4.2.1", "os": "ios"},
            "service_code": "GDT-FINE",
            "payment": {
                "amount": "12.500",
                "currency": "BHD",
                "method": "APPLE_PAY",
                "outcome": "success",
            },
            "ts": int(now.timestamp() * 1000),
            "user": {"cpr": "850101234"},
        }
    else:
        event = {
            "channel": "kiosk",
            "kiosk_id": "KSK-017",
            "seq": n,
            "site": "Isa Town",
            "service": "VEH-REG-RENEW",
            "amount": "25.000",
            "local_time": now.astimezone(BAHRAIN).strftime("%Y-%m-%d %H:%M:%S"),
            "result": "OK",
            "card": "************1234",
        }
    return json.dumps(event).encode()


@dataclass
class Run:
    published: int = 0
    publish_times: dict[str, float] = field(default_factory=dict)  # message id -> time
    file_latencies: list[float] = field(default_factory=list)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (t, KiB)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("gcloud") is None:
        sys.exit("gcloud (with its Pub/Sub emulator) is needed: see ../shared/beam-notes.md")
    host = f"127.0.0.1:{_free_port()}"
    process = subprocess.Popen(
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={host}"],
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", int(host.split(":")[1])), timeout=1).close()
            return process, host
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    sys.exit("the Pub/Sub emulator did not come up within 60 s")


def _tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def processed(out: Path) -> dict[str, int]:
    """Sums of the pipeline's committed stats files by kind (read, accepted, ...)."""
    totals: dict[str, int] = {}
    for path in out.glob("runs/*/stats-*.json"):
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key, value in stats.items():
            kind = key.split(":")[0]
            totals[kind] = totals.get(kind, 0) + value
    return totals


def publish(host: str, topic: str, run: Run, rate: float, count: int) -> None:
    """Publish `count` events at `rate` per second (0: as fast as possible)."""
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    started = time.monotonic()
    pending: list[tuple[Any, float]] = []
    for n in range(count):
        now = datetime.now(timezone.utc)
        data = b"{not json" if n % 100 == 99 else payment(n, now)
        copies = 2 if n % 100 == 42 else 1
        for _ in range(copies):
            pending.append((publisher.publish(topic, data), time.time()))
        if len(pending) >= 500:
            _settle(pending, run)
        if rate:
            delay = (n + 1) / rate - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
    _settle(pending, run)


def _settle(pending: list[tuple[Any, float]], run: Run) -> None:
    for future, at in pending:
        message_id = future.result()
        with run.lock:
            run.publish_times[message_id] = at
            run.published += 1
    pending.clear()


def watch_files(out: Path, run: Run, stop: threading.Event) -> None:
    """Latency of every row: when it appeared in a file minus when its message was published.
    A streaming run rewrites its open file of a partition at each pane (the rows of the pane
    added), so a file is read again whenever its version changes, and only the rows not seen
    before are timed."""
    import pyarrow.parquet as pq

    versions: dict[Path, tuple[int, int]] = {}
    counted: set[str] = set()
    while not stop.is_set():
        for path in out.glob("payments/*/*/*.parquet"):
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            version = (status.st_size, status.st_mtime_ns)
            if versions.get(path) == version:
                continue
            appeared = time.time()
            versions[path] = version
            try:
                ids = pq.read_table(path, columns=["source_message_id"])["source_message_id"]
            except (FileNotFoundError, OSError):
                continue
            with run.lock:
                for message_id in ids.to_pylist():
                    published = run.publish_times.get(message_id)
                    if published is not None and message_id not in counted:
                        counted.add(message_id)
                        run.file_latencies.append(appeared - published)
        stop.wait(0.25)


def sample_rss(pid: int, run: Run, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        run.rss_samples.append((time.monotonic() - started, _tree_rss_kib(pid)))
        stop.wait(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/streaming.py", description=__doc__)
    parser.add_argument("--rate", type=float, default=2500.0, help="events/s; 0: a backlog")
    parser.add_argument("--seconds", type=int, default=600, help="publishing time at --rate")
    parser.add_argument("--events", type=int, default=200_000, help="backlog size (--rate 0)")
    parser.add_argument("--every", type=int, default=10, help="pipeline --write_every_seconds")
    parser.add_argument(
        "--dedup-horizon",
        type=int,
        default=None,
        help="pipeline --dedup_horizon_seconds (default: the pipeline's, 24 h); shorter than "
        "the run shows memory level off once ids start to expire",
    )
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--note", default="", help="added to the notes column")
    args = parser.parse_args(argv)
    count = args.events if args.rate == 0 else int(args.rate * args.seconds)

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    out = WORK / "out"
    emulator, host = start_emulator()
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from google.cloud import pubsub_v1

    topic = f"projects/{PROJECT}/topics/payments"
    subscription = f"projects/{PROJECT}/subscriptions/payments-ingest"
    pubsub_v1.PublisherClient().create_topic(name=topic)
    pubsub_v1.SubscriberClient().create_subscription(name=subscription, topic=topic)

    run = Run()
    if args.rate == 0:  # the backlog is there before the pipeline starts
        publish(host, topic, run, 0, count)
    log = (WORK / "pipeline.log").open("wb")
    env = {**os.environ, "PAYMENTS_PSEUDONYM_KEY": KEY, "PUBSUB_EMULATOR_HOST": host}
    pipeline = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.streaming",
            "--input_subscription",
            subscription,
            "--output",
            str(out),
            "--write_every_seconds",
            str(args.every),
            *(["--dedup_horizon_seconds", str(args.dedup_horizon)] if args.dedup_horizon else []),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stop = threading.Event()
    threads = [
        threading.Thread(target=watch_files, args=(out, run, stop), daemon=True),
        threading.Thread(target=sample_rss, args=(pipeline.pid, run, stop), daemon=True),
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    progress: list[tuple[float, int]] = []  # (seconds since start, events read)
    try:
        if args.rate:
            publisher = threading.Thread(
                target=publish, args=(host, topic, run, args.rate, count), daemon=True
            )
            publisher.start()
        deadline = started + (args.seconds if args.rate else 0) + 600
        while time.monotonic() < deadline:
            counts = processed(out)
            progress.append((time.monotonic() - started, counts.get("read", 0)))
            if pipeline.poll() is not None:
                print("the pipeline exited on its own; see", WORK / "pipeline.log")
                break
            outcomes = sum(counts.get(k, 0) for k in ("accepted", "rejected", "duplicates"))
            with run.lock:
                published = run.published
            done = args.rate == 0 or not publisher.is_alive()
            if done and counts.get("read", 0) == published == outcomes:
                break
            time.sleep(1)
    finally:
        stop.set()
        pipeline.send_signal(signal.SIGTERM)
        try:
            pipeline.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pipeline.kill()
        os.killpg(emulator.pid, signal.SIGTERM)
        log.close()

    counts = processed(out)
    summary = summarise(args, run, counts, progress)
    print(json.dumps(summary, indent=1))
    if not args.no_record:
        record(summary, args.note)
    return 0 if summary["balanced"] else 1


def summarise(
    args: argparse.Namespace, run: Run, counts: dict[str, int], progress: list[tuple[float, int]]
) -> dict[str, Any]:
    """Throughput over the steady part (from the first to the last pane that read events),
    latency percentiles, and memory early vs late in the run."""
    moving = [(t, n) for t, n in progress if n > 0]
    if len(moving) >= 2:
        (t0, n0), (t1, n1) = moving[0], moving[-1]
        rate = (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")
    else:
        rate = float("nan")
    rss = [kib for _, kib in run.rss_samples]
    minute = [kib for t, kib in run.rss_samples if 50 <= t <= 70] or rss[:1]
    outcomes = sum(counts.get(k, 0) for k in ("accepted", "rejected", "duplicates"))
    return {
        "mode": "backlog" if args.rate == 0 else f"{args.rate:.0f} events/s offered",
        "published": run.published,
        "read": counts.get("read", 0),
        "accepted": counts.get("accepted", 0),
        "rejected": counts.get("rejected", 0),
        "duplicates": counts.get("duplicates", 0),
        "balanced": counts.get("read", 0) == run.published == outcomes,
        "events_per_s": round(rate, 1),
        "latency_median_s": round(statistics.median(run.file_latencies), 1)
        if run.file_latencies
        else None,
        "latency_p95_s": round(percentile(run.file_latencies, 0.95), 1),
        "rss_peak_mb": round(max(rss) * 1024 / 1e6) if rss else None,
        "rss_at_1_min_mb": round(statistics.median(minute) * 1024 / 1e6) if minute else None,
        "rss_at_end_mb": round(rss[-1] * 1024 / 1e6) if rss else None,
        "write_every_seconds": args.every,
        "dedup_horizon_seconds": args.dedup_horizon or 24 * 3600,
        "duration_s": round(progress[-1][0]) if progress else 0,
    }


def record(summary: dict[str, Any], note: str) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    verdict = "target met" if summary["events_per_s"] >= TARGET_RATE else "target NOT met"
    row = (
        f"| {when} | {summary['mode']} | {summary['published']:,} | {summary['events_per_s']:,} "
        f"| {summary['latency_median_s']} | {summary['latency_p95_s']} "
        f"| {summary['rss_at_1_min_mb']} / {summary['rss_at_end_mb']} / {summary['rss_peak_mb']} "
        f"| {summary['write_every_seconds']} | {commit} | {verdict} (>= {TARGET_RATE:,.0f}/s); "
        f"balanced: {summary['balanced']}; {summary['duration_s']} s; dedup horizon "
        f"{summary['dedup_horizon_seconds']:,} s; {note} |\n"
    )
    add_rows(RESULTS, "| date (UTC) | mode |", [row])


if __name__ == "__main__":
    sys.exit(main())
