"""transforms.core.gates: per-channel rejection ratios against a warn and an error threshold, for
the batch manifest and for every streaming stats pane (which never raises for a gate)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import IngestOptions
from schemas.enums import GateLevel
from tests.samples import run_of
from transforms.core import stats as st
from transforms.core.gates import GateResult, GateThresholds, evaluate_gates, worst_level
from transforms.streaming.sinks import WriteStreamingStats, pane_gates, write_stats_pane

DEFAULTS = GateThresholds()


def counts(read: int, rejected: int = 0, duplicates: int = 0) -> dict[str, int]:
    """A channel's counts that reconcile: what is neither rejected nor a duplicate is accepted."""
    accepted = read - rejected - duplicates
    return {"read": read, "accepted": accepted, "rejected": rejected, "duplicates": duplicates}


def gate(channel: str, by_channel: dict[str, dict[str, int]], **limits: float) -> GateResult:
    results = evaluate_gates(by_channel, GateThresholds(**limits))  # type: ignore[arg-type]
    [found] = [r for r in results if r.channel == channel]
    return found


def clean(**channels: dict[str, int]) -> dict[str, dict[str, int]]:
    """Every channel with 1,000 clean events, but those given."""
    return {**{c: counts(1000) for c in ("portal", "mobile_app", "kiosk")}, **channels}


def test_the_defaults_are_1_percent_warn_5_percent_error_from_100_events() -> None:
    assert (DEFAULTS.warn_ratio, DEFAULTS.error_ratio, DEFAULTS.min_events) == (0.01, 0.05, 100)


def test_a_channel_within_the_warn_threshold_is_ok() -> None:
    result = gate("portal", clean(portal=counts(1000, rejected=10)))
    assert (result.level, result.ratio, result.threshold) == (GateLevel.OK, 0.01, 0.01)


def test_a_channel_above_the_warn_threshold_warns() -> None:
    result = gate("portal", clean(portal=counts(1000, rejected=11)))
    assert (result.level, result.threshold) == (GateLevel.WARN, 0.01)
    assert result.message == "11 of 1,000 events rejected (1.10%), above the warn threshold 1.00%"


def test_a_channel_above_the_error_threshold_fails() -> None:
    result = gate("kiosk", clean(kiosk=counts(1000, rejected=51)))
    assert (result.level, result.threshold) == (GateLevel.ERROR, 0.05)
    assert str(result) == (
        "kiosk: 51 of 1,000 events rejected (5.10%), above the error threshold 5.00%"
    )


def test_exactly_the_error_threshold_only_warns() -> None:
    assert gate("portal", clean(portal=counts(1000, rejected=50))).level is GateLevel.WARN


def test_duplicates_count_as_events_not_as_rejections() -> None:
    result = gate("portal", clean(portal=counts(1000, rejected=10, duplicates=500)))
    assert (result.level, result.events, result.ratio) == (GateLevel.OK, 1000, 0.01)


def test_a_channel_with_100_events_all_rejected_fails() -> None:
    result = gate("mobile_app", clean(mobile_app=counts(100, rejected=100)))
    assert (result.level, result.ratio, result.threshold) == (GateLevel.ERROR, 1.0, None)
    assert result.message == "all 100 events rejected"


def test_all_rejected_fails_even_when_the_error_threshold_is_1() -> None:
    by_channel = clean(kiosk=counts(500, rejected=500))
    assert gate("kiosk", by_channel, error_ratio=1.0).level is GateLevel.ERROR


def test_a_small_channel_all_rejected_fails_too() -> None:
    """The small source going fully invalid is what per-channel gates are for."""
    assert gate("kiosk", clean(kiosk=counts(30, rejected=30))).level is GateLevel.ERROR


def test_under_min_events_a_high_ratio_does_not_count() -> None:
    result = gate("kiosk", clean(kiosk=counts(30, rejected=20)))
    assert (result.level, result.threshold) == (GateLevel.OK, None)
    assert "under 100 events only all rejected fails" in result.message


def test_min_events_is_an_option() -> None:
    by_channel = clean(kiosk=counts(30, rejected=20))
    assert gate("kiosk", by_channel, min_events=10).level is GateLevel.ERROR


def test_a_channel_without_events_warns() -> None:
    result = gate("kiosk", clean(kiosk=counts(0)))
    assert (result.level, result.events, result.message) == (GateLevel.WARN, 0, "no events read")


def test_a_run_without_any_event_warns_for_every_channel() -> None:
    results = evaluate_gates({}, DEFAULTS)
    assert [(r.channel, r.level) for r in results] == [
        ("portal", GateLevel.WARN),
        ("mobile_app", GateLevel.WARN),
        ("kiosk", GateLevel.WARN),
    ]
    assert worst_level(results) is GateLevel.WARN


def test_events_of_no_known_channel_are_held_to_their_share_of_the_run() -> None:
    by_channel = {**clean(), "unknown": counts(100, rejected=100)}  # 100 of 3,100 events
    result = gate("unknown", by_channel)
    assert (result.level, result.events, result.rejected) == (GateLevel.WARN, 3100, 100)
    assert result.message.startswith("100 of the run's 3,100 events name no known channel")


