#!/usr/bin/env bash
# The newcomer's one command: a local SkyPilot API server (the real
# skypilot[server]==0.14.1, offline, on 127.0.0.1) with a seeded demo fleet of
# 10 clusters and 50 managed jobs, then `skydeck collect` against it.
#
#   scripts/demo.sh [extra skydeck collect args, e.g. --format json]
#
# The server keeps running afterwards (run this again to reseed it);
# stop it with: scripts/peers/skypilot.sh down demo
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}

"$SCRIPT_DIR/peers/skypilot.sh" install
echo "demo: starting a local SkyPilot API server with a seeded fleet (about a minute)" >&2
"$SCRIPT_DIR/peers/skypilot.sh" up demo --clusters 10 --jobs 50 >/dev/null

trap 'echo >&2; echo "demo: the SkyPilot server is still running at $(cat "$PEERS/demo/endpoint" 2>/dev/null); stop it with: scripts/peers/skypilot.sh down demo" >&2' EXIT

cd "$REPO"
cargo run --release -p skydeck -- collect --endpoint "$(cat "$PEERS/demo/endpoint")" "$@"
