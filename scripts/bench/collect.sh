#!/usr/bin/env bash
# Benchmark: `skydeck collect` vs. a seed-style Python collector vs. the floor
# (the bare HTTP requests, each alone), in one run, against the same seeded
# real SkyPilot API server (skypilot[server]==0.14.1) at two fleet sizes.
#
#   scripts/bench/collect.sh [--runs N] [--sizes small,large] [--timeout S]
#                            [--no-build] [--no-write]
#
#   --runs N       repetitions of every measurement (default 3), order alternating
#   --sizes LIST   small (10 clusters / 50 jobs), large (200 clusters / 5000 jobs)
#   --timeout S    bound on one client run (default 600 s)
#   --no-build     use the existing target/release/skydeck
#   --no-write     print the report only; leave docs/benchmarks.md alone
#
# Writes docs/benchmarks.md and prints the same Markdown to stdout (progress on
# stderr). Raw results: target/bench/<UTC time>/. Servers come from
# scripts/peers/skypilot.sh (install / up NAME / down NAME, servers bench-small
# and bench-large); a byte-counting proxy (scripts/bench/byteproxy.py) sits in
# front of each. Everything binds 127.0.0.1; servers and proxies are stopped on
# exit, whatever happens.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PEER=$REPO/scripts/peers/skypilot.sh
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}
VENV_PY=$PEERS/skypilot-venv/bin/python
SKYDECK=$REPO/target/release/skydeck
DOC=$REPO/docs/benchmarks.md

RUNS=3
SIZES=small,large
TIMEOUT=600
BUILD=1
WRITE=1
ORIG_ARGS=("$@")

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --sizes) SIZES=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-write) WRITE=0; shift ;;
    -h|--help) usage ;;
    *) log "unknown argument '$1'"; usage ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer (seconds)"
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
for s in "${SIZE_LIST[@]}"; do
  [[ $s == small || $s == large ]] || die "--sizes: unknown size '$s' (small, large)"
done
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required"
[[ -x $PEER ]] || die "$PEER not found (the SkyPilot test peer)"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$REPO/target/bench/$STAMP
mkdir -p "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')

# ------------------------------------------------------------ cleanup -------
STARTED_SERVERS=()
PROXY_PID=""
CHILD_PID=""
# Runs a command in the background and waits for it, so that a signal to this
# script is handled at once (and the trap can stop the command).
run_waited() {
  "$@" &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}
stop_proxy() {
  if [[ -n $PROXY_PID ]]; then
    kill "$PROXY_PID" 2>/dev/null || true
    local i
    for i in $(seq 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
  fi
}
down_server() {
  timeout 120 "$PEER" down "$1" >>"$WORK/peer.log" 2>&1 || log "warning: '$PEER down $1' failed (see $WORK/peer.log)"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $CHILD_PID ]]; then
    kill "$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
  fi
  stop_proxy
  local n
  for n in "${STARTED_SERVERS[@]}"; do down_server "$n"; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ prepare -------
if ((BUILD)); then
  log "cargo build --release -p skydeck"
  cd "$REPO"
  run_waited timeout 3600 cargo build --release -p skydeck >&2 || die "cargo build failed"
fi
[[ -x $SKYDECK ]] || die "$SKYDECK not found (build it or drop --no-build)"
# Measure a private copy: others may rebuild target/release while this runs.
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
if [[ -n $(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
  GIT_REV+="+uncommitted changes"
fi
BUILT=$(date -u -r "$SKYDECK" '+%Y-%m-%d %H:%M UTC')
cp "$SKYDECK" "$WORK/skydeck"
SKYDECK=$WORK/skydeck
log "measuring a copy of the skydeck binary (built $BUILT, git $GIT_REV): $SKYDECK"
log "installing the SkyPilot venv (idempotent)"
run_waited timeout 1800 "$PEER" install >>"$WORK/peer.log" 2>&1 || die "'$PEER install' failed (see $WORK/peer.log)"
[[ -x $VENV_PY ]] || die "$VENV_PY not found after install"

# ------------------------------------------------------------ measure -------
RESULTS=()
for size in "${SIZE_LIST[@]}"; do
  case $size in
    small) clusters=10; jobs=50 ;;
    large) clusters=200; jobs=5000 ;;
  esac
  name=bench-$size
  log "[$size] starting SkyPilot API server $name: $clusters clusters / $jobs jobs (seeding takes a while)"
  STARTED_SERVERS+=("$name")
  run_waited timeout 1200 "$PEER" up "$name" --clusters "$clusters" --jobs "$jobs" \
    >"$WORK/$name.url" 2>>"$WORK/peer.log" ||
    { tail -n 20 "$WORK/peer.log" >&2; die "'$PEER up $name' failed (see $WORK/peer.log)"; }
  url=$(tail -n 1 "$WORK/$name.url")
  [[ $url =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "unexpected endpoint from '$PEER up $name': '$url'"
  log "[$size] server at $url"

  pfile=$WORK/$name.proxy.ports
  rm -f "$pfile"
  "$VENV_PY" "$SCRIPT_DIR/byteproxy.py" --upstream "${url#http://}" --port-file "$pfile" \
    >"$WORK/$name.proxy.log" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 100); do [[ -s $pfile ]] && break; sleep 0.1; done
  [[ -s $pfile ]] || die "the byte-counting proxy did not start (see $WORK/$name.proxy.log)"
  read -r pport cport <"$pfile"
  purl=http://127.0.0.1:$pport
  log "[$size] byte-counting proxy at $purl (counters on 127.0.0.1:$cport)"

  out=$WORK/$size.json
  run_waited timeout $((TIMEOUT * (RUNS * 8 + 8))) "$VENV_PY" "$SCRIPT_DIR/bench.py" measure \
    --size "$size" --clusters "$clusters" --jobs "$jobs" \
    --url "$purl" --control-port "$cport" --runs "$RUNS" --timeout "$TIMEOUT" \
    --skydeck "$SKYDECK" --python "$VENV_PY" --work "$WORK/$size" --out "$out" \
    --disable-usage || die "[$size] measurement failed"
  RESULTS+=("$out")

  stop_proxy
  down_server "$name"
  left=()
  for n in "${STARTED_SERVERS[@]}"; do [[ $n == "$name" ]] || left+=("$n"); done
  STARTED_SERVERS=("${left[@]}")
done

# ------------------------------------------------------------ report --------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
"$VENV_PY" - "$WORK/machine.json" <<EOF
import importlib.metadata as md, json, os, platform, subprocess, sys
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return "?"
cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
mem = "?"
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"; break
except OSError:
    pass
json.dump({
    "date": "$DATE_START", "nproc": os.cpu_count(), "cpu": cpu, "mem": mem,
    "loadavg_start": "$LOAD_START", "loadavg_end": "$LOAD_END", "runs": $RUNS,
    "skydeck_version": sh("$SKYDECK", "--version") + ", binary built $BUILT",
    "git": "$GIT_REV",
    "skypilot_version": "skypilot " + md.version("skypilot"),
    "python_version": "Python " + platform.python_version(),
}, open(sys.argv[1], "w"))
EOF
cmd="scripts/bench/collect.sh"
((${#ORIG_ARGS[@]})) && cmd+=" ${ORIG_ARGS[*]}"
md_args=()
((WRITE)) && md_args=(--markdown "$DOC")
"$VENV_PY" "$SCRIPT_DIR/bench.py" report --results "${RESULTS[@]}" --machine "$WORK/machine.json" \
  --command "$cmd" "${md_args[@]}"
((WRITE)) && log "wrote $DOC"
log "raw results in $WORK"
