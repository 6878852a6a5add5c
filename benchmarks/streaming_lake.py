"""Files per partition and DuckDB query time of a streaming-fed lake, before and after
compaction (issue #12).

    .venv/bin/python benchmarks/streaming_lake.py --days 30          # ~the 30-day lake
    .venv/bin/python benchmarks/streaming_lake.py --days 1 --no-record

1. Generates `--days` days at the published H1 2017 rate (`tools.generate`, 2% late events).
2. Feeds them, day by day, to the streaming pane writer's own code path
   (`transforms.streaming.sinks.WritePartitionPaneFn`, deferred-ack mode as on the local
   runner) one `--pane-seconds` pane at a time, on a simulated clock: every event arrives in
   the pane of the minute it happened (a late one at a random minute of the day it is
   delivered), so a simulated day is 1,440 panes, replayed as fast as the writer goes. The
   streaming run restarts (a new run id) every `--restart-hours` of simulated time.
3. Reports files per partition, the pane writer's time per pane (before and after each
   restart), then DuckDB query times over `payments/**/*.parquet`, runs `python -m
   pipelines.compact --output ROOT`, and reports both again (and checks the query results
   did not change).

Public tools only: pyarrow, duckdb and the project's own code.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from results_table import add_rows  # noqa: E402

from schemas.catalogue import load_catalogue  # noqa: E402
from schemas.run import STREAMING, Run, new_run_id  # noqa: E402
from schemas.timekeeping import BAHRAIN  # noqa: E402
from transforms.core.blocks import RunContext, process_block  # noqa: E402
from transforms.core.columnar import ArrowBlock  # noqa: E402
from transforms.core.normalise import Normaliser  # noqa: E402
from transforms.core.privacy import Pseudonymiser  # noqa: E402
from transforms.core.rawblock import RawBlock  # noqa: E402
from transforms.dedup.table import split_by_partition  # noqa: E402
from transforms.streaming.sinks import WritePartitionPaneFn  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "lake"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADER = "| date (UTC) | machine | days | writer |"
KEY = b"benchmark-pseudonym-key-not-a-secret-0123456789"
QUERIES = {
    "daily totals": """
        select channel, event_date, status, count(*) as payments, sum(amount) as bhd
        from read_parquet('{glob}', hive_partitioning = true) group by all order by all""",
    "one day's services": """
        select service_code, count(*) as payments, sum(amount) as bhd
        from read_parquet('{glob}', hive_partitioning = true)
        where channel = 'portal' and event_date = '{day}' group by all order by all""",
}


def generate(landing: Path, start: date, days: int) -> None:
    marker = landing / "_generator_totals.json"
    config = f"{start}:{days}"
    if marker.exists() and (landing / "_config").read_text() == config:
        return
    subprocess.run(
        [
            *(sys.executable, "-m", "tools.generate", "--out", str(landing)),
            *("--profile", "h1-2017", "--start", start.isoformat(), "--days", str(days)),
            *("--late-rate", "0.02"),
        ],
        check=True,
        cwd=ROOT,
    )
    (landing / "_config").write_text(config)


def day_rows(landing: Path, day: date, ctx: RunContext) -> pa.Table:
    """Every accepted row delivered on `day` (its landing folder), with message ids."""
    lines: list[bytes] = []
    for path in sorted((landing / day.isoformat()).glob("*.jsonl")):
        lines.extend(line for line in path.read_bytes().splitlines() if line.strip())
    ids = [f"{day}-{n}" for n in range(len(lines))]
    result = process_block(RawBlock("projects/p/subscriptions/s", lines, message_ids=ids), ctx)
    return result.accepted


def arrival_minutes(rows: pa.Table, day: date, seed: int) -> list[int]:
    """The minute of `day` each row arrives in: when it happened, or a random one if late."""
    rng = random.Random(seed)
    start = datetime.combine(day, datetime.min.time(), BAHRAIN)
    minutes = []
    for moment in rows["occurred_at"].to_pylist():
        local = moment.astimezone(BAHRAIN)
        if local.date() == day:
            minutes.append(int((local - start).total_seconds() // 60))
        else:
            minutes.append(rng.randrange(1440))
    return minutes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(args: argparse.Namespace, out: Path, landing: Path) -> dict[str, Any]:
    """Write the lake through the pane writer; per-pane wall times, split by restart."""
    clock = Clock()
    ctx = RunContext(Normaliser(Pseudonymiser(KEY), load_catalogue()), "bench", 0)
    takes_clock = "clock" in inspect.signature(WritePartitionPaneFn).parameters
    pane_times: list[float] = []
    first_run: list[float] = []
    after_restart: list[float] = []
    writer: WritePartitionPaneFn | None = None
    run_started = -1e18
    restarts = 0
    panes_per_day = 86_400 // args.pane_seconds
    for offset in range(args.days):
        day = args.start + timedelta(days=offset)
        rows = day_rows(landing, day, ctx)
        minutes = pa.array(arrival_minutes(rows, day, offset))
        day_start = datetime.combine(day, datetime.min.time(), BAHRAIN).timestamp()
        pane_of = pc.divide(pc.multiply(minutes, 60), args.pane_seconds)
        for pane in range(panes_per_day):
            clock.now = day_start + (pane + 1) * args.pane_seconds
            if writer is None or clock.now - run_started >= args.restart_hours * 3600:
                started = datetime.fromtimestamp(clock.now, timezone.utc)
                run = Run(new_run_id(started), STREAMING, str(out), started, "", ())
                kwargs: dict[str, Any] = {"clock": clock} if takes_clock else {}
                writer = WritePartitionPaneFn(run, settle=True, **kwargs)
                run_started, restarts = clock.now, restarts + 1
            these = rows.filter(pc.equal(pane_of, pane))
            if not these.num_rows:
                continue
            began = time.perf_counter()
            for key, part in split_by_partition(these):
                for _ in writer.process((key, [ArrowBlock.of(part)])):
                    pass
            took = time.perf_counter() - began
            pane_times.append(took)
            (after_restart if restarts > 1 else first_run).append(took)
        print(f"{day}: {len(pane_times)} panes so far", file=sys.stderr, flush=True)
    return {
        "panes": len(pane_times),
        "restarts": restarts - 1,
        "pane_ms": _ms(pane_times),
        "pane_ms_first_run": _ms(first_run),
        "pane_ms_after_restart": _ms(after_restart),
        "feed_seconds": sum(pane_times),
    }


def _ms(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    ordered = sorted(times)
    return {
        "median": round(statistics.median(ordered) * 1000, 1),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


def file_counts(out: Path) -> dict[str, Any]:
    per_partition: dict[str, int] = defaultdict(int)
    total_bytes = 0
    for path in (out / "payments").rglob("*.parquet"):
        per_partition[f"{path.parent.parent.name}/{path.parent.name}"] += 1
        total_bytes += path.stat().st_size
    counts = sorted(per_partition.values())
    portal = [n for p, n in per_partition.items() if p.startswith("channel=portal")]
    return {
        "files": sum(counts),
        "partitions": len(counts),
        "max_per_partition": max(counts, default=0),
        "median_per_partition": statistics.median(counts) if counts else 0,
        "median_per_portal_partition": statistics.median(portal) if portal else 0,
        "mb": round(total_bytes / 1e6, 2),
    }


def query_times(out: Path, day: date, repeats: int) -> tuple[dict[str, float], list[Any]]:
    """Median ms of each query (a fresh connection each time: no cached metadata)."""
    glob = f"{out}/payments/**/*.parquet"
    medians: dict[str, float] = {}
    answers: list[Any] = []
    for name, sql in QUERIES.items():
        text = sql.format(glob=glob, day=day.isoformat())
        times = []
        for _ in range(repeats):
            connection = duckdb.connect()
            connection.execute("set threads = 2")
            began = time.perf_counter()
            answer = connection.execute(text).fetchall()
            times.append(time.perf_counter() - began)
            connection.close()
        medians[name] = round(statistics.median(times) * 1000, 1)
        answers.append(answer)
    return medians, answers


def compact(out: Path) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipelines.compact", "--output", str(out)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def _commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2017, 6, 1))
    parser.add_argument("--pane-seconds", type=int, default=60)
    parser.add_argument("--restart-hours", type=float, default=24.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    landing, out = WORK / "landing", WORK / f"out-{args.days}d"
    generate(landing, args.start, args.days)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    fed = feed(args, out, landing)
    before = file_counts(out)
    probe = args.start + timedelta(days=args.days // 2)
    q_before, answers_before = query_times(out, probe, args.repeats)
    compact_seconds = compact(out)
    after = file_counts(out)
    q_after, answers_after = query_times(out, probe, args.repeats)
    same = answers_before == answers_after
    report = {
        "feed": fed,
        "before": before,
        "after": after,
        "query_ms_before": q_before,
        "query_ms_after": q_after,
        "compact_seconds": round(compact_seconds, 1),
        "same_answers": same,
    }
    print(json.dumps(report, indent=1))
    (WORK / f"last-{args.days}d.json").write_text(json.dumps(report, indent=1))
    if not args.no_record:
        rolling = "clock" in inspect.signature(WritePartitionPaneFn).parameters
        writer = "rolling" if rolling else "per pane"
        q = " / ".join(f"{q_before[k]:.0f} → {q_after[k]:.0f}" for k in QUERIES)
        row = (
            f"| {datetime.now(timezone.utc):%Y-%m-%d %H:%M} | 2 cores, shared | {args.days} | "
            f"{writer} | {fed['panes']:,} | {fed['restarts']} | "
            f"{fed['pane_ms'].get('median', 0)} / {fed['pane_ms'].get('p95', 0)} | "
            f"{fed['pane_ms_first_run'].get('median', '-')} / "
            f"{fed['pane_ms_after_restart'].get('median', '-')} | "
            f"{before['files']:,} ({before['max_per_partition']}) | "
            f"{after['files']:,} ({after['max_per_partition']}) | {q} | "
            f"{compact_seconds:.1f} | {'yes' if same else 'NO'} | {_commit()} | {args.note} |"
        )
        add_rows(RESULTS, HEADER, [row])
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
