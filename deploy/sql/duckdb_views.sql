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
SELECT *
FROM read_parquet(
  getvariable('lake') || '/aggregates/by_status/*/aggregate.parquet',
  hive_partitioning = true,
  hive_types = {'month': 'VARCHAR'},
  union_by_name = true
);

CREATE OR REPLACE VIEW aggregates_by_service AS
SELECT *
FROM read_parquet(
  getvariable('lake') || '/aggregates/by_service/*/aggregate.parquet',
  hive_partitioning = true,
  hive_types = {'month': 'VARCHAR'},
  union_by_name = true
);
