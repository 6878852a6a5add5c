# Sourced by the deploy/ scripts: shared settings and helpers. Each script defines usage()
# before sourcing this file.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Seconds between the end of a UTC instant's Bahrain day and the end of its UTC day:
# Asia/Bahrain is UTC+03:00 all year (no daylight saving since 1972).
BAHRAIN_MINUS_ONE_DAY_SECONDS=$((24 * 3600 - 3 * 3600))

# Print usage and the missing variables, then exit 2, unless every named variable is set.
require_env() {
  local missing=() name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
  done
  if ((${#missing[@]})); then
    usage >&2
    echo >&2
    echo "error: missing environment: ${missing[*]}" >&2
    exit 2
  fi
}

# The apache-beam version pinned in pyproject.toml: the one place it is written down.
beam_version() {
  local version
  version="$(sed -n 's/^[[:space:]]*"apache-beam\[gcp\]==\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml")"
  if [[ -z "$version" ]]; then
    echo "error: no exact apache-beam[gcp] version pin in $ROOT/pyproject.toml" >&2
    return 1
  fi
  echo "$version"
}

# The Bahrain calendar day before the one the UTC instant (epoch seconds; default now) is in.
previous_bahrain_day() {
  local epoch="${1:-$(date -u +%s)}"
  date -u -d "@$((epoch - BAHRAIN_MINUS_ONE_DAY_SECONDS))" +%F
}

# A YYYY-MM-DD calendar date, or exit 2.
require_day() {
  if ! [[ "$1" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || [[ "$(date -u -d "$1" +%F 2>/dev/null)" != "$1" ]]; then
    echo "error: not a YYYY-MM-DD date: $1" >&2
    exit 2
  fi
}

image_prefix() { echo "${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}"; }
worker_image() { echo "$(image_prefix)/payments-worker:${TAG}"; }
launcher_image() { echo "$(image_prefix)/payments-launcher-$1:${TAG}"; }
template_path() { echo "gs://${BUCKET}/templates/payments-$1-${TAG}.json"; }

# Run a command, or with DRY_RUN=1 only print it (shell-quoted, one line).
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}
