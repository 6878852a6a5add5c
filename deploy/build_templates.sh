#!/usr/bin/env bash
# Build the worker image, the two launcher images and the two Flex Template specs.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/build_templates.sh

Builds with Cloud Build, from this checkout:
  REGION-docker.pkg.dev/PROJECT/REPOSITORY/payments-worker:TAG              (SDK container, both jobs)
  REGION-docker.pkg.dev/PROJECT/REPOSITORY/payments-launcher-batch:TAG      (Flex Template launcher)
  REGION-docker.pkg.dev/PROJECT/REPOSITORY/payments-launcher-streaming:TAG
then writes the template specs gs://BUCKET/templates/payments-{batch,streaming}-TAG.json.
The Beam version comes from pyproject.toml (the only place it is pinned).

required environment:
  PROJECT      Google Cloud project id
  REGION       Dataflow and Artifact Registry region, e.g. me-central2
  BUCKET       bucket for templates, staging and temp files (no gs://)
  REPOSITORY   Artifact Registry Docker repository in REGION
optional:
  TAG          image and template version (default: git commit, "-dirty" when uncommitted)
  DRY_RUN=1    print the commands instead of running them
USAGE
}

[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }
source "$(dirname "$0")/lib.sh"
require_env PROJECT REGION BUCKET REPOSITORY

if [[ -z "${TAG:-}" ]]; then
  TAG="$(git -C "$ROOT" rev-parse --short HEAD)"
  [[ -z "$(git -C "$ROOT" status --porcelain)" ]] || TAG="$TAG-dirty"
fi
BEAM_VERSION="$(beam_version)"
echo "==> images and templates $TAG (apache-beam $BEAM_VERSION)" >&2

run gcloud builds submit "$ROOT" \
  --project="$PROJECT" \
  --region="$REGION" \
  --config="$ROOT/deploy/cloudbuild.yaml" \
  --ignore-file=deploy/gcloudignore \
  --substitutions="_BEAM_VERSION=$BEAM_VERSION,_IMAGE_PREFIX=$(image_prefix),_TAG=$TAG"

for pipeline in batch streaming; do
  run gcloud dataflow flex-template build "$(template_path "$pipeline")" \
    --project="$PROJECT" \
    --image="$(launcher_image "$pipeline")" \
    --sdk-language=PYTHON \
    --metadata-file="$ROOT/deploy/templates/$pipeline/metadata.json" \
    --staging-location="gs://$BUCKET/staging" \
    --temp-location="gs://$BUCKET/tmp"
done

echo "==> built TAG=$TAG; launch with TAG=$TAG deploy/run_batch.sh or deploy/run_streaming.sh" >&2
