#!/usr/bin/env bash
# Launch the nightly batch Flex Template for one Bahrain day, or for each day of a range in turn.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/run_batch.sh [DAY [LAST_DAY]]

Launches the batch template on LANDING/DAY/*.jsonl* (DAY: YYYY-MM-DD, default the previous
Bahrain day) as the Dataflow job payments-batch-YYYYMMDD, and waits for it to finish.
With LAST_DAY, does the same for every day from DAY to LAST_DAY, one job at a time: a run
rewrites the aggregate files of the months it touches, so runs must not overlap.
Re-running a day is safe: its output files are named from its input and are overwritten.

required environment:
  PROJECT REGION BUCKET REPOSITORY TAG   as given to deploy/build_templates.sh
  LANDING               gs:// root of the landing days (LANDING/YYYY-MM-DD/*.jsonl*)
  LAKE                  gs:// output root (payments/, rejected/, aggregates/, runs/)
  SERVICE_ACCOUNT       e-mail of the batch job's service account (deploy/IAM.md)
  PSEUDONYM_KEY_SECRET  projects/P/secrets/S/versions/V
optional:
  MAX_WORKERS (default 10)
  WAIT=0     for a single day, return once the job is launched
  DRY_RUN=1  print the commands instead of running them
USAGE
}

[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }
source "$(dirname "$0")/lib.sh"
(($# <= 2)) || { usage >&2; exit 2; }
require_env PROJECT REGION BUCKET REPOSITORY TAG LANDING LAKE SERVICE_ACCOUNT PSEUDONYM_KEY_SECRET

first="${1:-$(previous_bahrain_day)}"
last="${2:-$first}"
require_day "$first"
require_day "$last"
if [[ "$last" < "$first" ]]; then
  echo "error: LAST_DAY $last is before DAY $first" >&2
  exit 2
fi
wait_for_each=$([[ "$first" != "$last" ]] && echo 1 || echo "${WAIT:-1}")

# Wait until a job ends; fail unless it succeeded.
wait_for_job() {
  local job_id="$1" state
  while true; do
    state="$(gcloud dataflow jobs describe "$job_id" --project="$PROJECT" --region="$REGION" \
      --format='value(currentState)')"
    case "$state" in
      JOB_STATE_DONE) return 0 ;;
      JOB_STATE_FAILED | JOB_STATE_CANCELLED | JOB_STATE_DRAINED | JOB_STATE_UPDATED)
        echo "error: job $job_id ended in $state" >&2
        return 1
        ;;
    esac
    sleep 30
  done
}

launch_day() {
  local day="$1" job_id
  local command=(
    gcloud dataflow flex-template run "payments-batch-${day//-/}"
    --project="$PROJECT"
    --region="$REGION"
    --template-file-gcs-location="$(template_path batch)"
    --service-account-email="$SERVICE_ACCOUNT"
    --staging-location="gs://$BUCKET/staging"
    --temp-location="gs://$BUCKET/tmp"
    --max-workers="${MAX_WORKERS:-10}"
    --additional-user-labels="pipeline=payments-batch,day=$day"
    --parameters="input=${LANDING%/}/$day/*.jsonl*"
    --parameters="output=$LAKE"
    --parameters="pseudonym_key_secret=$PSEUDONYM_KEY_SECRET"
    --parameters="sdk_container_image=$(worker_image)"
    --parameters=sdk_location=container
    --format='value(job.id)'
  )
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    run "${command[@]}"
    return
  fi
  job_id="$("${command[@]}")"
  echo "==> $day: job $job_id" >&2
  if [[ "$wait_for_each" == 1 ]]; then
    wait_for_job "$job_id"
    echo "==> $day: done; check ${LAKE%/}/runs/<newest run_id>/manifest.json (deploy/README.md)" >&2
  fi
}

day="$first"
while [[ ! "$day" > "$last" ]]; do
  launch_day "$day"
  day="$(date -u -d "$day + 1 day" +%F)"
done
