"""DuckDB baseline for the batch pipeline: the same job in SQL, as one child process.

    python benchmarks/duckdb_baseline.py --input 'landing/*/*.jsonl' --output out-duckdb

Reads the raw JSON lines of the three channel shapes (contract.md), normalises them into one
row (event_id, channel, service_code, amount DECIMAL(18,3), status, occurred_at TIMESTAMPTZ UTC,
event_date = Bahrain day), keeps the rows that pass basic validity checks, de-duplicates by
event_id, and writes Hive-partitioned Parquet (zstd), the rejected lines and per
(event_date, channel, status) and (event_date, channel, service_code, status) aggregates.

It is a yardstick, not a second implementation: validation is simpler than the pipeline's
pydantic models (see benchmarks/README.md), but every line is parsed, checked, normalised,
hashed (the CPR pseudonym), shuffled by event_id and written, as the pipeline does.

The last line on stdout is a JSON summary: counts and seconds per phase.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import duckdb

# (column alias, JSON path) extracted from every line with one parse per line. Which ones
# matter depends on the channel; the others are NULL.
FIELDS: tuple[tuple[str, str], ...] = (
    ("channel", "$.channel"),
    # portal
    ("p_txn_id", "$.txn_id"),
    ("p_service_code", "$.service.code"),
    ("p_amount_fils", "$.amount_fils"),
    ("p_currency", "$.currency"),
    ("p_status", "$.status"),
    ("p_paid_at", "$.paid_at"),
    ("p_cpr", "$.payer.cpr"),
    ("p_method", "$.method"),
    # mobile_app
    ("a_event_id", "$.event_id"),
    ("a_service_code", "$.service_code"),
    ("a_amount", "$.payment.amount"),
    ("a_currency", "$.payment.currency"),
    ("a_outcome", "$.payment.outcome"),
    ("a_method", "$.payment.method"),
    ("a_ts", "$.ts"),
    ("a_cpr", "$.user.cpr"),
    ("a_app_id", "$.app.id"),
    ("a_app_os", "$.app.os"),
    # kiosk
    ("k_kiosk_id", "$.kiosk_id"),
    ("k_seq", "$.seq"),
    ("k_site", "$.site"),
    ("k_service", "$.service"),
    ("k_amount", "$.amount"),
    ("k_local_time", "$.local_time"),
    ("k_result", "$.result"),
    ("k_card", "$.card"),
    ("k_cpr", "$.cpr"),
)
# JSON types that the strict checks need: integers must be JSON integers, text must be text.
TYPES: tuple[tuple[str, str], ...] = (
    ("t_amount_fils", "$.amount_fils"),
    ("t_ts", "$.ts"),
    ("t_seq", "$.seq"),
    ("t_a_amount", "$.payment.amount"),
    ("t_k_amount", "$.amount"),
    ("t_paid_at", "$.paid_at"),
    ("t_local_time", "$.local_time"),
)
# 2000-01-01 and 2100-01-01, Bahrain time (UTC+3), as epoch milliseconds: the plausible range.
EARLIEST_MS, LATEST_MS = 946_674_000_000, 4_102_434_000_000
STATUS_SQL = """CASE channel || ':' || raw_status
    WHEN 'portal:PAID' THEN 'SUCCESS' WHEN 'portal:DECLINED' THEN 'FAILED'
    WHEN 'portal:REFUNDED' THEN 'REFUNDED'
    WHEN 'mobile_app:success' THEN 'SUCCESS' WHEN 'mobile_app:failure' THEN 'FAILED'
    WHEN 'mobile_app:refund' THEN 'REFUNDED'
    WHEN 'kiosk:OK' THEN 'SUCCESS' WHEN 'kiosk:DECLINED' THEN 'FAILED'
    WHEN 'kiosk:CANCELLED' THEN 'CANCELLED' WHEN 'kiosk:REFUNDED' THEN 'REFUNDED' END"""
INTEGER_TYPES = "('UBIGINT', 'BIGINT')"
CODE_RE = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
AMOUNT_RE = r"^[0-9]{1,15}(\.[0-9]{1,3})?$"
CPR_RE = "^[0-9]{9}$"
OFFSET_TIME_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"  # date and time
    r"(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"  # optional fraction, mandatory offset
)
LOCAL_TIME_RE = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"


def _sql_list(paths: Sequence[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"'{path}'" for _, path in paths) + "]"


def _picks(column: str, names: Sequence[tuple[str, str]]) -> str:
    return ",\n       ".join(f"{column}[{i}] AS {alias}" for i, (alias, _) in enumerate(names, 1))


def parse_sql(source: str, max_object_bytes: int) -> str:
    """SELECT of one row per input line: the extracted fields and their JSON types."""
    return f"""
SELECT filename AS source_file, json AS raw,
       {_picks("f", FIELDS)},
       {_picks("t", TYPES)}
