"""The DuckDB views and BigQuery external tables of deploy/sql against a lake the real batch
pipeline wrote from generated landing files."""

from __future__ import annotations

import fnmatch
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.options import KEY_ENV
from schemas import layout
from schemas.arrow import payment_partition_schema, payment_schema
from tests.pipelines.helpers import make_landing, run_batch
from tests.samples import TEST_KEY
from transforms.core.aggregate import month_schema

RUN_ID = "20261202T010000Z-a1b2c3"

SQL = Path(__file__).parents[2] / "deploy" / "sql"
BIGQUERY_TYPES = {"string": "STRING", "date32[day]": "DATE"}
# BigQuery NUMERIC: 38 digits, 9 of them decimals; wider decimals need BIGNUMERIC.
NUMERIC_INTEGER_DIGITS, NUMERIC_SCALE = 29, 9


@dataclass(frozen=True)
class Lake:
    root: Path
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ExternalTable:
    name: str
    partition_columns: list[tuple[str, str]]
    uris: list[str]
    options: str


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """Two generated days, with invalid lines and duplicates, through the batch pipeline."""
    root = tmp_path_factory.mktemp("lake")
    make_landing(root, start=date(2017, 6, 29), days=2, scale=0.01, invalid_rate=0.05)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, TEST_KEY.decode())
        manifest = run_batch(str(root / "landing" / "*" / "*.jsonl*"), root / "out")
    assert manifest["reconciles"]
    return Lake(root / "out", manifest)


