"""Run statistics as plain data: counted by each step, summed across workers, reconciled.

Beam counters are also kept, but they are best-effort (and under-count in streaming on the
DirectRunner), so the manifest is built from these values, which travel with the data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from schemas.enums import InputFault

UNKNOWN_CHANNEL = "unknown"

Stats = Counter[str]


# A key is `<kind>:<field>:<field>…`; this module is the only one that builds or reads one.
READ = "read"
ACCEPTED = "accepted"
ACCEPTED_FILS = "accepted_fils"
REJECTED = "rejected"
DUPLICATES = "duplicates"
WARNING = "warning"


def kind_of(key: str) -> str:
    """The kind of count a key holds (read, accepted, rejected, duplicates, …)."""
    return key.split(":", 1)[0]


def read_key(channel: str) -> str:
    return f"{READ}:{channel}"


def accepted_key(channel: str) -> str:
    return f"{ACCEPTED}:{channel}"


def accepted_fils_key(channel: str, status: str) -> str:
    return f"{ACCEPTED_FILS}:{channel}:{status}"


def rejected_key(channel: str, code: str) -> str:
    return f"{REJECTED}:{channel}:{code}"


def duplicate_key(channel: str, kind: str) -> str:
    """kind: `in_input` (redelivered within this run) or `in_output` (already written before)."""
    return f"{DUPLICATES}:{channel}:{kind}"


def warning_key(channel: str, warning: str) -> str:
    return f"{WARNING}:{channel}:{warning}"


def privacy_refused_key(what: str) -> str:
    """what: `files` (a streaming pane, stats or live aggregate file) or `messages` (a live
    aggregate message) the privacy scanner refused to publish: each one is a redaction defect."""
    return f"privacy:refused_{what}"


# Microseconds the privacy rule took inside blocks (screening accepted rows, redacting rejected
# ones), added by the ingest step: a cost, not a count of events (the manifest also reports
# it as `privacy_screening_seconds`; a streaming stats file carries it per pane).
PRIVACY_SCREENING_MICROS = "cost:privacy_screening_micros"


FAULT_REASONS = {
    InputFault.TRUNCATED.value: "the compressed stream ends before its end-of-stream marker: "
    "the file was cut off (an interrupted transfer?)",
    InputFault.CORRUPT.value: "the compressed data fails its own checks (the CRC-32 or length "
    "in a gzip trailer) or is not valid compressed data",
    InputFault.NOT_COMPRESSED.value: "the file is not in the compressed format its name says",
}


def incomplete_key(fault: str, path: str) -> str:
    """An input file quarantined whole (fault: an InputFault value): a compressed file
    without a valid end of stream. None of its lines is counted as read."""
    return f"incomplete:{fault}:{path}"


def incomplete_lines_key(path: str) -> str:
    """Lines a quarantined file held before its fault: decompressed, not read as events."""
    return f"incomplete_lines:{path}"


def gate_key(channel: str, level: str) -> str:
    """A streaming stats pane's quality gate for a channel (level: ok, warn or error)."""
    return f"gate:{channel}:{level}"


BLANK_LINES = "blank_lines_skipped"


def channel_counts(stats: Mapping[str, int], channel: str) -> dict[str, int]:
    """A channel's read, accepted, rejected and duplicates counts."""
    return {
        READ: stats.get(read_key(channel), 0),
        ACCEPTED: stats.get(accepted_key(channel), 0),
        REJECTED: sum_by(stats, REJECTED, 1).get(channel, 0),
        DUPLICATES: sum_by(stats, DUPLICATES, 1).get(channel, 0),
    }


def accepted_fils_by_status(stats: Mapping[str, int], channel: str) -> dict[str, int]:
    """A channel's accepted amounts in fils, by payment status."""
    prefix = f"{ACCEPTED_FILS}:{channel}:"
    return {k.removeprefix(prefix): v for k, v in sorted(stats.items()) if k.startswith(prefix)}


def total_of(stats: Mapping[str, int], kind: str) -> int:
    """All counts of one kind (e.g. every duplicate, whatever its channel and kind)."""
    return sum(v for k, v in stats.items() if kind_of(k) == kind)


def without(stats: Mapping[str, int], kind: str) -> dict[str, int]:
    """The stats less every count of one kind."""
    return {k: v for k, v in stats.items() if kind_of(k) != kind}


OUTCOMES = (ACCEPTED, REJECTED, DUPLICATES)


def with_reads(stats: Mapping[str, int]) -> dict[str, int]:
    """The stats plus a read per outcome they count (accepted, rejected or duplicate), by
    channel: where an outcome and its read are committed in one file, the file balances on
    its own and a restart cannot count a read whose outcome was lost."""
    out: Stats = Counter(stats)
    for key, value in stats.items():
        parts = key.split(":")
        if parts[0] in OUTCOMES and len(parts) > 1:
            out[read_key(parts[1])] += value
    return dict(sorted(out.items()))


def incomplete_inputs(stats: Mapping[str, int]) -> list[tuple[str, str, int]]:
    """(path, fault, lines before the fault) of every quarantined input file, by path."""
    found = []
    for key in stats:
        kind, _, rest = key.partition(":")
        if kind == "incomplete":
            fault, _, path = rest.partition(":")  # a path may hold colons (gs://), a fault not
            found.append((path, fault, stats.get(incomplete_lines_key(path), 0)))
    return sorted(found)


def merge(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum statistics from many bundles into one mapping, keys sorted for stable output."""
    total: Stats = Counter()
    for part in parts:
        total.update(part)
    return dict(sorted(total.items()))


def totals_by_kind(stats: Mapping[str, int]) -> dict[str, int]:
    """Totals per kind of count, the field before the first colon (read, accepted, rejected,
    duplicates, …): what an operator checks adds up."""
    out: Stats = Counter()
    for key, value in stats.items():
        out[kind_of(key)] += value
    return dict(out)


def sum_by(stats: Mapping[str, int], prefix: str, position: int) -> dict[str, int]:
    """Totals of the keys starting with `prefix`, grouped by the colon-separated field at
    `position` (e.g. rejected counts by channel or by code)."""
    out: Stats = Counter()
    for key, value in stats.items():
        parts = key.split(":")
        if parts[0] == prefix and len(parts) > position:
            out[parts[position]] += value
    return dict(sorted(out.items()))
