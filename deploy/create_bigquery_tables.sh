#!/usr/bin/env bash
# Create (or replace) the BigQuery external tables over the lake.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/create_bigquery_tables.sh

Runs deploy/sql/bigquery_external_tables.sql with its placeholders filled in: external tables
payments, rejected, aggregates_by_status and aggregates_by_service over LAKE. The dataset must
exist, in the location of the lake's bucket (bq mk --dataset --location=... PROJECT:DATASET).

required environment:
  PROJECT   project of the dataset
  DATASET   BigQuery dataset
  LAKE      gs:// output root of the pipelines, e.g. gs://LAKE/payments-v1
optional:
  LOCATION  BigQuery location (default: REGION, else me-central2)
  DRY_RUN=1 print the SQL, then the command, instead of running them
USAGE
}

[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }
source "$(dirname "$0")/lib.sh"
require_env PROJECT DATASET LAKE
if [[ ! "$LAKE" =~ ^gs://[^[:space:]]+$ ]]; then
  echo "error: LAKE must be a gs:// path, got $LAKE" >&2
  exit 2
fi

sql="$(sed -e "s|\${PROJECT}|$PROJECT|g" -e "s|\${DATASET}|$DATASET|g" -e "s|\${LAKE}|${LAKE%/}|g" \
  "$ROOT/deploy/sql/bigquery_external_tables.sql")"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%s\n' "$sql"
fi
# bq reads the statements from standard input.
run bq query --project_id="$PROJECT" --location="${LOCATION:-${REGION:-me-central2}}" \
  --use_legacy_sql=false <<<"$sql"