@pytest.fixture
def duck(lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with deploy/sql/duckdb_views.sql run over the lake."""
    connection = duckdb.connect()
    connection.execute("SET VARIABLE lake = ?", [str(lake.root)])
    connection.execute((SQL / "duckdb_views.sql").read_text())
    yield connection
    connection.close()


def bigquery_tables() -> dict[str, ExternalTable]:
    ddl = (SQL / "bigquery_external_tables.sql").read_text()
    ddl = "\n".join(line for line in ddl.splitlines() if not line.lstrip().startswith("--"))
    tables = {}
    statements = re.finditer(
        r"CREATE OR REPLACE EXTERNAL TABLE `\$\{PROJECT\}\.\$\{DATASET\}\.(\w+)`(.*?);", ddl, re.S
    )
    for statement in statements:
        name, body = statement.groups()
        columns = re.search(r"WITH PARTITION COLUMNS \((.*?)\)", body, re.S)
        options = re.search(r"OPTIONS \((.*)\)", body, re.S)
        assert options, name
        tables[name] = ExternalTable(
            name=name,
            partition_columns=[
                (column.split()[0], column.split()[1])
                for column in (columns.group(1).split(",") if columns else [])
            ],
            uris=re.findall(r"uris = \['([^']+)'\]", options.group(1)),
            options=options.group(1),
        )
    return tables


def option(table: ExternalTable, name: str) -> str | None:
    found = re.search(rf"\b{name} = ([^,\n]+)", table.options)
    return found.group(1).strip().strip("'") if found else None


def decimal_target_types(table: ExternalTable) -> set[str] | None:
    found = re.search(r"\bdecimal_target_types = \[([^\]]*)\]", table.options)
    return {t.strip().strip("'") for t in found.group(1).split(",")} if found else None


def fits_numeric(decimal: pa.Decimal128Type) -> bool:
    integer_digits = decimal.precision - decimal.scale
    return integer_digits <= NUMERIC_INTEGER_DIGITS and decimal.scale <= NUMERIC_SCALE


def lake_files(lake: Lake) -> list[str]:
    """Every file under the lake, relative to it, as BigQuery would list object names."""
    return sorted(str(p.relative_to(lake.root)) for p in lake.root.rglob("*") if p.is_file())


def scalar(duck: duckdb.DuckDBPyConnection, query: str) -> Any:
    (row,) = duck.sql(query).fetchall()
    return row[0]


def duckdb_views() -> set[str]:
    return set(re.findall(r"CREATE OR REPLACE VIEW (\w+)", (SQL / "duckdb_views.sql").read_text()))


def test_duckdb_payments_view_reads_every_accepted_row(
    duck: duckdb.DuckDBPyConnection, lake: Lake
) -> None:
    assert scalar(duck, "select count(*) from payments") == lake.manifest["counts"]["accepted"]


def test_duckdb_rejected_view_reads_every_rejected_row(
    duck: duckdb.DuckDBPyConnection, lake: Lake
) -> None:
    assert scalar(duck, "select count(*) from rejected") == lake.manifest["counts"]["rejected"] > 0


def test_duckdb_aggregates_count_every_accepted_payment(
    duck: duckdb.DuckDBPyConnection, lake: Lake
) -> None:
    for view in ("aggregates_by_status", "aggregates_by_service"):
        assert (
            scalar(duck, f"select sum(payments) from {view}") == lake.manifest["counts"]["accepted"]
        ), view


def test_duckdb_partition_columns_are_typed(duck: duckdb.DuckDBPyConnection) -> None:
    types = {
        (view, column): kind
        for view in ("payments", "aggregates_by_status")
        for column, kind, *_ in duck.sql(f"describe {view}").fetchall()
    }
    assert types[("payments", "channel")] == "VARCHAR"
    assert types[("payments", "event_date")] == "DATE"
    assert types[("aggregates_by_status", "month")] == "VARCHAR"


def test_duckdb_day_filter_reads_that_day(duck: duckdb.DuckDBPyConnection) -> None:
    rows = duck.sql(
        "select distinct event_date from payments where event_date = date '2017-06-29'"
    ).fetchall()
    assert rows == [(date(2017, 6, 29),)]


def test_bigquery_and_duckdb_define_the_same_tables() -> None:
    assert set(bigquery_tables()) == duckdb_views()


def test_bigquery_partitioned_tables_require_a_partition_filter() -> None:
    for table in bigquery_tables().values():
        required = option(table, "require_hive_partition_filter")
        assert required == ("true" if table.partition_columns else None), table.name


def test_bigquery_payments_partitions_are_the_pipelines() -> None:
    expected = [(f.name, BIGQUERY_TYPES[str(f.type)]) for f in payment_partition_schema()]
    assert bigquery_tables()["payments"].partition_columns == expected


def test_bigquery_tables_read_the_datasets_of_the_layout() -> None:
    prefixes = {name: t.uris[0].removeprefix("${LAKE}/") for name, t in bigquery_tables().items()}
    assert prefixes == {
        "payments": f"{layout.PAYMENTS}/*",
        "rejected": f"{layout.REJECTED}/*.parquet",
        **{
            f"aggregates_{kind}": f"{layout.AGGREGATES}/{kind}/*" for kind in layout.AGGREGATE_KINDS
        },
    }


def test_bigquery_uris_match_only_the_files_the_batch_published(lake: Lake) -> None:
    files = lake_files(lake)
    for table in bigquery_tables().values():
        (uri,) = table.uris
        matched = fnmatch.filter(files, uri.removeprefix("${LAKE}/"))
        assert matched, table.name
        assert all(f.endswith(".parquet") for f in matched), table.name
        assert not [f for f in matched if f.startswith((layout.STAGING, layout.RUNS))]


def test_bigquery_hive_paths_hold_exactly_the_partition_columns(lake: Lake) -> None:
    files = lake_files(lake)
    for table in (t for t in bigquery_tables().values() if t.partition_columns):
        prefix = option(table, "hive_partition_uri_prefix")
        assert prefix, table.name
        assert table.uris[0] == f"{prefix}/*"
        relative = prefix.removeprefix("${LAKE}/")
        keys = [name for name, _ in table.partition_columns]
        for path in fnmatch.filter(files, f"{relative}/*"):
            directories = path.removeprefix(f"{relative}/").split("/")[:-1]
            assert [d.split("=", 1)[0] for d in directories] == keys, path


def test_duckdb_aggregate_amounts_are_decimal_38_3(duck: duckdb.DuckDBPyConnection) -> None:
    for view in ("aggregates_by_status", "aggregates_by_service"):
        types = {column: kind for column, kind, *_ in duck.sql(f"describe {view}").fetchall()}
        assert types["amount"] == "DECIMAL(38,3)", view


def test_duckdb_aggregates_read_a_month_written_with_decimal_18_3(
    lake: Lake, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    shutil.copytree(lake.root, root)
    old, wide = month_schema("by_status"), month_schema("by_status")
    old = old.set(
        old.get_field_index("amount"), old.field("amount").with_type(pa.decimal128(18, 3))
    )
    row = {"channel": "portal", "event_date": date(2017, 1, 1), "status": "SUCCESS", "payments": 1}
    for month, schema, amount in [
        ("2017-01", old, Decimal("1.000")),  # first by name: its schema must not be the view's
        ("2017-12", wide, Decimal("99999999999999999999.000")),  # a sum beyond decimal(18,3)
    ]:
        # A later version than any the lake holds: the one the views read for its month.
        path = Path(layout.aggregate_path(str(root), "by_status", month, 999, RUN_ID))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([{**row, "amount": amount}], schema=schema), path)
    connection = duckdb.connect()
    connection.execute("SET VARIABLE lake = ?", [str(root)])
    connection.execute((SQL / "duckdb_views.sql").read_text())
    amounts = connection.sql(
        "select month, amount from aggregates_by_status where month in ('2017-01', '2017-12')"
        " order by month"
    ).fetchall()
    assert amounts == [
        ("2017-01", Decimal("1.000")),
        ("2017-12", Decimal("99999999999999999999.000")),
    ]


def test_bigquery_aggregate_amounts_need_and_get_bignumeric() -> None:
    for kind in layout.AGGREGATE_KINDS:
        amount = month_schema(kind).field("amount").type
        assert not fits_numeric(amount), kind
        assert decimal_target_types(bigquery_tables()[f"aggregates_{kind}"]) == {
            "NUMERIC",
            "BIGNUMERIC",
        }, kind


def test_bigquery_payment_amounts_fit_numeric() -> None:
    assert fits_numeric(payment_schema().field("amount").type)
    assert decimal_target_types(bigquery_tables()["payments"]) in (None, {"NUMERIC"})
