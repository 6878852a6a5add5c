"""schemas.layout: every output path under one root, Hive partitions, staging outside datasets."""

from __future__ import annotations

from datetime import date

import pytest

from schemas import layout

DAY = date(2017, 7, 1)
RUN_ID = "run-20170701-abc"
INPUT_KEY = "3fa9c0d1e2b4"
ROOTS = ["/data/out", "/data/out/", "gs://bucket/prefix", "gs://bucket/prefix/", "gs://bucket"]


def test_partition_path_is_hive_channel_then_bahrain_day() -> None:
    assert layout.partition_path("kiosk", DAY) == "channel=kiosk/event_date=2017-07-01"


def test_partition_path_pads_month_and_day() -> None:
    assert layout.partition_path("portal", date(2017, 1, 5)).endswith("event_date=2017-01-05")


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("/data/out", "/data/out/payments/channel=portal/event_date=2017-07-01"),
        ("/data/out/", "/data/out/payments/channel=portal/event_date=2017-07-01"),
        ("gs://bucket/prefix", "gs://bucket/prefix/payments/channel=portal/event_date=2017-07-01"),
        ("gs://bucket", "gs://bucket/payments/channel=portal/event_date=2017-07-01"),
    ],
)
def test_payments_dir_is_under_root_payments(root: str, expected: str) -> None:
    assert layout.payments_dir(root, "portal", DAY) == expected


RUN = "20261202T010000Z-a1b2c3"


def test_an_aggregate_file_is_one_version_of_a_kind_and_month_named_by_its_run() -> None:
    assert (
        layout.aggregate_path("gs://bucket/prefix", "by_status", "2017-07", 3, RUN)
        == "gs://bucket/prefix/aggregates/by_status/month=2017-07/"
        "aggregate-v000003-20261202T010000Z-a1b2c3.parquet"
    )


def test_an_aggregate_file_name_gives_its_version_and_run() -> None:
    path = layout.aggregate_path("/out", "by_service", "2017-07", 12, RUN)
    assert layout.aggregate_version_of(path) == (12, RUN)


def test_the_unversioned_aggregate_file_of_earlier_releases_is_version_0() -> None:
    path = "/out/aggregates/by_status/month=2017-07/aggregate.parquet"
    assert layout.aggregate_version_of(path) == (0, None)


def test_a_file_no_run_named_is_no_aggregate_version() -> None:
    assert layout.aggregate_version_of("/out/aggregates/by_status/month=2017-07/x.parquet") is None


def test_aggregate_path_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown aggregate kind"):
        layout.aggregate_path("/out", "by_day", "2017-07", 1, RUN)


def test_part_name_is_a_parquet_file_with_a_five_digit_index() -> None:
    assert layout.part_name(INPUT_KEY, 7) == f"part-{INPUT_KEY}-00007.parquet"


@pytest.mark.parametrize("index", [0, 1, 99_999])
def test_input_key_of_inverts_part_name(index: int) -> None:
    assert layout.input_key_of(layout.part_name(INPUT_KEY, index)) == INPUT_KEY


def test_input_key_of_reads_a_full_path() -> None:
    path = layout.join(layout.payments_dir("gs://b/p", "kiosk", DAY), layout.part_name("ab12", 3))
    assert layout.input_key_of(path) == "ab12"


@pytest.mark.parametrize(
    "name", ["data.parquet", "part-XYZ-00001.parquet", "part-ab12-1.parquet", "part-ab12-00001.csv"]
)
def test_input_key_of_is_none_for_files_this_product_did_not_name(name: str) -> None:
    assert layout.input_key_of(name) is None


def test_rejected_path_is_under_rejected() -> None:
    assert layout.rejected_path("gs://bucket/prefix", INPUT_KEY) == (
        f"gs://bucket/prefix/rejected/part-{INPUT_KEY}-00000.parquet"
    )


def test_run_dir_is_under_runs() -> None:
    assert layout.run_dir("/out", RUN_ID) == f"/out/runs/{RUN_ID}"


@pytest.mark.parametrize("root", ROOTS)
def test_staged_path_is_under_this_runs_staging_folder(root: str) -> None:
    final = layout.join(layout.payments_dir(root, "kiosk", DAY), layout.part_name(INPUT_KEY, 0))
    staged = layout.staged(root, RUN_ID, final)
    assert staged.startswith(layout.staging_dir(root, RUN_ID) + "/")
    assert staged.startswith(root.rstrip("/") + f"/_staging/{RUN_ID}/")


@pytest.mark.parametrize("root", ROOTS)
def test_staged_path_keeps_the_relative_path_of_the_final_file(root: str) -> None:
    final = layout.join(layout.payments_dir(root, "kiosk", DAY), layout.part_name(INPUT_KEY, 0))
    staged = layout.staged(root, RUN_ID, final)
    relative = f"payments/channel=kiosk/event_date=2017-07-01/part-{INPUT_KEY}-00000.parquet"
    assert staged == f"{root.rstrip('/')}/_staging/{RUN_ID}/{relative}"


@pytest.mark.parametrize("root", ROOTS)
def test_staged_path_is_never_under_payments(root: str) -> None:
    final = layout.join(layout.payments_dir(root, "portal", DAY), layout.part_name(INPUT_KEY, 0))
    staged = layout.staged(root, RUN_ID, final)
    assert not staged.startswith(layout.join(root, layout.PAYMENTS) + "/")


def test_staged_path_of_a_rejected_file_is_under_staging() -> None:
    root = "gs://bucket/prefix"
    staged = layout.staged(root, RUN_ID, layout.rejected_path(root, INPUT_KEY))
    assert staged == f"gs://bucket/prefix/_staging/{RUN_ID}/rejected/part-{INPUT_KEY}-00000.parquet"


def test_join_keeps_the_gs_scheme_and_single_slashes() -> None:
    assert layout.join("gs://bucket/prefix/", "/payments/", "x") == "gs://bucket/prefix/payments/x"


def test_a_pane_file_names_the_streaming_run_that_wrote_it() -> None:
    name = layout.pane_part_name("20261123T120000Z-a1b2c3")
    assert layout.run_of_pane_part(name) == "20261123T120000Z-a1b2c3"


def test_pane_file_names_are_unique() -> None:
    assert layout.pane_part_name("20261123T120000Z-a1b2c3") != layout.pane_part_name(
        "20261123T120000Z-a1b2c3"
    )


def test_a_batch_file_names_no_streaming_run() -> None:
    assert layout.run_of_pane_part(layout.part_name("0123abcd", 0)) is None


@pytest.mark.parametrize("root", ["/out", "gs://bucket/prefix"])
def test_a_payments_files_day_is_read_back_from_its_partition(root: str) -> None:
    path = layout.join(layout.payments_dir(root, "kiosk", DAY), layout.part_name("0123abcd", 0))
    assert path.startswith(layout.channel_dir(root, "kiosk") + "/")
    assert layout.event_date_of(path) == DAY
