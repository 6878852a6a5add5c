"""transforms.core.manifest: the run manifest reconciles read = accepted + rejected + duplicates."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from schemas.arrow import payment_schema
from schemas.money import MAX_FILS, format_bhd
from schemas.records import SCHEMA_VERSION
from tests.samples import run_of
from transforms.core import stats as st
from transforms.core.columnar import decimal_from_fils
from transforms.core.gates import GateThresholds
from transforms.core.manifest import build_manifest, summary_table
from transforms.storage.partitions import accepted_stats

INFO = run_of(
    "run-20170701",
    "gs://bucket/prefix",
    ingested_micros=1_498_867_200_000_000,  # 2017-07-01T00:00:00Z
    input_key="3fa9c0d1e2b4",
    inputs=(("gs://landing/2017-07-01.jsonl", 123_456),),
)
# Every input accounted for, in every channel.
BALANCED = {
    "read:portal": 10,
    "accepted:portal": 7,
    "rejected:portal:INVALID_CPR": 1,
    "rejected:portal:MALFORMED_JSON": 1,
    "duplicates:portal:in_input": 1,
    "read:mobile_app": 4,
    "accepted:mobile_app": 3,
    "duplicates:mobile_app:in_output": 1,
    "read:kiosk": 2,
    "accepted:kiosk": 1,
    "rejected:kiosk:DUPLICATE_CONFLICT": 1,
    "accepted_fils:portal:SUCCESS": 68_000_500,
    "accepted_fils:portal:REFUNDED": 12_500,
    "accepted_fils:kiosk:SUCCESS": 25_000,
    "warning:kiosk:UNMASKED_CARD_NUMBER": 1,
    "blank_lines_skipped": 3,
}
WITH_UNKNOWN = {**BALANCED, "read:unknown": 2, "rejected:unknown:NOT_AN_OBJECT": 2}
FILES = ["gs://bucket/prefix/payments/channel=kiosk/event_date=2017-07-01/part-3f-00000.parquet"]


def _manifest(stats: dict[str, int]) -> dict[str, Any]:
    return build_manifest(INFO, stats, FILES, [])


def test_balanced_counts_reconcile() -> None:
    assert _manifest(BALANCED)["reconciles"] is True


@pytest.mark.parametrize(
    "change",
    [
        {"read:portal": 11},
        {"accepted:kiosk": 2},
        {"rejected:portal:INVALID_CPR": 0},
        {"duplicates:mobile_app:in_output": 2},
    ],
)
def test_a_count_that_does_not_add_up_does_not_reconcile(change: dict[str, int]) -> None:
    assert _manifest({**BALANCED, **change})["reconciles"] is False


def test_channel_that_does_not_add_up_is_flagged() -> None:
    by_channel = _manifest({**BALANCED, "accepted:kiosk": 2})["by_channel"]
    assert by_channel["kiosk"]["reconciles"] is False
    assert by_channel["portal"]["reconciles"] is True


def test_errors_in_two_channels_that_cancel_out_do_not_reconcile() -> None:
    stats = {**BALANCED, "accepted:portal": 8, "accepted:kiosk": 0}
    manifest = _manifest(stats)
    assert manifest["counts"]["read"] == (
        manifest["counts"]["accepted"]
        + manifest["counts"]["rejected"]
        + manifest["counts"]["duplicates"]
    )
    assert manifest["reconciles"] is False


def test_counts_are_summed_over_channels() -> None:
    counts = _manifest(BALANCED)["counts"]
    assert counts == {
        "read": 16,
        "accepted": 11,
        "rejected": 3,
        "duplicates": 2,
        "blank_lines_skipped": 3,
    }


def test_per_channel_counts() -> None:
    portal = _manifest(BALANCED)["by_channel"]["portal"]
    assert (portal["read"], portal["accepted"], portal["rejected"], portal["duplicates"]) == (
        10,
        7,
        2,
        1,
    )


def test_amounts_are_exact_bhd_text_per_status() -> None:
    by_channel = _manifest(BALANCED)["by_channel"]
    assert by_channel["portal"]["amount_bhd_by_status"] == {
        "REFUNDED": "12.500",
        "SUCCESS": "68000.500",
    }
    assert by_channel["mobile_app"]["amount_bhd_by_status"] == {}


def test_every_channel_is_listed_even_without_events() -> None:
    assert list(_manifest({})["by_channel"]) == ["portal", "mobile_app", "kiosk"]


def test_empty_run_reconciles() -> None:
    assert _manifest({})["reconciles"] is True


def test_unknown_channel_is_listed_only_when_something_claimed_none() -> None:
    assert "unknown" not in _manifest(BALANCED)["by_channel"]
    unknown = _manifest(WITH_UNKNOWN)["by_channel"]["unknown"]
    assert (unknown["read"], unknown["rejected"], unknown["reconciles"]) == (2, 2, True)


def test_unknown_channel_counts_in_the_totals() -> None:
    manifest = _manifest(WITH_UNKNOWN)
    assert manifest["counts"]["read"] == 18
    assert manifest["reconciles"] is True


def test_rejections_are_summed_by_reason() -> None:
    assert _manifest(WITH_UNKNOWN)["rejected_by_reason"] == {
        "DUPLICATE_CONFLICT": 1,
        "INVALID_CPR": 1,
        "MALFORMED_JSON": 1,
        "NOT_AN_OBJECT": 2,
    }


def test_duplicates_are_summed_by_kind() -> None:
    assert _manifest(BALANCED)["duplicates_by_kind"] == {"in_input": 1, "in_output": 1}


def test_warnings_are_summed_by_kind() -> None:
    assert _manifest(BALANCED)["warnings"] == {"UNMASKED_CARD_NUMBER": 1}


def test_manifest_carries_the_run_and_its_files() -> None:
    manifest = build_manifest(INFO, BALANCED, ["b", "a"], ["z"])
    assert manifest["run_id"] == INFO.run_id
    assert manifest["input_key"] == INFO.input_key
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["inputs"] == [{"path": "gs://landing/2017-07-01.jsonl", "bytes": 123_456}]
    assert manifest["files_written"] == ["a", "b"]
    assert manifest["files_removed"] == ["z"]


def test_manifest_is_json_ready() -> None:
    manifest = _manifest(WITH_UNKNOWN)
    assert orjson.loads(orjson.dumps(manifest)) == manifest


def test_summary_table_has_a_row_per_channel() -> None:
    lines = summary_table(_manifest(WITH_UNKNOWN)).splitlines()
    for channel in ("portal", "mobile_app", "kiosk", "unknown", "total"):
        assert any(line.startswith(channel) for line in lines), channel


def test_summary_table_says_what_the_unknown_row_is() -> None:
    lines = summary_table(_manifest(WITH_UNKNOWN)).splitlines()
    assert any("channel could not be read" in line for line in lines)
    assert not any(
        "could not be read" in line for line in summary_table(_manifest(BALANCED)).splitlines()
    )


def test_summary_table_shows_blank_lines_skipped() -> None:
    lines = summary_table(_manifest({**BALANCED, "blank_lines_skipped": 3})).splitlines()
    assert "blank lines skipped (not events, not counted as read): 3" in lines


def test_summary_table_shows_success_amount() -> None:
    portal = next(
        line
        for line in summary_table(_manifest(BALANCED)).splitlines()
        if line.startswith("portal")
    )
    assert portal.endswith("68000.500")


def test_summary_table_says_whether_the_run_reconciles() -> None:
    assert summary_table(_manifest(BALANCED)).endswith(": yes")
    assert "NO" in summary_table(_manifest({**BALANCED, "read:kiosk": 3})).splitlines()[-1]


# Ten of the largest amounts a decimal(18,3) column holds add up past int64.
DECIMAL_18_3_MAX_FILS = 10**18 - 1
STATUSES = ["SUCCESS", "FAILED", "CANCELLED", "REFUNDED"]


def _accepted(payments: list[tuple[str, int]]) -> pa.Table:
    """Accepted rows of (status, amount in fils): the columns accepted_stats reads."""
    return pa.Table.from_arrays(
        [pa.array([status for status, _ in payments]), decimal_from_fils([f for _, f in payments])],
        schema=pa.schema([payment_schema().field("status"), payment_schema().field("amount")]),
    )


def _run_of(channel: str, payments: list[tuple[str, int]]) -> dict[str, int]:
    """Stats of a run that read and accepted exactly these payments of one channel."""
    return {**accepted_stats(channel, _accepted(payments)), st.read_key(channel): len(payments)}


def test_accepted_stats_of_20_largest_payments_are_the_exact_sum() -> None:
    stats = accepted_stats("portal", _accepted([("SUCCESS", MAX_FILS)] * 20))
    assert stats[st.accepted_fils_key("portal", "SUCCESS")] == 20 * MAX_FILS
    assert type(stats[st.accepted_fils_key("portal", "SUCCESS")]) is int


def test_manifest_amount_of_20_largest_payments_is_exact_and_positive() -> None:
    manifest = _manifest(_run_of("kiosk", [("SUCCESS", MAX_FILS)] * 20))
    assert manifest["by_channel"]["kiosk"]["amount_bhd_by_status"] == {"SUCCESS": "19999999999.980"}
    assert manifest["reconciles"] is True


def test_accepted_stats_beyond_int64_are_exact() -> None:
    stats = accepted_stats("portal", _accepted([("SUCCESS", DECIMAL_18_3_MAX_FILS)] * 10))
    assert stats[st.accepted_fils_key("portal", "SUCCESS")] == 10 * DECIMAL_18_3_MAX_FILS > 2**63


def test_manifest_amount_beyond_int64_is_exact() -> None:
    manifest = _manifest(_run_of("portal", [("REFUNDED", DECIMAL_18_3_MAX_FILS)] * 10))
    amounts = manifest["by_channel"]["portal"]["amount_bhd_by_status"]
    assert amounts == {"REFUNDED": "9999999999999999.990"}


def test_manifest_with_amounts_beyond_int64_is_json_ready() -> None:
    # commit.py writes the manifest with json.dumps, which writes any Python int exactly.
    manifest = _manifest(_run_of("portal", [("SUCCESS", DECIMAL_18_3_MAX_FILS)] * 10))
    assert json.loads(json.dumps(manifest)) == manifest


@given(
    hs.lists(
        hs.tuples(hs.sampled_from(STATUSES), hs.integers(min_value=1, max_value=MAX_FILS)),
        min_size=1,
        max_size=200,
    )
)
def test_manifest_amounts_by_status_are_the_exact_python_sums(
    payments: list[tuple[str, int]],
) -> None:
    expected: dict[str, int] = {}
    for status, fils in payments:
        expected[status] = expected.get(status, 0) + fils
    amounts = _manifest(_run_of("mobile_app", payments))["by_channel"]["mobile_app"]
    assert amounts["amount_bhd_by_status"] == {
        k: format_bhd(v) for k, v in sorted(expected.items())
    }


# --- incomplete inputs and quality gates ------------------------------------------------------

CUT = "gs://landing/2017-07-01/portal.jsonl.gz"
WITH_INCOMPLETE = {
    **BALANCED,
    st.incomplete_key("TRUNCATED", CUT): 1,
    st.incomplete_lines_key(CUT): 887,
}
INFO_WITH_CUT = replace(INFO, inputs=(*INFO.inputs, (CUT, 28_881)))


def test_an_incomplete_input_is_listed_with_its_fault_and_size() -> None:
    manifest = build_manifest(INFO_WITH_CUT, WITH_INCOMPLETE, FILES, [])
    assert manifest["incomplete_inputs"] == [
        {
            "path": CUT,
            "bytes": 28_881,
            "fault": "TRUNCATED",
            "reason": "the compressed stream ends before its end-of-stream marker: the file "
            "was cut off (an interrupted transfer?)",
            "lines_before_fault": 887,
        }
    ]


def test_an_incomplete_input_is_counted_apart_so_what_was_read_still_reconciles() -> None:
    manifest = build_manifest(INFO_WITH_CUT, WITH_INCOMPLETE, FILES, [])
    assert manifest["counts"] == _manifest(BALANCED)["counts"]
    assert manifest["reconciles"] is True


def test_a_run_without_incomplete_inputs_lists_none() -> None:
    assert _manifest(BALANCED)["incomplete_inputs"] == []


def test_summary_table_names_each_incomplete_input() -> None:
    table = summary_table(build_manifest(INFO_WITH_CUT, WITH_INCOMPLETE, FILES, []))
    assert f"  {CUT}: TRUNCATED, 887 lines before the fault" in table.splitlines()
    assert table.splitlines()[-1] == (
        "read = accepted + rejected + duplicates: yes (of what was read: 1 incomplete input(s) "
        "not read)"
    )


def test_the_manifest_holds_a_gate_per_channel_and_the_worst_level() -> None:
    manifest = _manifest(BALANCED)  # channels of at most 10 events, none all rejected
    assert [(g["channel"], g["level"]) for g in manifest["quality_gates"]] == [
        ("portal", "ok"),
        ("mobile_app", "ok"),
        ("kiosk", "ok"),
    ]
    assert manifest["quality_gate"] == "ok"


def test_the_manifests_gates_use_the_runs_thresholds() -> None:
    manifest = build_manifest(INFO, BALANCED, FILES, [], GateThresholds(0.01, 0.05, min_events=1))
    [kiosk] = [g for g in manifest["quality_gates"] if g["channel"] == "kiosk"]
    assert (kiosk["level"], kiosk["ratio"], kiosk["threshold"]) == ("error", 0.5, 0.05)
    assert manifest["quality_gate"] == "error"


def test_a_channel_all_rejected_fails_the_manifests_gate() -> None:
    stats = {**BALANCED, "read:kiosk": 150, "accepted:kiosk": 0}
    stats["rejected:kiosk:INVALID_AMOUNT"] = 149
    manifest = _manifest(stats)
    assert manifest["reconciles"] is True
    assert manifest["quality_gate"] == "error"
    summary = summary_table(manifest).splitlines()
    assert "quality gates: error" in summary
    assert "  kiosk      error  all 150 events rejected" in summary
