"""Throughput and peak memory of the batch pipeline against a DuckDB baseline doing the same job.

    .venv/bin/python benchmarks/run.py                      # 1M events, 3 repeats, many files
    .venv/bin/python benchmarks/run.py --input-kind both --repeats 3

1. Generates ~`--events` raw events once into benchmarks/work/landing (reused while the
   generator config matches) and concatenates them into one big benchmarks/work/all.jsonl.
2. Runs `python -m pipelines.batch` and `benchmarks/duckdb_baseline.py` as child processes,
   alternately, `--repeats` times per input, each into a fresh output directory, and measures
   wall time and peak memory: the larger of the child's ru_maxrss (os.wait4) and the highest
   sum of RSS over its whole process tree, sampled every 50 ms from /proc (the pipeline runs
   two local worker processes by default).
3. Prints a table and appends one row per input to benchmarks/RESULTS.md.

Only the standard library is used here; the baseline uses duckdb. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from results_table import add_rows

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
WORK = BENCH / "work"
LOGS = WORK / "logs"
RESULTS = BENCH / "RESULTS.md"
TOTALS_FILE = "_generator_totals.json"

# The h1-2017 profile writes this many lines at --scale 1.0 (no defects); the defect rates
# below add lines on top, so scale = events / (LINES_AT_SCALE_1 * (1 + extra rates)).
LINES_AT_SCALE_1 = 490_470
DUPLICATE_RATE = 0.005
LATE_RATE = 0.02
PROFILE = "h1-2017"
BENCHMARK_KEY = "benchmark-pseudonym-key-not-a-secret-0123456789"
FLOOR_RATIO = 0.6  # pipeline events/s >= 0.6 x DuckDB events/s (issue #11; #2 asked 0.25)
FLOOR_RSS_MB = 1500.0  # pipeline peak RSS <= 1.5 GB (MB = 10^6 bytes)

RESULTS_HEADER = """\
# Benchmark results

Appended by `benchmarks/run.py` (see `benchmarks/README.md`); one row per input per run.

