-- DuckDB views over the lake, the equivalent of bigquery_external_tables.sql. Set the output
-- root first, then read this file:
--   SET VARIABLE lake = 'gs://LAKE/payments-v1';   -- or a local folder
--   .read deploy/sql/duckdb_views.sql
-- gs:// needs DuckDB's httpfs extension and a GCS secret (INSTALL httpfs; LOAD httpfs;
-- CREATE SECRET (TYPE gcs, KEY_ID '...', SECRET '...') with an HMAC key of a reader account).
-- A view is checked when created: create them once the lake holds a committed run with at
-- least one rejected event (an empty folder has no files to read the schema from).
-- Aggregate amounts are DECIMAL(38,3); month files written before that are DECIMAL(18,3), so
-- the aggregate views combine the schemas of all their files (union_by_name) instead of
-- taking the first file's and failing on a wider value.
-- A month's aggregates are one file, `aggregate-v<version>-<run_id>.parquet` (schemas/layout.py):
-- each run that changes the month writes the next version and deletes the older ones once it
-- has committed. A run killed inside its commit can leave two until the next run; the views
-- take the highest version of each month (an unversioned `aggregate.parquet` of an earlier
-- release counts as version 0). Readers of committed runs only: tools.committed.

CREATE OR REPLACE VIEW payments AS
SELECT *
FROM read_parquet(
  getvariable('lake') || '/payments/*/*/*.parquet',
  hive_partitioning = true,
  hive_types = {'channel': 'VARCHAR', 'event_date': 'DATE'}
);

CREATE OR REPLACE VIEW rejected AS
SELECT *
FROM read_parquet(getvariable('lake') || '/rejected/*.parquet');

CREATE OR REPLACE VIEW aggregates_by_status AS
SELECT * EXCLUDE (filename)
FROM read_parquet(
  getvariable('lake') || '/aggregates/by_status/*/*.parquet',
  hive_partitioning = true,
  hive_types = {'month': 'VARCHAR'},
  union_by_name = true,
  filename = true
)
QUALIFY coalesce(try_cast(regexp_extract(filename, 'aggregate-v([0-9]+)-', 1) AS BIGINT), 0)
  = max(coalesce(try_cast(regexp_extract(filename, 'aggregate-v([0-9]+)-', 1) AS BIGINT), 0))
    OVER (PARTITION BY month);

CREATE OR REPLACE VIEW aggregates_by_service AS
SELECT * EXCLUDE (filename)
FROM read_parquet(
  getvariable('lake') || '/aggregates/by_service/*/*.parquet',
  hive_partitioning = true,
  hive_types = {'month': 'VARCHAR'},
  union_by_name = true,
  filename = true
)
QUALIFY coalesce(try_cast(regexp_extract(filename, 'aggregate-v([0-9]+)-', 1) AS BIGINT), 0)
  = max(coalesce(try_cast(regexp_extract(filename, 'aggregate-v([0-9]+)-', 1) AS BIGINT), 0))
    OVER (PARTITION BY month);
