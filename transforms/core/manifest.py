"""The run manifest: what came in, what went where, and proof that the numbers add up.

A compressed input quarantined as incomplete (transforms.batch.read) is listed under
`incomplete_inputs` and counted nowhere else: none of its lines is read, so read = accepted +
rejected + duplicates still holds for everything that was read. `quality_gates` holds the
result of each channel's gate (transforms.core.gates), `quality_gate` the worst of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from schemas.enums import Channel
from schemas.money import format_bhd
from schemas.records import SCHEMA_VERSION
from schemas.run import Run
from transforms.core import stats as st
from transforms.core.gates import DEFAULT_GATES, GateThresholds, evaluate_gates, worst_level
from transforms.core.stats import FAULT_REASONS

CHANNELS = [c.value for c in Channel]


def _channel_counts(stats: Mapping[str, int], channel: str) -> dict[str, Any]:
    counts = st.channel_counts(stats, channel)
    amounts = {
        status: format_bhd(fils)
        for status, fils in st.accepted_fils_by_status(stats, channel).items()
    }
    return {
        **counts,
        "reconciles": counts["read"]
        == counts["accepted"] + counts["rejected"] + counts["duplicates"],
        "amount_bhd_by_status": dict(sorted(amounts.items())),
    }


def _incomplete_inputs(run: Run, stats: Mapping[str, int]) -> list[dict[str, Any]]:
    sizes = dict(run.inputs)
    return [
        {
            "path": path,
            "bytes": sizes.get(path),
            "fault": fault,
            "reason": FAULT_REASONS.get(fault, fault),
            "lines_before_fault": lines,
        }
        for path, fault, lines in st.incomplete_inputs(stats)
    ]


def build_manifest(
    run: Run,
    stats: Mapping[str, int],
    files_written: list[str],
    files_removed: list[str],
    gate_thresholds: GateThresholds = DEFAULT_GATES,
) -> dict[str, Any]:
    """The manifest as a JSON-ready dict; `reconciles` is read == accepted + rejected + dups."""
    by_channel = {
        channel: _channel_counts(stats, channel)
        for channel in [*CHANNELS, st.UNKNOWN_CHANNEL]
        if stats.get(st.read_key(channel), 0) or channel != st.UNKNOWN_CHANNEL
    }
    totals = {
        name: sum(c[name] for c in by_channel.values())
        for name in ("read", "accepted", "rejected", "duplicates")
    }
    gates = evaluate_gates(by_channel, gate_thresholds)
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "schema_version": SCHEMA_VERSION,
        "input_key": run.input_key,
        "output_root": run.output_root,
        "started_at": run.started_at_text,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [{"path": p, "bytes": s} for p, s in run.inputs],
        "incomplete_inputs": _incomplete_inputs(run, stats),
        "counts": {**totals, "blank_lines_skipped": stats.get(st.BLANK_LINES, 0)},
        "reconciles": totals["read"]
        == totals["accepted"] + totals["rejected"] + totals["duplicates"]
        and all(c["reconciles"] for c in by_channel.values()),
        "by_channel": by_channel,
        "rejected_by_reason": st.sum_by(stats, "rejected", 2),
        "duplicates_by_kind": st.sum_by(stats, "duplicates", 2),
        "warnings": st.sum_by(stats, "warning", 2),
        "quality_gate": worst_level(gates).value,
        "quality_gates": [gate.as_dict() for gate in gates],
        "files_written": sorted(files_written),
        "files_removed": sorted(files_removed),
        "stats": dict(sorted(stats.items())),
    }


def summary_table(manifest: Mapping[str, Any]) -> str:
    """A fixed-width table of the run for the terminal, one row per channel and a total."""
    header = f"{'channel':<11}{'read':>10}{'accepted':>10}{'rejected':>10}{'dups':>8}"
    header += f"{'SUCCESS amount (BHD)':>22}"
    lines = [header, "-" * len(header)]
    for channel, c in manifest["by_channel"].items():
        amount = c["amount_bhd_by_status"].get("SUCCESS", "0.000")
        lines.append(
            f"{channel:<11}{c['read']:>10,}{c['accepted']:>10,}{c['rejected']:>10,}"
            f"{c['duplicates']:>8,}{amount:>22}"
        )
    t = manifest["counts"]
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<11}{t['read']:>10,}{t['accepted']:>10,}{t['rejected']:>10,}"
        f"{t['duplicates']:>8,}"
    )
    if st.UNKNOWN_CHANNEL in manifest["by_channel"]:
        lines.append(f"({st.UNKNOWN_CHANNEL}: lines whose channel could not be read; all rejected)")
    blank = t.get("blank_lines_skipped", 0)
    if blank:
        lines.append(f"blank lines skipped (not events, not counted as read): {blank:,}")
    gates = manifest.get("quality_gates", [])
    if gates:
        lines.append(f"quality gates: {manifest['quality_gate']}")
        lines.extend(f"  {g['channel']:<11}{g['level']:<7}{g['message']}" for g in gates)
    incomplete = manifest.get("incomplete_inputs", [])
    if incomplete:
        lines.append(f"incomplete inputs, not read (have them delivered again): {len(incomplete)}")
        lines.extend(
            f"  {i['path']}: {i['fault']}, {i['lines_before_fault']:,} lines before the fault"
            for i in incomplete
        )
    verdict = "yes" if manifest["reconciles"] else "NO - see the manifest's stats"
    if incomplete and manifest["reconciles"]:
        verdict += f" (of what was read: {len(incomplete)} incomplete input(s) not read)"
    lines.append(f"read = accepted + rejected + duplicates: {verdict}")
    return "\n".join(lines)