FROM (
  SELECT filename, json,
         json_extract_string(json, {_sql_list(FIELDS)}) AS f,
         json_type(json, {_sql_list(TYPES)}) AS t
  FROM read_ndjson_objects({source}, ignore_errors = true, filename = true,
                           maximum_object_size = {max_object_bytes})
)"""


def normalise_sql(parsed: str) -> str:
    """One normalised row per line with `ok` (passes validity) and a rejection `reason`."""
    return f"""
WITH shaped AS (
  SELECT source_file, raw, channel,
    CASE channel WHEN 'portal' THEN 'portal:' || p_txn_id
                 WHEN 'mobile_app' THEN 'mobile_app:' || a_event_id
                 WHEN 'kiosk' THEN 'kiosk:' || k_kiosk_id || ':' || k_seq END AS event_id,
    CASE channel WHEN 'portal' THEN p_service_code WHEN 'mobile_app' THEN a_service_code
                 WHEN 'kiosk' THEN k_service END AS service_code,
    try_cast(CASE channel
      WHEN 'portal' THEN CASE WHEN t_amount_fils IN {INTEGER_TYPES}
                              THEN try_cast(p_amount_fils AS BIGINT) END
                              * CAST(0.001 AS DECIMAL(18, 3))
      WHEN 'mobile_app' THEN CASE WHEN t_a_amount = 'VARCHAR'
                                   AND regexp_full_match(a_amount, '{AMOUNT_RE}')
                              THEN try_cast(a_amount AS DECIMAL(18, 3)) END
      WHEN 'kiosk' THEN CASE WHEN t_k_amount = 'VARCHAR'
                              AND regexp_full_match(k_amount, '{AMOUNT_RE}')
                         THEN try_cast(k_amount AS DECIMAL(18, 3)) END
    END AS DECIMAL(18, 3)) AS amount,
    CASE channel WHEN 'portal' THEN p_currency WHEN 'mobile_app' THEN a_currency
                 WHEN 'kiosk' THEN 'BHD' END AS currency,
    CASE channel WHEN 'portal' THEN p_status WHEN 'mobile_app' THEN a_outcome
                 WHEN 'kiosk' THEN k_result END AS raw_status,
    CASE channel WHEN 'portal' THEN p_method WHEN 'mobile_app' THEN a_method END
      AS payment_method,
    CASE channel
      WHEN 'portal' THEN CASE WHEN t_paid_at = 'VARCHAR'
                               AND regexp_full_match(p_paid_at, '{OFFSET_TIME_RE}')
                          THEN try_cast(p_paid_at AS TIMESTAMPTZ)::TIMESTAMP END
      WHEN 'mobile_app' THEN CASE WHEN t_ts IN {INTEGER_TYPES}
                                   AND try_cast(a_ts AS BIGINT)
                                       BETWEEN {EARLIEST_MS} AND {LATEST_MS - 1}
                              THEN make_timestamp(a_ts::BIGINT * 1000) END
      WHEN 'kiosk' THEN CASE WHEN t_local_time = 'VARCHAR'
                              AND regexp_full_match(k_local_time, '{LOCAL_TIME_RE}')
                         THEN try_strptime(k_local_time, '%Y-%m-%d %H:%M:%S')
                              - INTERVAL 3 HOUR END
    END AS occurred_utc,
    CASE channel WHEN 'portal' THEN p_cpr WHEN 'mobile_app' THEN a_cpr
                 WHEN 'kiosk' THEN k_cpr END AS cpr,
    CASE WHEN channel = 'kiosk' THEN right(regexp_replace(k_card, '[^0-9]', '', 'g'), 4) END
      AS card_last4,
    CASE WHEN channel = 'kiosk' THEN k_kiosk_id END AS kiosk_id,
    CASE WHEN channel = 'kiosk' THEN k_site END AS kiosk_site,
    CASE WHEN channel = 'mobile_app' THEN a_app_id END AS app_id,
    CASE WHEN channel = 'mobile_app' THEN a_app_os END AS app_os,
    (channel <> 'kiosk' OR t_seq IN {INTEGER_TYPES}) AS seq_ok
  FROM {parsed}
), checked AS (
  SELECT *, {STATUS_SQL} AS status,
    CASE
      WHEN raw IS NULL THEN 'INVALID_JSON'
      WHEN channel IS NULL OR channel NOT IN ('portal', 'mobile_app', 'kiosk')
        THEN 'UNKNOWN_CHANNEL'
      WHEN event_id IS NULL OR NOT seq_ok OR length(event_id) > 160 THEN 'MISSING_ID'
      WHEN service_code IS NULL OR NOT regexp_full_match(service_code, '{CODE_RE}')
        THEN 'INVALID_SERVICE'
      WHEN amount IS NULL OR amount <= 0 THEN 'INVALID_AMOUNT'
      WHEN currency IS DISTINCT FROM 'BHD' THEN 'INVALID_CURRENCY'
      WHEN occurred_utc IS NULL
        OR NOT year(occurred_utc + INTERVAL 3 HOUR) BETWEEN 2000 AND 2099
        THEN 'INVALID_TIMESTAMP'
      WHEN ({STATUS_SQL}) IS NULL THEN 'INVALID_STATUS'
      WHEN (channel <> 'kiosk' OR cpr IS NOT NULL)
        AND NOT coalesce(regexp_full_match(cpr, '{CPR_RE}'), false) THEN 'INVALID_CPR'
    END AS reason
  FROM shaped
)
SELECT * EXCLUDE (raw, raw_status, seq_ok), reason IS NULL AS ok,
       -- only rejected lines keep their text (cut like the pipeline's 64 KiB line limit)
       CASE WHEN reason IS NOT NULL THEN left(raw::VARCHAR, 65536) END AS raw
FROM checked"""


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Do the whole job; return counts and seconds per phase."""
    key = os.environ.get("PAYMENTS_PSEUDONYM_KEY", "duckdb-baseline-key")
    con = duckdb.connect()
    con.execute(f"SET threads = {int(args.threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    source = "[" + ", ".join(f"'{p}'" for p in args.input.split(",") if p.strip()) + "]"
    out = args.output.rstrip("/")
    os.makedirs(out, exist_ok=True)
    seconds: dict[str, float] = {}

    began = time.perf_counter()
    parsed = parse_sql(source, args.max_object_bytes)
    con.execute(f"CREATE TEMP TABLE lines AS {normalise_sql('(' + parsed + ')')}")
    seconds["parse_validate"] = time.perf_counter() - began

    mark = time.perf_counter()
    # First occurrence wins (files in path order); the CPR becomes a keyed SHA-256 pseudonym.
    con.execute(
        """
        CREATE TEMP TABLE accepted AS
        SELECT event_id, service_code, amount, currency, status, payment_method,
               occurred_utc::TIMESTAMPTZ AS occurred_at,
               CASE WHEN cpr IS NOT NULL THEN sha256($key || cpr) END AS payer_key,
               card_last4, kiosk_id, kiosk_site, app_id, app_os, source_file,
               channel, CAST(occurred_utc + INTERVAL 3 HOUR AS DATE) AS event_date
        FROM lines
        WHERE ok
        QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY source_file) = 1
        """,
        {"key": key},
    )
    seconds["dedup"] = time.perf_counter() - mark

    mark = time.perf_counter()
    con.execute(
        f"""COPY accepted TO '{out}/payments'
            (FORMAT parquet, PARTITION_BY (channel, event_date), COMPRESSION zstd)"""
    )
    os.makedirs(f"{out}/rejected", exist_ok=True)
    con.execute(
        f"""COPY (SELECT source_file, channel, reason, raw FROM lines WHERE NOT ok)
            TO '{out}/rejected/rejected.parquet' (FORMAT parquet, COMPRESSION zstd)"""
    )
    seconds["write_payments"] = time.perf_counter() - mark

    mark = time.perf_counter()
    os.makedirs(f"{out}/aggregates", exist_ok=True)
    con.execute(
        f"""COPY (SELECT event_date, channel, status, count(*) AS payments,
                         sum(amount)::DECIMAL(18, 3) AS amount
                  FROM accepted GROUP BY ALL)
            TO '{out}/aggregates/by_status'
            (FORMAT parquet, PARTITION_BY (channel, event_date), COMPRESSION zstd)"""
    )
    con.execute(
        f"""COPY (SELECT event_date, channel, service_code, status, count(*) AS payments,
                         sum(amount)::DECIMAL(18, 3) AS amount
                  FROM accepted GROUP BY ALL)
            TO '{out}/aggregates/by_service'
            (FORMAT parquet, PARTITION_BY (channel, event_date), COMPRESSION zstd)"""
    )
    seconds["aggregates"] = time.perf_counter() - mark

    read, valid, rejected = con.execute(
        "SELECT count(*), count(*) FILTER (ok), count(*) FILTER (NOT ok) FROM lines"
    ).fetchall()[0]
    accepted = con.execute("SELECT count(*) FROM accepted").fetchall()[0][0]
    reasons = dict(
        con.execute("SELECT reason, count(*) FROM lines WHERE NOT ok GROUP BY ALL").fetchall()
    )
    seconds["total"] = time.perf_counter() - began
    return {
        "read": read,
        "accepted": accepted,
        "rejected": rejected,
        "duplicates": valid - accepted,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
        "duckdb": duckdb.__version__,
        "threads": int(args.threads),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the JSON summary as the last line."""
    parser = argparse.ArgumentParser(
        description="DuckDB baseline of the batch pipeline (see the module docstring)."
    )
    parser.add_argument("--input", required=True, help="file, glob or comma-separated list")
    parser.add_argument("--output", required=True, help="output directory (created)")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    parser.add_argument("--memory-limit", default="", help="DuckDB memory_limit, e.g. 2GB")
    parser.add_argument(
        "--max-object-bytes",
        type=int,
        default=4 << 20,
        help="largest JSON line DuckDB will parse (default 4 MiB; the generator's huge "
        "lines are just over 1 MiB and must be read to be rejected)",
    )
    summary = run(parser.parse_args(argv))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
