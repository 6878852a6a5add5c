-- BigQuery external tables over the lake the batch and streaming jobs write (schemas/layout.py).
-- deploy/create_bigquery_tables.sh fills in ${PROJECT}, ${DATASET} and ${LAKE} (the pipelines'
-- gs:// output root). Columns come from the Parquet files; partition columns from the Hive paths.
-- Partitioned tables refuse a query without a filter on a partition column, so a query for one
-- day or month reads that day's or month's files, not the whole history.
-- Payment amounts are Parquet DECIMAL(18,3) and read as NUMERIC. Aggregate amounts are sums,
-- DECIMAL(38,3): 35 integer digits, more than NUMERIC's 29, so those tables allow BIGNUMERIC
-- (without it BigQuery would still pick NUMERIC, its default for Parquet, and fail any query
-- reading a sum beyond NUMERIC's range instead of returning it).
-- Only committed files are ever under these folders (runs stage under _staging/), but on GCS a
-- commit copies file by file: trust a run's rows once runs/<run_id>/_SUCCESS exists.
-- A month's aggregates are one file, `aggregate-v<version>-<run_id>.parquet`; a run killed
-- inside its commit can leave a second version until the next run commits: the month's figures
-- are those of its highest version (WHERE _FILE_NAME = the month's max), as the DuckDB views do.

CREATE OR REPLACE EXTERNAL TABLE `${PROJECT}.${DATASET}.payments`
WITH PARTITION COLUMNS (
  channel STRING,
  event_date DATE
)
OPTIONS (
  format = 'PARQUET',
  uris = ['${LAKE}/payments/*'],
  hive_partition_uri_prefix = '${LAKE}/payments',
  require_hive_partition_filter = true
);

-- Not partitioned: one file per batch input and per streaming pane.
CREATE OR REPLACE EXTERNAL TABLE `${PROJECT}.${DATASET}.rejected`
OPTIONS (
  format = 'PARQUET',
  uris = ['${LAKE}/rejected/*.parquet']
);

CREATE OR REPLACE EXTERNAL TABLE `${PROJECT}.${DATASET}.aggregates_by_status`
WITH PARTITION COLUMNS (
  month STRING
)
OPTIONS (
  format = 'PARQUET',
  uris = ['${LAKE}/aggregates/by_status/*'],
  hive_partition_uri_prefix = '${LAKE}/aggregates/by_status',
  require_hive_partition_filter = true,
  decimal_target_types = ['NUMERIC', 'BIGNUMERIC']
);

CREATE OR REPLACE EXTERNAL TABLE `${PROJECT}.${DATASET}.aggregates_by_service`
WITH PARTITION COLUMNS (
  month STRING
)
OPTIONS (
  format = 'PARQUET',
  uris = ['${LAKE}/aggregates/by_service/*'],
  hive_partition_uri_prefix = '${LAKE}/aggregates/by_service',
  require_hive_partition_filter = true,
  decimal_target_types = ['NUMERIC', 'BIGNUMERIC']
);