- **events**: lines in the input (valid events, ~0.5% exact redeliveries, invalid lines: 0.1%
  of every kind until issue #11, 1% of every kind but `huge_line` since); the same input is
  given to the pipeline and to the DuckDB baseline.
- **input**: `files` = the generator's landing folder, one file per channel per Bahrain day
  (543 files of ~0.6 MB); `single` = the same lines concatenated into one ~333 MB file, so the
  pipeline reads it in parallel byte ranges (`--range_bytes`, 64 MiB).
- **pipeline ev/s**: events / median wall time of `python -m pipelines.batch` as a whole
  process (interpreter start, Beam graph, read, validate, dedup, Parquet, aggregates, commit),
  on the local FnApiRunner.
- **DuckDB ev/s**: the same for `benchmarks/duckdb_baseline.py` (DuckDB, 2 threads): parse,
  validate, normalise, pseudonymise, dedup by event_id, Hive-partitioned zstd Parquet,
  rejected lines, two aggregate tables.
- **RSS MB**: the highest peak resident set size over the repeats (ru_maxrss of the child via
  `os.wait4`), in MB of 10^6 bytes.
- **ratio**: pipeline ev/s ÷ DuckDB ev/s.
- **Floor**: pipeline ≥ 0.6× DuckDB events/s (issue #11; issue #2 asked 0.25×) **and**
  pipeline peak RSS ≤ 1.5 GB. The notes say whether a row meets it.
- **commit**: `git rev-parse --short HEAD`, `+dirty` when tracked files had uncommitted changes
  (others edit the tree while benchmarks run, so the code measured may differ from the commit);
  `a→b` when it changed between the start and the end of the benchmark.

"""
COLUMNS = (
    "date (UTC)", "machine", "events", "input", "pipeline ev/s", "pipeline RSS MB",
    "DuckDB ev/s", "DuckDB RSS MB", "ratio", "commit", "notes",
)  # fmt: skip
TABLE_HEAD = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|\n"
BATCH_HEADER = "| date (UTC) | machine |"


@dataclass(frozen=True)
class Mix:
    """Which invalid lines an input holds, and the folder it is generated in (landing files
    and their concatenation)."""

    name: str
    invalid_rate: float
    invalid_kinds: str
    work: Path
    description: str

    @property
    def landing(self) -> Path:
        return self.work / "landing"

    @property
    def single(self) -> Path:
        return self.work / "all.jsonl"

    @property
    def single_stamp(self) -> Path:
        return self.work / "all.jsonl.source.json"


# The benchmark's input (issue #11): 1% invalid lines of the realistic kinds, every kind the
# generator makes but `huge_line` (> 1 MiB each), which at 1% would be most of the bytes.
REALISTIC = Mix("", 0.01, "realistic", WORK, "--invalid-rate 0.01 of the realistic kinds")
# Huge lines as their own small row (--huge-lines): 0.1% of the lines, ~1 MiB each.
HUGE = Mix(
    "huge lines",
    0.001,
    "huge_line",
    WORK / "huge",
    "--invalid-rate 0.001 of huge_line alone (> 1 MiB a line)",
)
HUGE_EVENTS = 60_000


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    wall_s: float
    max_rss_kib: int
    cpu_s: float
    exit_code: int
    load_before: float
    summary: dict[str, Any]
    log: str

    @property
    def rss_mb(self) -> float:
        """Peak RSS in MB (10^6 bytes)."""
        return self.max_rss_kib * 1024 / 1e6


@dataclass
class Result:
    """All repeats of both sides on one input."""

    input_kind: str
    input_arg: str
    events: int
    mix: Mix = REALISTIC
    pipeline: list[Run] = field(default_factory=list)
    duckdb: list[Run] = field(default_factory=list)

    @staticmethod
    def rate(events: int, runs: list[Run]) -> float:
        """Events per second at the median wall time."""
        return events / statistics.median(r.wall_s for r in runs)

    @property
    def input_label(self) -> str:
        """The input column of RESULTS.md: the layout, and the mix when it is not the usual."""
        return f"{self.input_kind}, {self.mix.name}" if self.mix.name else self.input_kind

    @property
    def pipeline_rate(self) -> float:
        """Pipeline events/s."""
        return self.rate(self.events, self.pipeline)

    @property
    def duckdb_rate(self) -> float:
        """DuckDB events/s."""
        return self.rate(self.events, self.duckdb)

    @property
    def ratio(self) -> float:
        """Pipeline events/s over DuckDB events/s."""
        return self.pipeline_rate / self.duckdb_rate

    @property
    def pipeline_rss_mb(self) -> float:
        """Highest pipeline peak RSS over the repeats."""
        return max(r.rss_mb for r in self.pipeline)

    @property
    def duckdb_rss_mb(self) -> float:
        """Highest DuckDB peak RSS over the repeats."""
        return max(r.rss_mb for r in self.duckdb)

    def floor_verdict(self) -> str:
        """Whether this input meets issue #2's floor, and if not, why."""
        misses = []
        if self.ratio < FLOOR_RATIO:
            misses.append(f"ratio {self.ratio:.2f} < {FLOOR_RATIO}")
        if self.pipeline_rss_mb > FLOOR_RSS_MB:
            misses.append(f"RSS {self.pipeline_rss_mb:,.0f} MB > {FLOOR_RSS_MB:,.0f} MB")
        return "floor met" if not misses else "floor NOT met (" + ", ".join(misses) + ")"


# --------------------------------------------------------------------------- input data


def scale_for(events: int, mix: Mix = REALISTIC) -> float:
    """The generator --scale that writes about `events` lines with the defect rates above."""
    return round(events / (LINES_AT_SCALE_1 * (1 + mix.invalid_rate + DUPLICATE_RATE)), 4)


def wanted_config(events: int, mix: Mix = REALISTIC) -> dict[str, Any]:
    """The generator config fields (as in `_generator_totals.json`) a reusable landing has."""
    return {
        "start": "2017-01-01",
        "days": 181,
        "seed": 2017,
        "scale": scale_for(events, mix),
        "invalid_rate": mix.invalid_rate,
        "duplicate_rate": DUPLICATE_RATE,
        "conflict_rate": 0,
        "late_rate": LATE_RATE,
        "gzip": False,
    }


def read_totals(mix: Mix = REALISTIC) -> dict[str, Any] | None:
    """The generator's totals file in the landing folder, if there is one."""
    try:
        with open(mix.landing / TOTALS_FILE, encoding="utf-8") as handle:
            totals: dict[str, Any] = json.load(handle)
    except (OSError, ValueError):
        return None
    return totals


def config_matches(
    totals: dict[str, Any] | None, wanted: dict[str, Any], mix: Mix = REALISTIC
) -> bool:
    """True when the landing folder was generated with `wanted` and all its files are there."""
    if totals is None:
        return False
    config = totals.get("config", {})
    if any(config.get(name) != value for name, value in wanted.items()):
        return False
    if ("huge_line" in config.get("invalid_kinds", ["huge_line"])) != (mix is HUGE):
        return False
    return all((mix.landing / rel).is_file() for rel in totals.get("files", {}))


def generate(events: int, python: str, mix: Mix = REALISTIC) -> dict[str, Any]:
    """Generate the landing folder unless one with the same config is there; return totals."""
    wanted = wanted_config(events, mix)
    totals = read_totals(mix)
    if config_matches(totals, wanted, mix):
        assert totals is not None
        print(f"reusing {mix.landing.relative_to(ROOT)}: {totals['lines_written']:,} lines")
        return totals
    shutil.rmtree(mix.landing, ignore_errors=True)
    cmd = [
        python, "-m", "tools.generate", "--out", str(mix.landing.relative_to(ROOT)),
        "--profile", PROFILE, "--scale", str(wanted["scale"]),
        "--invalid-rate", str(mix.invalid_rate), "--invalid-kinds", mix.invalid_kinds,
        "--duplicate-rate", str(DUPLICATE_RATE),
        "--late-rate", str(LATE_RATE),
    ]  # fmt: skip
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    totals = read_totals(mix)
    if not config_matches(totals, wanted, mix):
        raise SystemExit(f"error: the generator did not write the expected config {wanted}")
    assert totals is not None
    return totals


def landing_files(totals: dict[str, Any], mix: Mix = REALISTIC) -> list[Path]:
    """The generated .jsonl files in path order (the order the pipeline reads them in)."""
    return [mix.landing / rel for rel in sorted(totals["files"])]


def build_single(totals: dict[str, Any], mix: Mix = REALISTIC) -> None:
    """Concatenate the landing files into one big file, unless it is already up to date."""
    files = landing_files(totals, mix)
    single, single_stamp = mix.single, mix.single_stamp
    stamp = {
        "config": totals["config"],
        "lines": totals["lines_written"],
        "bytes": sum(f.stat().st_size for f in files),
    }
    try:
        with open(single_stamp, encoding="utf-8") as handle:
            current = json.load(handle)
    except (OSError, ValueError):
        current = None
    if current == stamp and single.is_file() and single.stat().st_size == stamp["bytes"]:
        print(f"reusing {single.relative_to(ROOT)}: {stamp['bytes'] / 1e6:,.1f} MB")
        return
    tmp = single.with_suffix(".tmp")
    lines = 0
    with open(tmp, "wb") as out:
        for path in files:
            with open(path, "rb") as src:
                data = src.read()
            if data and not data.endswith(b"\n"):
                data += b"\n"
            lines += data.count(b"\n")
            out.write(data)
    if lines != totals["lines_written"]:
        raise SystemExit(f"error: {tmp} has {lines:,} lines, expected {totals['lines_written']:,}")
    os.replace(tmp, single)
    stamp["bytes"] = single.stat().st_size
    with open(single_stamp, "w", encoding="utf-8") as handle:
        json.dump(stamp, handle, indent=2, sort_keys=True)
    print(f"wrote {single.relative_to(ROOT)}: {lines:,} lines, {stamp['bytes'] / 1e6:,.1f} MB")


def input_arg(kind: str, mix: Mix = REALISTIC) -> str:
    """The --input value (relative to the repo root) for an input kind."""
    if kind == "files":
        return str(mix.landing.relative_to(ROOT) / "*" / "*.jsonl")
    return str(mix.single.relative_to(ROOT))


# --------------------------------------------------------------------------- measuring


def _tree_rss_kib(pid: int) -> int:
    """Current RSS of a process and all its descendants, in KiB, from /proc (0 once gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
                0,
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def measure(cmd: list[str], env: dict[str, str], log_path: Path) -> tuple[float, int, float, int]:
    """Run `cmd` from the repo root, output to `log_path`: (wall s, peak RSS KiB, CPU s, exit).

    Peak RSS is the larger of the child's ru_maxrss (one process) and the highest sum over
    the child's whole process tree sampled every 50 ms: the pipeline runs worker processes.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak_tree = 0
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_tree = max(peak_tree, _tree_rss_kib(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # already reaped: keep Popen from waiting again
    return wall, max(usage.ru_maxrss, peak_tree), usage.ru_utime + usage.ru_stime, code


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


_LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) \w+ ([\w.]+): ")
_CHECKS = re.compile(r"inputs listed and fingerprinted in ([\d.]+) s, writer lease in ([\d.]+) s")


def run_checks(log_path: Path) -> dict[str, float]:
    """Seconds the launcher spent on its safety checks before the run (issue #9): listing and
    fingerprinting the inputs, taking the writer lease. Empty when the log has no such line."""
    match = _CHECKS.search(log_path.read_text(encoding="utf-8", errors="replace"))
    return {"inputs": float(match[1]), "lease": float(match[2])} if match else {}


def pipeline_phases(log_path: Path, started_at: float) -> dict[str, float]:
    """Best effort: seconds after process start of the pipeline's first, last read/validate and
    commit log lines (local-time stamps of its logging format). Empty when the log differs."""
    phases: dict[str, float] = {}
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LOG_TIME.match(line)
        if not match:
            continue
        moment = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() - started_at
        logger = match[2]
        if logger == "pipelines.batch":
            phases.setdefault("graph_start", moment)
        elif logger in ("transforms.batch.read", "transforms.ingest"):
            phases["last_read_or_validate"] = moment
        elif logger == "transforms.batch.commit":
            phases["commit"] = moment
    return {name: round(value, 1) for name, value in phases.items()}


def run_pipeline(python: str, kind: str, arg: str, repeat: int) -> Run:
    """One timed run of the batch pipeline into a fresh output directory."""
    out = WORK / "out-beam"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PAYMENTS_PSEUDONYM_KEY": BENCHMARK_KEY}
    # Ingestion alone, as the DuckDB baseline does it: a fresh output has nothing to compact,
    # and --no_compact keeps even the look for it out of the measured time.
    cmd = [python, "-m", "pipelines.batch", "--input", arg, "--output", str(out.relative_to(ROOT))]
    cmd.append("--no_compact")
    log_path = LOGS / f"{kind}-pipeline-{repeat}.log"
    load = os.getloadavg()[0]
    wall_started = time.time()
    wall, rss, cpu, code = measure(cmd, env, log_path)
    if code not in (0, 3):
        raise SystemExit(f"error: pipeline exited {code}; {log_path}:\n{_tail(log_path)}")
    manifests = sorted(glob.glob(str(out / "runs" / "*" / "manifest.json")))
    if not manifests:
        raise SystemExit(f"error: pipeline wrote no manifest; {log_path}:\n{_tail(log_path)}")
    with open(manifests[-1], encoding="utf-8") as handle:
        manifest = json.load(handle)
    summary = {
        **manifest["counts"],
        "reconciles": manifest["reconciles"],
        "elapsed_seconds": manifest.get("elapsed_seconds"),
        "phases": pipeline_phases(log_path, wall_started),
        # The read-back of every staged file through the privacy scanner (by the workers that
        # staged them, and by the commit step for any file staged without a scan) ...
        "privacy_scan": manifest.get("privacy_scan"),
        # ... and the worker seconds of the privacy rule inside blocks.
        "privacy_screening_seconds": manifest.get("privacy_screening_seconds"),
        "checks": run_checks(log_path),
    }
    return Run(wall, rss, cpu, code, load, summary, str(log_path.relative_to(ROOT)))


def run_duckdb(python: str, kind: str, arg: str, repeat: int, threads: int) -> Run:
    """One timed run of the DuckDB baseline into a fresh output directory."""
    out = WORK / "out-duckdb"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PAYMENTS_PSEUDONYM_KEY": BENCHMARK_KEY}
    cmd = [
        python, str((BENCH / "duckdb_baseline.py").relative_to(ROOT)), "--input", arg,
        "--output", str(out.relative_to(ROOT)), "--threads", str(threads),
    ]  # fmt: skip
    log_path = LOGS / f"{kind}-duckdb-{repeat}.log"
    load = os.getloadavg()[0]
    wall, rss, cpu, code = measure(cmd, env, log_path)
    if code != 0:
        raise SystemExit(f"error: DuckDB baseline exited {code}; {log_path}:\n{_tail(log_path)}")
    summary: dict[str, Any] = {}
    for line in reversed(log_path.read_text(encoding="utf-8").splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    return Run(wall, rss, cpu, code, load, summary, str(log_path.relative_to(ROOT)))


def privacy_share(run: Run) -> float:
    """The privacy rule's share of the pipeline's CPU time: screening and redaction inside
    blocks plus the scan of every staged file, over user + system seconds of the whole run.
    On a CPU-bound run that is the throughput the rule costs."""
    scan = run.summary.get("privacy_scan") or {}
    screening = run.summary.get("privacy_screening_seconds") or 0.0
    return (float(scan.get("seconds", 0.0)) + float(screening)) / run.cpu_s


def _describe(side: str, run: Run, events: int) -> str:
    counts = run.summary
    text = (
        f"  {side:<8} {run.wall_s:7.1f} s  {events / run.wall_s:>9,.0f} ev/s  "
        f"{run.rss_mb:7,.0f} MB  CPU {run.cpu_s / run.wall_s:4.0%}  "
        f"accepted {counts.get('accepted', 0):,} rejected {counts.get('rejected', 0):,} "
        f"dups {counts.get('duplicates', 0):,}  load {run.load_before:.2f}"
    )
    scan = counts.get("privacy_scan")
    if scan:
        screening = counts.get("privacy_screening_seconds") or 0.0
        text += (
            f"  privacy: screening {screening:.1f} s + scan {scan['seconds']:.1f} s "
            f"= {privacy_share(run):.1%} of CPU ({scan['rows']:,} rows in {scan['files']} files; "
            f"{scan.get('commit_seconds', scan['seconds']):.1f} s of the scan in the commit)"
        )
    checks = counts.get("checks")
    if checks:
        spent = checks["inputs"] + checks["lease"]
        text += (
            f"  checks: inputs {checks['inputs']:.2f} s + lease {checks['lease']:.3f} s "
            f"= {spent / run.wall_s:.1%} of wall"
        )
    if counts.get("phases"):
        text += f"  phases {counts['phases']}"
    if side == "duckdb" and counts.get("seconds"):
        text += f"  phases {counts['seconds']}"
    return text


def benchmark(
    kind: str, events: int, repeats: int, python: str, threads: int, mix: Mix = REALISTIC
) -> Result:
    """All repeats on one input, pipeline and baseline alternating (fairer under drifting load)."""
    result = Result(kind, input_arg(kind, mix), events, mix)
    print(f"\n== input {kind}: {result.input_arg} ({events:,} lines), {repeats} repeats")
    for repeat in range(1, repeats + 1):
        run = run_pipeline(python, kind, result.input_arg, repeat)
        result.pipeline.append(run)
        print(_describe("pipeline", run, events), flush=True)
        run = run_duckdb(python, kind, result.input_arg, repeat, threads)
        result.duckdb.append(run)
        print(_describe("duckdb", run, events), flush=True)
    return result


# --------------------------------------------------------------------------- reporting


def machine() -> str:
    """`<n> cores, <m> GiB, <cpu model>` from the OS and /proc."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem_gib = 0.0
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    mem_gib = int(line.split()[1]) / 1024**2
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cores} cores, {mem_gib:.0f} GiB, {model}"


def git_commit() -> str:
    """Short HEAD commit, `+dirty` when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def notes(result: Result, extra: str) -> str:
    """The notes cell: verdict, counts on both sides, CPU use, load, data caveats."""
    pipe, duck = result.pipeline, result.duckdb
    accepted_p = int(pipe[-1].summary.get("accepted", 0))
    accepted_d = int(duck[-1].summary.get("accepted", 0))
    cpu_p = statistics.median(r.cpu_s / r.wall_s for r in pipe)
    cpu_d = statistics.median(r.cpu_s / r.wall_s for r in duck)
    load = max(r.load_before for r in (*pipe, *duck))
    parts = [
        result.floor_verdict(),
        f"median of {len(pipe)}",
        f"accepted: pipeline {accepted_p:,} / DuckDB {accepted_d:,}",
        f"CPU: pipeline {cpu_p:.0%}, DuckDB {cpu_d:.0%} of one core",
        f"max 1-min load before a run {load:.2f} (2 cores, shared with other work)",
        result.mix.description,
    ]
    shares = [privacy_share(r) for r in pipe if r.summary.get("privacy_scan")]
    if shares:
        parts.append(
            f"privacy rule (screening in blocks + scan of staged files): "
            f"{statistics.median(shares):.1%} of pipeline CPU"
        )
    checks = [r.summary["checks"] for r in pipe if r.summary.get("checks")]
    if checks:
        spent = statistics.median(c["inputs"] + c["lease"] for c in checks)
        parts.append(
            f"checks before the run (input listing and fingerprints, writer lease): "
            f"{spent:.2f} s, {spent / statistics.median(r.wall_s for r in pipe):.1%} of wall"
        )
    if not all(r.summary.get("reconciles", True) for r in pipe):
        parts.append("pipeline manifest did NOT reconcile")
    if extra:
        parts.append(extra)
    return "; ".join(parts).replace("|", "/")


def table(results: list[Result]) -> str:
    """The console summary table."""
    head = (
        f"{'input':<7} {'events':>9} {'pipe s':>7} {'pipe ev/s':>10} {'pipe MB':>8} "
        f"{'duck s':>7} {'duck ev/s':>10} {'duck MB':>8} {'ratio':>6}  floor"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(
            f"{r.input_label:<7} {r.events:>9,} "
            f"{statistics.median(x.wall_s for x in r.pipeline):>7.1f} {r.pipeline_rate:>10,.0f} "
            f"{r.pipeline_rss_mb:>8,.0f} "
            f"{statistics.median(x.wall_s for x in r.duckdb):>7.1f} {r.duckdb_rate:>10,.0f} "
            f"{r.duckdb_rss_mb:>8,.0f} {r.ratio:>6.2f}  {r.floor_verdict()}"
        )
    return "\n".join(rows)


def record(results: list[Result], extra_note: str, commit_at_start: str) -> None:
    """Add one row per input to the batch table of RESULTS.md (created if missing).

    The commit cell is `start->end` when HEAD or the tree changed while the benchmark ran.
    """
    if not RESULTS.exists():
        RESULTS.write_text(RESULTS_HEADER + "\n" + TABLE_HEAD, encoding="utf-8")
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    where, commit = machine(), git_commit()
    if commit != commit_at_start:
        commit = f"{commit_at_start}→{commit}"
    rows = [
        f"| {date} | {where} | {r.events:,} | {r.input_label} | {r.pipeline_rate:,.0f} "
        f"| {r.pipeline_rss_mb:,.0f} | {r.duckdb_rate:,.0f} | {r.duckdb_rss_mb:,.0f} "
        f"| {r.ratio:.2f} | {commit} | {notes(r, extra_note)} |"
        for r in results
    ]
    add_rows(RESULTS, BATCH_HEADER, rows)
    print(f"\nadded {len(rows)} row(s) to the batch table of {RESULTS.relative_to(ROOT)}")


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark the batch pipeline (python -m pipelines.batch) against a DuckDB "
        "baseline doing the same job (benchmarks/duckdb_baseline.py): median wall time, "
        "events/s and peak RSS of each as a child process; appends the result to "
        "benchmarks/RESULTS.md. Input data is generated once under benchmarks/work/.",
        epilog="Run it with the project's venv: .venv/bin/python benchmarks/run.py. A pipeline "
        "run over 1M events takes about a minute on 2 cores.",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="about how many input lines to generate (default 1,000,000); the h1-2017 "
        "profile's --scale is derived from it",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each side per input (default 3)"
    )
    parser.add_argument(
        "--input-kind",
        choices=("files", "single", "both"),
        default="files",
        help="files: the landing folder (543 daily files); single: all lines in one file "
        "(exercises byte-range splitting); both (default: files)",
    )
    parser.add_argument(
        "--huge-lines",
        action="store_true",
        help="measure the huge-line input instead, as its own row: 0.1%% of the lines are "
        f"huge_line (> 1 MiB each), generated under {HUGE.work.relative_to(ROOT)}/ "
        f"(--events defaults to {HUGE_EVENTS:,} then)",
    )
    parser.add_argument(
        "--skip-generate",
        action="store_true",
        help="use benchmarks/work/ as it is: do not generate or concatenate anything",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print the results, do not append RESULTS.md"
    )
    parser.add_argument(
        "--duckdb-threads", type=int, default=2, help="DuckDB threads (default 2 = cores here)"
    )
    parser.add_argument(
        "--note", default="", help="free text added to the notes column of RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = HUGE_EVENTS if args.huge_lines else 1_000_000
    if args.repeats < 1 or args.events < 1000:
        parser.error("--repeats must be >= 1 and --events >= 1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Generate (once), measure, print, record."""
    args = parse_args(argv)
    commit_at_start = git_commit()
    python = sys.executable
    kinds = ["files", "single"] if args.input_kind == "both" else [args.input_kind]
    mix = HUGE if args.huge_lines else REALISTIC
    WORK.mkdir(parents=True, exist_ok=True)
    if args.skip_generate:
        totals = read_totals(mix)
        if totals is None:
            raise SystemExit(f"error: --skip-generate but no {mix.landing / TOTALS_FILE}")
        if "single" in kinds and not mix.single.is_file():
            raise SystemExit(f"error: --skip-generate but no {mix.single}")
    else:
        totals = generate(args.events, python, mix)
        if "single" in kinds:
            build_single(totals, mix)
    events = int(totals["lines_written"])
    print(
        f"{events:,} lines: {totals['valid_events']:,} valid, {totals['duplicate_lines']:,} "
        f"duplicates, {totals['invalid_lines']:,} invalid (generator ground truth)"
    )
    results = [
        benchmark(kind, events, args.repeats, python, args.duckdb_threads, mix) for kind in kinds
    ]
    print()
    print(table(results))
    with open(WORK / "last-run.json", "w", encoding="utf-8") as handle:
        json.dump([asdict(r) for r in results], handle, indent=2, default=str)
    if not args.no_record:
        record(results, args.note, commit_at_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
