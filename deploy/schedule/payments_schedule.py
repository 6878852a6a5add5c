"""Rules of the nightly schedule, as plain functions: which Bahrain day a run processes, its
landing glob and job name, whether the run's manifest is sound, and what it still needs a
person for.

Standard library only: Cloud Composer imports this file from its dags/ folder, next to
payments_nightly_dag.py, where the pipeline package is not installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

# Asia/Bahrain is UTC+03:00 all year, without daylight saving, since 1972: the same fixed
# offset as schemas/timekeeping.py (tests/deploy check that the two agree).
BAHRAIN = timezone(timedelta(hours=3), "Asia/Bahrain")
LANDING_FILES = "*.jsonl*"


def previous_bahrain_day(instant: datetime) -> date:
    """The Bahrain calendar day before the one an aware instant falls in."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: say which time zone it is in")
    return instant.astimezone(BAHRAIN).date() - timedelta(days=1)


def day_to_process(instant: datetime, override: str | None = None) -> date:
    """The day a run processes: an explicit YYYY-MM-DD, else the Bahrain day before `instant`
    (a scheduled run's data interval end)."""
    if override:
        return date.fromisoformat(override)
    return previous_bahrain_day(instant)


def days_from_to(first: date, last: date) -> list[date]:
    """Every day from first to last, both included (a backfill range)."""
    if last < first:
        raise ValueError(f"range ends ({last}) before it starts ({first})")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def landing_glob(landing_root: str, day: date) -> str:
    """The batch job's --input for one landing day: ROOT/YYYY-MM-DD/*.jsonl*."""
    return f"{landing_day_prefix(landing_root, day)}{LANDING_FILES}"


def landing_day_prefix(landing_root: str, day: date) -> str:
    return f"{landing_root.rstrip('/')}/{day.isoformat()}/"


def batch_job_name(day: date) -> str:
    """One Dataflow job name per day: a retry while the day's job still runs is refused by
    Dataflow instead of racing it."""
    return f"payments-batch-{day:%Y%m%d}"


def run_id_floor(instant: datetime) -> str:
    """A string sorting at or before the run id of every batch run started at or after
    `instant` (run ids begin with their UTC start time, schemas/run.py new_run_id)."""
    return instant.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def is_run_of(manifest: Mapping[str, Any], day_prefix: str) -> bool:
    """Whether a manifest is of a batch run whose input files all lie under day_prefix."""
    inputs = manifest.get("inputs") or []
    return (
        manifest.get("pipeline") == "batch"
        and bool(inputs)
        and all(str(i["path"]).startswith(day_prefix) for i in inputs)
    )


def newest_run_of(
    manifests: Iterable[Mapping[str, Any]], day_prefix: str
) -> Mapping[str, Any] | None:
    """The latest batch run over one landing day, or None when there is none."""
    runs = [m for m in manifests if is_run_of(m, day_prefix)]
    return max(runs, key=lambda m: str(m["run_id"])) if runs else None


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Why a run does not reconcile (read = accepted + rejected + duplicates per channel);
    empty when it does."""
    problems = []
    for channel, counts in sorted((manifest.get("by_channel") or {}).items()):
        accounted = counts["accepted"] + counts["rejected"] + counts["duplicates"]
        if counts["read"] != accounted or not counts.get("reconciles", True):
            problems.append(
                f"{channel}: read {counts['read']} != accepted {counts['accepted']} + rejected "
                f"{counts['rejected']} + duplicates {counts['duplicates']} (= {accounted})"
            )
    if not manifest.get("reconciles", False) and not problems:
        problems.append("manifest says it does not reconcile")
    return problems


def run_alarms(manifest: Mapping[str, Any]) -> list[str]:
    """What a committed run still needs a person for, though its data is valid and accounted
    for: inputs it quarantined as incomplete (have them delivered again, then re-run the day)
    and channels that failed their quality gate. Empty when there is nothing."""
    alarms = [
        f"input not read: {i['path']}: {i['fault']} (have it delivered again, then re-run the day)"
        for i in manifest.get("incomplete_inputs") or []
    ]
    alarms += [
        f"quality gate: {g['channel']}: {g['message']}"
        for g in manifest.get("quality_gates") or []
        if g.get("level") == "error"
    ]
    return alarms
