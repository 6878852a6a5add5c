#!/usr/bin/env bash
# Launch the streaming Flex Template, or replace the running job in place (--update).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/run_streaming.sh [--update]

Launches the streaming template as the Dataflow job JOB_NAME (default payments-streaming).
--update replaces the running job of that name in place, keeping its de-duplication state:
steps are matched by name, so a renamed or removed step needs TRANSFORM_NAME_MAPPINGS
(old=new,...; map a removed step to an empty name: old=). To stop the job, drain it
(deploy/README.md).

required environment:
  PROJECT REGION BUCKET REPOSITORY TAG   as given to deploy/build_templates.sh
  SUBSCRIPTION          projects/P/subscriptions/S
  LAKE                  gs:// output root, the same as the nightly batch's
  SERVICE_ACCOUNT       e-mail of the streaming job's service account (deploy/IAM.md)
  PSEUDONYM_KEY_SECRET  projects/P/secrets/S/versions/V, the same version as the batch's
optional:
  JOB_NAME (default payments-streaming)   MAX_WORKERS (default 5)
  TRANSFORM_NAME_MAPPINGS   with --update only
  DRY_RUN=1  print the command instead of running it
USAGE
}

[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }
source "$(dirname "$0")/lib.sh"
update=()
case "${1:-}" in
  "") ;;
  --update) update=(--update) ;;
  *) usage >&2; exit 2 ;;
esac
require_env PROJECT REGION BUCKET REPOSITORY TAG SUBSCRIPTION LAKE SERVICE_ACCOUNT PSEUDONYM_KEY_SECRET
if [[ -n "${TRANSFORM_NAME_MAPPINGS:-}" ]]; then
  if ((${#update[@]} == 0)); then
    echo "error: TRANSFORM_NAME_MAPPINGS only applies with --update" >&2
    exit 2
  fi
  update+=(--transform-name-mappings="$TRANSFORM_NAME_MAPPINGS")
fi

run gcloud dataflow flex-template run "${JOB_NAME:-payments-streaming}" \
  --project="$PROJECT" \
  --region="$REGION" \
  --template-file-gcs-location="$(template_path streaming)" \
  --service-account-email="$SERVICE_ACCOUNT" \
  --staging-location="gs://$BUCKET/staging" \
  --temp-location="gs://$BUCKET/tmp" \
  --enable-streaming-engine \
  --max-workers="${MAX_WORKERS:-5}" \
  --additional-user-labels=pipeline=payments-streaming \
  --parameters="input_subscription=$SUBSCRIPTION" \
  --parameters="output=$LAKE" \
  --parameters="pseudonym_key_secret=$PSEUDONYM_KEY_SECRET" \
  --parameters="sdk_container_image=$(worker_image)" \
  --parameters=sdk_location=container \
  "${update[@]}"