def test_a_run_whose_events_all_name_no_known_channel_fails() -> None:
    assert gate("unknown", {"unknown": counts(5, rejected=5)}).level is GateLevel.ERROR


def test_no_gate_for_the_unknown_channel_without_such_events() -> None:
    assert [r.channel for r in evaluate_gates(clean(), DEFAULTS)] == [
        "portal",
        "mobile_app",
        "kiosk",
    ]


def test_the_worst_level_wins() -> None:
    results = evaluate_gates(clean(portal=counts(0), kiosk=counts(200, rejected=200)), DEFAULTS)
    assert worst_level(results) is GateLevel.ERROR
    assert worst_level([]) is GateLevel.OK


def test_results_are_json_ready() -> None:
    result = gate("portal", clean(portal=counts(3000, rejected=100)))
    assert json.loads(json.dumps(result.as_dict())) == {
        "channel": "portal",
        "level": "warn",
        "events": 3000,
        "rejected": 100,
        "ratio": 0.033333,
        "threshold": 0.01,
        "message": "100 of 3,000 events rejected (3.33%), above the warn threshold 1.00%",
    }


def test_thresholds_come_from_the_pipeline_options() -> None:
    options = PipelineOptions(
        ["--gate_warn_ratio", "0.02", "--gate_error_ratio", "0.1", "--gate_min_events", "7"]
    )
    assert options.view_as(IngestOptions).gate_min_events == 7
    assert GateThresholds.from_options(options) == GateThresholds(0.02, 0.1, 7)


def test_thresholds_not_given_take_their_defaults() -> None:
    assert GateThresholds.from_options(PipelineOptions([])) == DEFAULTS


@pytest.mark.parametrize(
    "flag", ["--gate_warn_ratio=1.5", "--gate_error_ratio=-0.1", "--gate_min_events=-1"]
)
def test_a_threshold_out_of_range_is_refused(flag: str) -> None:
    with pytest.raises(SystemExit):
        PipelineOptions([flag]).view_as(IngestOptions)


# --- streaming: a gate per stats pane ----------------------------------------------------------


def pane(**channels: tuple[int, int]) -> dict[str, int]:
    """Flat stats of a pane: per channel (read, rejected), the rest accepted."""
    stats: dict[str, int] = {}
    for channel, (read, rejected) in channels.items():
        stats[st.read_key(channel)] = read
        stats[st.accepted_key(channel)] = read - rejected
        if rejected:
            stats[st.rejected_key(channel, "INVALID_AMOUNT")] = rejected
    return stats


def test_a_pane_is_gated_only_for_the_channels_it_has_events_of() -> None:
    results = pane_gates(pane(portal=(1000, 2)), DEFAULTS)
    assert [(r.channel, r.level) for r in results] == [("portal", GateLevel.OK)]


def test_rejections_counted_a_pane_after_their_reads_make_no_ratio_above_1() -> None:
    late = {st.rejected_key("kiosk", "INVALID_AMOUNT"): 3}  # their reads were in the last pane
    [result] = pane_gates(late, DEFAULTS)
    assert (result.channel, result.events, result.ratio) == ("kiosk", 3, 1.0)


def _stats_file(path: str) -> dict[str, int]:
    loaded: dict[str, int] = json.loads(Path(path).read_text())
    return loaded


def test_a_stats_pane_records_each_channels_gate_level(tmp_path: Path) -> None:
    parts = [pane(portal=(1000, 60)), pane(mobile_app=(200, 3))]
    [path] = write_stats_pane((None, parts), str(tmp_path), "run-1")
    written = _stats_file(path)
    assert written[st.gate_key("portal", "error")] == 1
    assert written[st.gate_key("mobile_app", "warn")] == 1
    assert st.gate_key("kiosk", "warn") not in written  # a quiet minute is no alarm
    assert written[st.read_key("portal")] == 1000  # the counts are kept as they were


def test_a_failed_gate_in_a_pane_is_logged_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="transforms.streaming.sinks"):
        paths = list(write_stats_pane((None, [pane(kiosk=(40, 40))]), str(tmp_path), "run-1"))
    assert len(paths) == 1
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert (
        record.getMessage() == "quality gate error (the job goes on): kiosk: all 40 events rejected"
    )


def test_stats_pane_gates_use_the_thresholds_given(tmp_path: Path) -> None:
    strict = GateThresholds(warn_ratio=0.0, error_ratio=0.001, min_events=1)
    [path] = write_stats_pane((None, [pane(portal=(1000, 2))]), str(tmp_path), "run-1", strict)
    assert _stats_file(path)[st.gate_key("portal", "error")] == 1


def test_the_stats_writer_takes_the_gate_options_of_its_pipeline() -> None:
    options = PipelineOptions(["--gate_error_ratio", "0.5", "--gate_warn_ratio", "0.4"])
    writer = WriteStreamingStats(run_of("run-1"), every_seconds=1)
    assert writer.thresholds(beam.Pipeline(options=options)) == GateThresholds(0.4, 0.5, 100)


def test_thresholds_given_to_the_stats_writer_win() -> None:
    options = PipelineOptions(["--gate_error_ratio", "0.5"])
    writer = WriteStreamingStats(run_of("run-1"), every_seconds=1, gates=DEFAULTS)
    assert writer.thresholds(beam.Pipeline(options=options)) == DEFAULTS
