"""The nightly batch job end to end: generated landing files in, Parquet read back out."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from schemas.arrow import payment_file_schema
from tests.pipelines.helpers import (
    data_files,
    expected_per_partition,
    make_landing,
    payments,
    rejected,
    rows_per_partition,
    run_batch,
)

# A week at a tenth of the published volume, with every kind of bad input at 1%.
SAMPLE = {
    "start": date(2017, 6, 24),
    "days": 7,
    "scale": 0.2,
    "invalid_rate": 0.01,
    "duplicate_rate": 0.01,
    "conflict_rate": 0.002,
    "late_rate": 0.03,
    "full_pan_rate": 0.2,
}


@pytest.fixture(scope="module")
def sample_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """(output root, generator truth, manifest) of one run over a generated week."""
    monkey = pytest.MonkeyPatch()
    monkey.setenv("PAYMENTS_PSEUDONYM_KEY", "test-pseudonym-key-0123456789abcdef")
    root = tmp_path_factory.mktemp("sample")
    truth = make_landing(root, **SAMPLE)
    # Two worker processes, as the command line runs by default.
    manifest = run_batch(str(root / "landing" / "*" / "*.jsonl*"), root / "out", workers=2)
    yield root / "out", truth, manifest
    monkey.undo()


def test_every_valid_event_is_written_once(sample_run: Any) -> None:
    out, truth, _ = sample_run
    table = payments(out)
    assert table.num_rows == truth["valid_events"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows


def test_counts_and_amounts_per_channel_and_status_match_the_ground_truth(
    sample_run: Any,
) -> None:
    out, truth, _ = sample_run
    got = duckdb.sql(
        f"""select channel, status, count(*), sum(amount)
            from read_parquet('{out}/payments/**/*.parquet', hive_partitioning = true)
            group by all"""
    ).fetchall()
    expected = {
        (channel, status): (v["count"], Decimal(v["amount"]))
        for channel, statuses in truth["by_channel_status"].items()
        for status, v in statuses.items()
        if v["count"]
    }
    assert {(c, s): (n, amount) for c, s, n, amount in got} == expected


def test_rows_land_in_their_bahrain_day_partition(sample_run: Any) -> None:
    out, truth, _ = sample_run
    assert rows_per_partition(payments(out)) == expected_per_partition(truth)


def test_event_date_is_the_bahrain_day_of_occurred_at(sample_run: Any) -> None:
    out, _, _ = sample_run
    rows = duckdb.sql(
        f"""select count(*) from read_parquet('{out}/payments/**/*.parquet',
                                              hive_partitioning = true)
            where cast(timezone('Asia/Bahrain', occurred_at) as date) <> event_date"""
    ).fetchall()
    assert rows == [(0,)]


def test_parquet_files_carry_the_derived_schema_without_partition_columns(
    sample_run: Any,
) -> None:
    out, _, _ = sample_run
    import pyarrow.parquet as pq

    for path in (out / "payments").rglob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == payment_file_schema()
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_manifest_reconciles_read_with_accepted_rejected_and_duplicates(
    sample_run: Any,
) -> None:
    _, truth, manifest = sample_run
    counts = manifest["counts"]
    assert manifest["reconciles"] is True
    assert counts["read"] == truth["lines_written"]
    assert counts["accepted"] == truth["valid_events"]
    assert counts["rejected"] == truth["invalid_lines"] + truth["conflict_lines"]
    assert counts["duplicates"] == truth["duplicate_lines"]


def test_every_rejected_event_has_a_code_a_reason_and_its_origin(sample_run: Any) -> None:
    out, truth, _ = sample_run
    table = rejected(out)
    assert table.num_rows == truth["invalid_lines"] + truth["conflict_lines"]
    for column in ("error_code", "reason", "raw", "source_file", "source_line"):
        assert table[column].null_count == 0, column
    codes = set(table["error_code"].to_pylist())
    assert {
        "MALFORMED_JSON",
        "INVALID_UTF8",
        "NOT_AN_OBJECT",
        "TOO_DEEPLY_NESTED",
        "LINE_TOO_LONG",
        "UNKNOWN_CHANNEL",
        "MISSING_FIELD",
        "WRONG_TYPE",
        "INVALID_AMOUNT",
        "NON_POSITIVE_AMOUNT",
        "WRONG_CURRENCY",
        "INVALID_TIMESTAMP",
        "INVALID_CPR",
        "DUPLICATE_CONFLICT",
    } <= codes


def _strings_of(table: pa.Table) -> list[str]:
    return [
        value
        for column in table.columns
        if pa.types.is_string(column.type)
        for value in column.to_pylist()
        if value is not None
    ]


def test_no_cpr_or_full_card_number_is_written_anywhere(sample_run: Any) -> None:
    out, _, _ = sample_run
    landing = out.parent / "landing"
    raw = b"".join(p.read_bytes() for p in landing.rglob("*.jsonl"))
    cprs = set(re.findall(rb'"cpr":\s*"(\d{9})"', raw))
    pans = set(re.findall(rb'"card":\s*"(\d{13,19})"', raw))
    assert cprs, "the sample must contain CPRs to hide"
    assert pans, "the sample must contain full card numbers to hide"
    written = "\n".join(_strings_of(payments(out)) + _strings_of(rejected(out))).encode()
    written += b"".join(p.read_bytes() for p in out.rglob("*.json"))
    assert not [c for c in cprs if c in written]
    assert not [p for p in pans if p in written]


@pytest.mark.usefixtures("key_env")
def test_rerunning_the_same_input_changes_nothing(tmp_path: Path) -> None:
    truth = make_landing(tmp_path, **{**SAMPLE, "days": 2})
    inputs = str(tmp_path / "landing" / "*" / "*.jsonl*")
    first = run_batch(inputs, tmp_path / "out")
    files_after_first = data_files(tmp_path / "out")
    second = run_batch(inputs, tmp_path / "out")
    table = payments(tmp_path / "out")
    assert table.num_rows == truth["valid_events"]
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows
    assert data_files(tmp_path / "out") == files_after_first
    assert second["counts"] == first["counts"]
    assert rejected(tmp_path / "out").num_rows == first["counts"]["rejected"]


@pytest.mark.usefixtures("key_env")
def test_gzip_input_gives_the_same_rows_as_plain(tmp_path: Path) -> None:
    knobs = {**SAMPLE, "days": 2}
    make_landing(tmp_path / "plain", **knobs)
    make_landing(tmp_path / "gz", **knobs, gzip=True)
    run_batch(str(tmp_path / "plain" / "landing" / "*" / "*.jsonl"), tmp_path / "out-plain")
    run_batch(str(tmp_path / "gz" / "landing" / "*" / "*.jsonl.gz"), tmp_path / "out-gz")
    columns = ["event_id", "amount", "status", "occurred_at", "payer_key", "card_last4"]
    plain = payments(tmp_path / "out-plain").select(columns).sort_by("event_id")
    gz = payments(tmp_path / "out-gz").select(columns).sort_by("event_id")
    assert plain.num_rows > 0
    assert plain.equals(gz)


@pytest.mark.usefixtures("key_env")
def test_a_large_file_read_in_byte_ranges_gives_the_same_rows(tmp_path: Path) -> None:
    make_landing(tmp_path, **{**SAMPLE, "days": 2})
    inputs = str(tmp_path / "landing" / "*" / "*.jsonl")
    run_batch(inputs, tmp_path / "whole")
    run_batch(inputs, tmp_path / "ranges", "--range_bytes", "4096", "--block_events", "100")
    columns = ["event_id", "amount", "source_file", "source_line"]
    whole = payments(tmp_path / "whole").select(columns).sort_by("event_id")
    ranges = payments(tmp_path / "ranges").select(columns).sort_by("event_id")
    assert whole.equals(ranges)
    assert (
        rejected(tmp_path / "whole")
        .select(["source_line", "error_code"])
        .sort_by("source_line")
        .equals(
            rejected(tmp_path / "ranges")
            .select(["source_line", "error_code"])
            .sort_by("source_line")
        )
    )
