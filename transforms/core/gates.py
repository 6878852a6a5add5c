"""Quality gates: per channel, the share of a run's events that were rejected, against a warn
and an error threshold.

Pure functions over the per-channel counts of a manifest (read, accepted, rejected,
duplicates). Batch records the results in the manifest and exits with its own status on an
error; streaming evaluates every stats pane, logs and counts the results, and never stops for
one (a streaming job that raised would be retried forever).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from schemas.enums import Channel, GateLevel

CHANNELS = tuple(c.value for c in Channel)
# Events whose channel could not be told (malformed JSON, no or an unknown `channel`): not a
# channel of their own, so their gate is their share of all the events of the run.
UNKNOWN_CHANNEL = "unknown"

DEFAULT_WARN_RATIO = 0.01
DEFAULT_ERROR_RATIO = 0.05
# Below this many events a ratio says little (one bad kiosk event out of 30 is 3%): only a
# channel whose events are all rejected fails then.
DEFAULT_MIN_EVENTS = 100
_LEVELS = list(GateLevel)


class PipelineOptionsLike(Protocol):
    """What the gates read of Beam's PipelineOptions (the core does not import Beam)."""

    def get_all_options(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GateThresholds:
    """Rejected shares above `warn_ratio` warn, above `error_ratio` fail; channels with fewer
    than `min_events` events fail only when every one of them is rejected."""

    warn_ratio: float = DEFAULT_WARN_RATIO
    error_ratio: float = DEFAULT_ERROR_RATIO
    min_events: int = DEFAULT_MIN_EVENTS

    @classmethod
    def from_options(cls, options: PipelineOptionsLike) -> GateThresholds:
        """The --gate_* options a pipeline was started with (pipelines/options.py), each one
        left out taking its default."""
        given = options.get_all_options()
        warn, error, least = (
            given.get(name) for name in ("gate_warn_ratio", "gate_error_ratio", "gate_min_events")
        )
        return cls(
            DEFAULT_WARN_RATIO if warn is None else float(warn),
            DEFAULT_ERROR_RATIO if error is None else float(error),
            DEFAULT_MIN_EVENTS if least is None else int(least),
        )


DEFAULT_GATES = GateThresholds()


@dataclass(frozen=True)
class GateResult:
    """One channel's gate: its level, the rejected share, and the threshold it was held to
    (None when it had no events, or too few for a ratio to count)."""

    channel: str
    level: GateLevel
    events: int
    rejected: int
    ratio: float
    threshold: float | None
    message: str

    def __str__(self) -> str:
        return f"{self.channel}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "level": self.level.value,
            "events": self.events,
            "rejected": self.rejected,
            "ratio": round(self.ratio, 6),
            "threshold": self.threshold,
            "message": self.message,
        }


def events_of(counts: Mapping[str, int]) -> int:
    """A channel's events: what was read, or what was accounted for if that is more (in a
    streaming pane, rejections can be counted a pane after the reads they come from)."""
    accounted = counts.get("accepted", 0) + counts.get("rejected", 0) + counts.get("duplicates", 0)
    return max(counts.get("read", 0), accounted)


def evaluate_gates(
    by_channel: Mapping[str, Mapping[str, int]],
    thresholds: GateThresholds,
    expected: Sequence[str] = CHANNELS,
) -> list[GateResult]:
    """One result per channel of `expected` (one without events warns) and per other channel
    that has events, the events of no known channel last."""
    channels = [*expected]
    channels += [c for c in CHANNELS if c not in channels and events_of(by_channel.get(c, {}))]
    results = [_channel_gate(c, by_channel.get(c, {}), thresholds) for c in channels]
    unknown = events_of(by_channel.get(UNKNOWN_CHANNEL, {}))
    if unknown:
        total = sum(events_of(counts) for counts in by_channel.values())
        results.append(_unknown_gate(unknown, total, thresholds))
    return results


def worst_level(results: Iterable[GateResult]) -> GateLevel:
    """The most severe level among the results (OK when there are none)."""
    return max((r.level for r in results), key=_LEVELS.index, default=GateLevel.OK)


def _channel_gate(
    channel: str, counts: Mapping[str, int], thresholds: GateThresholds
) -> GateResult:
    events, rejected = events_of(counts), counts.get("rejected", 0)
    if not events:
        return GateResult(channel, GateLevel.WARN, 0, 0, 0.0, None, "no events read")
    ratio = rejected / events
    if rejected >= events:
        message = f"all {events:,} events rejected"
        return GateResult(channel, GateLevel.ERROR, events, rejected, 1.0, None, message)
    share = f"{rejected:,} of {events:,} events rejected ({ratio:.2%})"
    return _held_to_thresholds(channel, events, rejected, ratio, share, thresholds)


def _unknown_gate(unknown: int, total: int, thresholds: GateThresholds) -> GateResult:
    ratio = unknown / total
    share = f"{unknown:,} of the run's {total:,} events name no known channel ({ratio:.2%})"
    if unknown >= total:
        level = GateLevel.ERROR
        return GateResult(UNKNOWN_CHANNEL, level, unknown, unknown, 1.0, None, share)
    return _held_to_thresholds(UNKNOWN_CHANNEL, total, unknown, ratio, share, thresholds)


def _held_to_thresholds(
    channel: str, events: int, rejected: int, ratio: float, share: str, t: GateThresholds
) -> GateResult:
    if events < t.min_events:
        message = f"{share}; under {t.min_events:,} events only all rejected fails"
        return GateResult(channel, GateLevel.OK, events, rejected, ratio, None, message)
    if ratio > t.error_ratio:
        level, threshold, above = GateLevel.ERROR, t.error_ratio, "above the error threshold"
    elif ratio > t.warn_ratio:
        level, threshold, above = GateLevel.WARN, t.warn_ratio, "above the warn threshold"
    else:
        level, threshold, above = GateLevel.OK, t.warn_ratio, "within the warn threshold"
    message = f"{share}, {above} {threshold:.2%}"
    return GateResult(channel, level, events, rejected, ratio, threshold, message)
