#!/usr/bin/env bash
# Benchmark: the two GPU utilization sources (issue 11) at 1,000 GPUs, in one run.
#
#   bash scripts/bench/gpu.sh [--query-runs N] [--collect-runs N] [--cycles C] [--scrape-runs N]
#                             [--interval S] [--live-s S] [--no-discovery] [--no-build]
#                             [--no-write] [--notes FILE]
#
#   --query-runs N    curl runs of each Prometheus range query (default 10)
#   --collect-runs N  `skydeck collect` runs with and without --prometheus-url, alternating (default 7)
#   --cycles C        scrape cycles per direct-scrape run (default 130: fills the 1 h retention)
#   --scrape-runs N   direct-scrape runs over plain HTTP (default 3)
#   --interval S      Prometheus scrape interval and backfill spacing, seconds (default 15)
#   --live-s S        live scraping after the backfill, before measuring (default 60)
#   --no-discovery    skip the direct-scrape run through Discovery and fake_kube's pod proxy
#   --no-build        use the existing release binaries
#   --no-write        print the report only; leave docs/benchmarks.md alone
#   --notes FILE      Markdown appended to the section (observations of a person)
#
# What it measures (all on 127.0.0.1):
#  1. Prometheus source: a DCGM stand-in (crates/skydeck-gpu/examples/scrape_bench.rs `serve`,
#     200 pages × 5 GPUs × 20 fields) scraped by a real Prometheus (/usr/bin/prometheus) as 200
#     file_sd targets, one per cluster (labels instance and skypilot_cluster, as a VM setup's
#     scrape config adds them). History: promtool tsdb create-blocks-from openmetrics backfills
#     the two queried metrics for 65 min before Prometheus starts, then it scrapes live for
#     --live-s. The two range queries skydeck sends (same parameters: query, start, end
#     (integer seconds), step=60s, Accept-Encoding: gzip as reqwest sends it) are timed with
#     curl over the default lookback (60 min: max(window 30 min, min_idle 60 min)) and over
#     30 min; bytes on the wire and as JSON. Then `skydeck collect` against the fake SkyPilot
#     server (crates/skydeck-testkit/examples/fake_skypilot.rs) with and without
#     --prometheus-url: the added wall time, CPU and peak RSS.
#  2. Direct-scrape source: skydeck_gpu::Scraper (scrape_bench `bench`) over plain HTTP to 125
#     stand-in exporters × 8 GPUs (1,000 GPUs), C cycles back to back, each cycle's "now" 30 s
#     after the last; per-cycle wall time, CPU time, VmRSS/VmHWM before the first cycle and
#     after the last. Optionally the same through skydeck_discovery::Discovery over 125
#     contexts of a fake Kubernetes API server (fake_kube's pod-proxy route, one 8-GPU
#     exporter per context). Targets: a cycle < 2 s and < 30 MB added memory per 1,000 GPUs.
#
# Writes its section of docs/benchmarks.md (between the gpu.sh begin/end markers, below the
# "other benchmarks" marker so scripts/bench/collect.sh keeps it) and prints it on stdout;
# progress on stderr, raw output in target/bench/gpu-<UTC time>/. Every process it starts is
# stopped on exit, whatever happens; every wait and loop is bounded.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
DOC=$REPO/docs/benchmarks.md

QUERY_RUNS=10
COLLECT_RUNS=7
CYCLES=130
SCRAPE_RUNS=3
INTERVAL=15
LIVE_S=60
DISCOVERY=1
BUILD=1
WRITE=1
NOTES=""
BACKFILL_MIN=65
PROM_CLUSTERS=200
PROM_GPUS=5
SCRAPE_EXPORTERS=125
SCRAPE_GPUS=8
CYCLE_TARGET_S=2
MEM_TARGET_MB=30

log() { printf 'gpu-bench: %s\n' "$*" >&2; }
die() { printf 'gpu-bench: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
  case $1 in
    --query-runs) QUERY_RUNS=${2:?}; shift 2 ;;
    --collect-runs) COLLECT_RUNS=${2:?}; shift 2 ;;
    --cycles) CYCLES=${2:?}; shift 2 ;;
    --scrape-runs) SCRAPE_RUNS=${2:?}; shift 2 ;;
    --interval) INTERVAL=${2:?}; shift 2 ;;
    --live-s) LIVE_S=${2:?}; shift 2 ;;
    --no-discovery) DISCOVERY=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-write) WRITE=0; shift ;;
    --notes) NOTES=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) log "unknown argument '$1'"; usage ;;
  esac
done
for v in QUERY_RUNS COLLECT_RUNS CYCLES SCRAPE_RUNS INTERVAL LIVE_S; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer"
done
[[ -z $NOTES || -f $NOTES ]] || die "--notes: $NOTES not found"
for t in prometheus promtool curl jq python3 awk /usr/bin/time; do
  command -v "$t" >/dev/null || die "$t is required"
done

# ------------------------------------------------------------ cleanup -------
TMP=$(mktemp -d /tmp/skydeck-gpu-bench.XXXXXX)
PIDS=()
CHILD_PID=""
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
cleanup() {
  if [[ -n $CHILD_PID ]]; then kill -TERM "$CHILD_PID" 2>/dev/null || true; wait "$CHILD_PID" 2>/dev/null || true; fi
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
waited() {
  "$@" &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

# ------------------------------------------------------------ build ---------
if ((BUILD)); then
  for attempt in 1 2 3; do
    log "cargo build --release: skydeck, examples scrape_bench, fake_skypilot, fake_kube (attempt $attempt)"
    if (cd "$REPO" && waited cargo build --release -p skydeck >&2 &&
      waited cargo build --release -p skydeck-gpu --example scrape_bench >&2 &&
      waited cargo build --release -p skydeck-testkit --example fake_skypilot >&2 &&
      waited cargo build --release -p skydeck-discovery --example fake_kube >&2); then break; fi
    ((attempt < 3)) || die "the release build failed 3 times"
    log "build failed (someone may be mid-edit); retrying in 60 s"
    sleep 60
  done
fi
for b in skydeck examples/scrape_bench examples/fake_skypilot examples/fake_kube; do
  [[ -x $REPO/target/release/$b ]] || die "target/release/$b not found (run without --no-build)"
done
BIN=$TMP/skydeck
cp "$REPO/target/release/skydeck" "$BIN"
for b in scrape_bench fake_skypilot fake_kube; do cp "$REPO/target/release/examples/$b" "$TMP/$b"; done
BIN_VERSION=$("$BIN" --version 2>/dev/null || echo "skydeck ?")
BIN_BUILT=$(date -u -r "$REPO/target/release/skydeck" '+%Y-%m-%d %H:%M UTC')
EX_BUILT=$(date -u -r "$REPO/target/release/examples/scrape_bench" '+%Y-%m-%d %H:%M UTC')
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
GIT_DIRTY=""
[[ -n $(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] && GIT_DIRTY=", uncommitted changes in the tree"
PROM_VERSION=$(prometheus --version 2>&1 | head -1 | sed 's/^prometheus, //')

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$REPO/target/bench/gpu-$STAMP
mkdir -p "$RAW"
DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$TMP/home"

# ------------------------------------------------------------ helpers -------
# Both skip empty lines (a "$list" built with trailing newlines has some).
median() { awk 'NF' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minmax() { awk 'NF' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }
fmt() { awk -v x="$1" -v d="${2:-3}" 'BEGIN { printf "%.*f", d, x }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_s() { awk -v t="$CLK_TCK" '{ sub(/^.*\) /, ""); split($0, f, " "); printf "%.2f", (f[12] + f[13]) / t }' "/proc/$1/stat"; }
vm_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# Starts `scrape_bench serve ARGS…`; sets STAND_PID and STAND_URL.
start_standin() {
  local out=$TMP/standin-$RANDOM.url
  "$TMP/scrape_bench" serve "$@" >"$out" 2>>"$RAW/standin.log" &
  STAND_PID=$!
  PIDS+=("$STAND_PID")
  for _ in $(seq 100); do [[ -s $out ]] && break; sleep 0.1; done
  STAND_URL=$(head -1 "$out")
  [[ $STAND_URL =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "the DCGM stand-in did not start (see $RAW/standin.log)"
}

# ============================================================ 1. Prometheus ==
log "Prometheus source: DCGM stand-in, $PROM_CLUSTERS targets × $PROM_GPUS GPUs"
start_standin --exporters "$PROM_CLUSTERS" --gpus "$PROM_GPUS"
PROM_STAND_PID=$STAND_PID; PROM_STAND_URL=$STAND_URL
STAND_HOSTPORT=${PROM_STAND_URL#http://}
PAGE_BYTES=$(curl -fsS "$PROM_STAND_URL/e/1/metrics" | wc -c)

# Six clusters carry the names of the fake SkyPilot fleet's UP clusters, so some GPUs match.
FLEET_NAMES=(team-pretrain root-llama-ft team-k8s-infer carol-serve team-moe-train team-k8s-train)
python3 - "$STAND_HOSTPORT" "$PROM_CLUSTERS" "${FLEET_NAMES[@]}" >"$TMP/targets.json" <<'EOF'
import json, sys
addr, n, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
groups = []
for i in range(n):
    name = names[i] if i < len(names) else f"bench-{i:03d}"
    groups.append({"targets": [addr], "labels": {
        "__metrics_path__": f"/e/{i}/metrics", "instance": f"gpu-node-{i:03d}:9400",
        "skypilot_cluster": name}})
json.dump(groups, sys.stdout, indent=1)
EOF
cp "$TMP/targets.json" "$RAW/targets.json"
PROM_PORT=$(free_port)
PROM_URL=http://127.0.0.1:$PROM_PORT
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: ${INTERVAL}s
  scrape_timeout: 5s
  evaluation_interval: 1m
scrape_configs:
  - job_name: dcgm
    file_sd_configs:
      - files: ["$TMP/targets.json"]
EOF
cp "$TMP/prometheus.yml" "$RAW/prometheus.yml"

mkdir -p "$TMP/prom-data"
BF_END=$(( $(date +%s) - 1 ))
BF_START=$(( BF_END - BACKFILL_MIN * 60 ))
log "backfill: $BACKFILL_MIN min every ${INTERVAL}s (gpu_backfill.py | promtool tsdb create-blocks-from openmetrics)"
B0=$(date +%s.%N)
python3 "$SCRIPT_DIR/gpu_backfill.py" --base "$PROM_STAND_URL" --targets "$TMP/targets.json" --job dcgm \
  --start "$BF_START" --end "$BF_END" --interval "$INTERVAL" >"$TMP/history.om" 2>>"$RAW/backfill.log"
B1=$(date +%s.%N)
timeout 600 promtool tsdb create-blocks-from openmetrics "$TMP/history.om" "$TMP/prom-data" >>"$RAW/backfill.log" 2>&1 \
  || die "promtool backfill failed (see $RAW/backfill.log)"
B2=$(date +%s.%N)
BF_SAMPLES=$(grep -c '^DCGM' "$TMP/history.om" || true)
BF_BYTES=$(wc -c <"$TMP/history.om")
rm -f "$TMP/history.om"
BF_GEN_S=$(awk -v a="$B0" -v b="$B1" 'BEGIN { printf "%.1f", b - a }')
BF_PROMTOOL_S=$(awk -v a="$B1" -v b="$B2" 'BEGIN { printf "%.1f", b - a }')

log "starting Prometheus on $PROM_URL"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1d \
  >"$RAW/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS+=("$PROM_PID")
for _ in $(seq 300); do curl -fsS "$PROM_URL/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$PROM_URL/-/ready" >/dev/null || die "Prometheus did not become ready (see $RAW/prometheus.log)"
L0=$(date +%s)
log "live scraping for $LIVE_S s"
sleep "$LIVE_S"
instant() { curl -fsS --get "$PROM_URL/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // "0"'; }
UP_TARGETS=$(instant 'sum(up{job="dcgm"})')
N_ENGINE=$(instant 'count(DCGM_FI_PROF_GR_ENGINE_ACTIVE)')
N_UTIL=$(instant 'count(DCGM_FI_DEV_GPU_UTIL)')
HEAD_SERIES=$(curl -fsS "$PROM_URL/metrics" | awk '$1 == "prometheus_tsdb_head_series" { print $2 }')
log "targets up: $UP_TARGETS; series now: engine $N_ENGINE, util $N_UTIL; head series $HEAD_SERIES"

# The two range queries skydeck sends, as it sends them.
Q_ROWS=""
declare -A Q_MED
for win in 60 30; do
  for metric in DCGM_FI_PROF_GR_ENGINE_ACTIVE DCGM_FI_DEV_GPU_UTIL; do
    times=""; wire=""
    end=$(date +%s); start=$((end - win * 60))
    # JSON as decoded (no compression), once: bytes, series, points.
    curl -fsS --get "$PROM_URL/api/v1/query_range" --data-urlencode "query=$metric" \
      --data-urlencode "start=$start" --data-urlencode "end=$end" --data-urlencode "step=60s" \
      -o "$TMP/q.json"
    json_bytes=$(wc -c <"$TMP/q.json")
    nseries=$(jq '.data.result | length' "$TMP/q.json")
    npoints=$(jq '[.data.result[].values | length] | add // 0' "$TMP/q.json")
    cpu0=$(cpu_s "$PROM_PID")
    for r in $(seq "$QUERY_RUNS"); do
      end=$(date +%s); start=$((end - win * 60))
      read -r t s < <(curl -fsS --get "$PROM_URL/api/v1/query_range" -H 'Accept-Encoding: gzip' \
        --data-urlencode "query=$metric" --data-urlencode "start=$start" --data-urlencode "end=$end" \
        --data-urlencode "step=60s" -o /dev/null -w '%{time_total} %{size_download}\n')
      echo "$win $metric $r $t $s" >>"$RAW/queries.txt"
      times+="$t"$'\n'; wire+="$s"$'\n'
    done
    cpu1=$(cpu_s "$PROM_PID")
    pcpu_ms=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$QUERY_RUNS" 'BEGIN { printf "%.0f", (b - a) * 1000 / n }')
    med_ms=$(awk -v x="$(median <<<"$times")" 'BEGIN { printf "%.1f", x * 1000 }')
    rng=$(awk 'NF { printf "%.1f\n", $1 * 1000 }' <<<"$times" | minmax)
    Q_MED[$win-$metric]=$med_ms
    Q_ROWS+="| \`$metric\` | $win min | $nseries | $npoints | $med_ms ms ($rng ms) | $(median <<<"$wire") B | $json_bytes B | ~$pcpu_ms ms |"$'\n'
  done
done
PROM_HWM=$(vm_kb "$PROM_PID" VmHWM)

# skydeck collect with and without --prometheus-url.
log "collect: $COLLECT_RUNS runs each, with and without --prometheus-url, alternating"
"$TMP/fake_skypilot" "$TMP/sky-counts.json" >"$TMP/sky.url" 2>"$RAW/fake_skypilot.log" &
SKY_PID=$!
PIDS+=("$SKY_PID")
for _ in $(seq 100); do [[ -s $TMP/sky.url ]] && break; sleep 0.1; done
SKY_URL=$(head -1 "$TMP/sky.url")
[[ $SKY_URL =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "the fake SkyPilot server did not start"
: >"$TMP/empty.toml"
collect_once() { # $1 = label, rest = extra args; appends "wall rss user sys exit" to $RAW/collect-$1.txt
  local label=$1; shift
  local rc=0
  (cd "$TMP" && env -u SKYPILOT_API_SERVER_ENDPOINT -u SKYPILOT_SERVICE_ACCOUNT_TOKEN -u DD_API_KEY \
    HOME="$TMP/home" /usr/bin/time -o "$TMP/time.txt" -f '%e %M %U %S' \
    timeout 120 "$BIN" collect --config "$TMP/empty.toml" --endpoint "$SKY_URL" --format json "$@" \
    >"$TMP/out-$label.json" 2>"$TMP/err-$label.txt") || rc=$?
  echo "$(cat "$TMP/time.txt" | tail -1) $rc" >>"$RAW/collect-$label.txt"
  cp "$TMP/out-$label.json" "$RAW/collect-$label.last.json"
  cp "$TMP/err-$label.txt" "$RAW/collect-$label.last.err"
}
collect_once without; collect_once with --prometheus-url "$PROM_URL"  # warm-up, not counted
: >"$RAW/collect-without.txt"; : >"$RAW/collect-with.txt"
for r in $(seq "$COLLECT_RUNS"); do
  if ((r % 2)); then collect_once without; collect_once with --prometheus-url "$PROM_URL"
  else collect_once with --prometheus-url "$PROM_URL"; collect_once without; fi
done
col() { awk -v c="$2" '{ print $c }' "$RAW/collect-$1.txt"; }
W_WALL=$(col without 1 | median); P_WALL=$(col with 1 | median)
W_RSS=$(col without 2 | median); P_RSS=$(col with 2 | median)
W_CPU=$(awk '{ print $3 + $4 }' "$RAW/collect-without.txt" | median)
P_CPU=$(awk '{ print $3 + $4 }' "$RAW/collect-with.txt" | median)
ADDED_WALL=$(paste -d' ' <(col with 1) <(col without 1) | awk '{ print $1 - $2 }' | median)
ADDED_RANGE=$(paste -d' ' <(col with 1) <(col without 1) | awk '{ printf "%.2f\n", $1 - $2 }' | minmax)
W_EXIT=$(col without 5 | sort -u | tr '\n' ' '); P_EXIT=$(col with 5 | sort -u | tr '\n' ' ')
metric_of() { jq -rs --arg n "$1" '[.[] | if type == "array" then .[] else . end | select(.name == $n) | .value] | first // "absent"' "$RAW/collect-with.last.json" 2>/dev/null || echo "?"; }
G_UNMATCHED=$(metric_of skypilot.gpus.unmatched)
G_IDLE=$(metric_of skypilot.gpus.idle)
G_UNKNOWN=$(metric_of skypilot.clusters.gpu_unknown)
G_CIDLE=$(metric_of skypilot.clusters.gpu_idle)
G_AVG=$(metric_of skypilot.clusters.avg_utilization_percent)
G_UP=$(metric_of skydeck.gpu.source_up)
SUMMARY_WITH=$(grep -E '^(✓|✗|idle)' "$RAW/collect-with.last.err" | tr '\n' ';' | sed 's/;$//; s/;/; /g; s/|/\\|/g' || true)
stop_pid "$SKY_PID"; forget_pid "$SKY_PID"
stop_pid "$PROM_PID"; forget_pid "$PROM_PID"
stop_pid "$PROM_STAND_PID"; forget_pid "$PROM_STAND_PID"

# ============================================================ 2. direct scrape
log "direct scrape: $SCRAPE_EXPORTERS exporters × $SCRAPE_GPUS GPUs, $CYCLES cycles × $SCRAPE_RUNS runs"
start_standin --exporters "$SCRAPE_EXPORTERS" --gpus "$SCRAPE_GPUS" --k8s 1
S_STAND_PID=$STAND_PID; S_STAND_URL=$STAND_URL
S_PAGE_BYTES=$(curl -fsS "$S_STAND_URL/e/1/metrics" | wc -c)
: >"$RAW/scrape-http.jsonl"
S_ROWS=""
for r in $(seq "$SCRAPE_RUNS"); do
  sc0=$(cpu_s "$S_STAND_PID")
  timeout 600 /usr/bin/time -o "$TMP/time.txt" -f '%e %M' "$TMP/scrape_bench" bench --url "$S_STAND_URL" \
    --exporters "$SCRAPE_EXPORTERS" --cycles "$CYCLES" --clk-tck "$CLK_TCK" >"$TMP/s.json" 2>>"$RAW/scrape.log" \
    || die "scrape_bench failed (see $RAW/scrape.log)"
  sc1=$(cpu_s "$S_STAND_PID")
  read -r _ proc_hwm < <(tail -1 "$TMP/time.txt")
  jq -c --arg r "$r" --arg h "$proc_hwm" --arg sc "$(awk -v a="$sc0" -v b="$sc1" 'BEGIN { print b - a }')" \
    '. + {run: ($r | tonumber), process_peak_rss_kb: ($h | tonumber), standin_cpu_s: ($sc | tonumber)}' "$TMP/s.json" >>"$RAW/scrape-http.jsonl"
done
stop_pid "$S_STAND_PID"; forget_pid "$S_STAND_PID"
row_of() { # jsonl line → table row
  jq -r '"| \(.source) | \(.run // 1) | \(.targets) (\(.ok) ok, \(.failed + .timed_out) failed) | \(.gpus) | \(.cycles) | \(.cycle_s_median * 1000 | round) ms | \(.cycle_s_max * 1000 | round) ms | \(.cpu_s_per_cycle * 1000 | round) ms | \(.rss_kb_before / 1024 * 10 | round / 10) MB | \(.rss_kb_after / 1024 * 10 | round / 10) MB | \(.added_rss_kb / 1024 * 10 | round / 10) MB | \(.added_hwm_kb / 1024 * 10 | round / 10) MB |"' <<<"$1"
}
while read -r line; do S_ROWS+="$(row_of "$line")"$'\n'; done <"$RAW/scrape-http.jsonl"
S_MED=$(jq -r .cycle_s_median "$RAW/scrape-http.jsonl" | median)
S_MAX=$(jq -r .cycle_s_max "$RAW/scrape-http.jsonl" | sort -g | tail -1)
S_CPU=$(jq -r .cpu_s_per_cycle "$RAW/scrape-http.jsonl" | median)
S_ADD=$(jq -r '.added_hwm_kb / 1024' "$RAW/scrape-http.jsonl" | sort -g | tail -1)
S_ADD_RSS=$(jq -r '.added_rss_kb / 1024' "$RAW/scrape-http.jsonl" | median)
S_GPUS=$(jq -r .window_gpus "$RAW/scrape-http.jsonl" | sort -u | paste -sd/)
S_DD=$(jq -r .datadog_samples "$RAW/scrape-http.jsonl" | sort -u | paste -sd/)
S_STANDIN_CPU=$(jq -r '.standin_cpu_s / .cycles' "$RAW/scrape-http.jsonl" | median)

D_ROW=""; D_NOTE=""
if ((DISCOVERY)); then
  log "direct scrape through Discovery: fake_kube, $SCRAPE_EXPORTERS contexts × 1 exporter"
  # One full round of fake_kube's page is 8 GPUs × 20 fields: find its length, then serve exactly it.
  mkdir -p "$TMP/kube0" "$TMP/kube"
  "$TMP/fake_kube" --dir "$TMP/kube0" --contexts 1 --exporters 1 --page-bytes 200000 >"$TMP/kube0.json" 2>>"$RAW/fake_kube.log" &
  K0=$!; PIDS+=("$K0")
  for _ in $(seq 100); do [[ -s $TMP/kube0.json ]] && break; sleep 0.1; done
  curl -fsS "$(jq -r .url "$TMP/kube0.json")/direct/metrics" -o "$TMP/kube0.page"
  ROUND=$(awk '/gpu-node-01"/ { exit } { n += length($0) + 1 } END { print n }' "$TMP/kube0.page")
  stop_pid "$K0"; forget_pid "$K0"
  "$TMP/fake_kube" --dir "$TMP/kube" --contexts "$SCRAPE_EXPORTERS" --exporters 1 --page-bytes "$ROUND" >"$TMP/kube.json" 2>>"$RAW/fake_kube.log" &
  KP=$!; PIDS+=("$KP")
  for _ in $(seq 100); do [[ -s $TMP/kube.json ]] && break; sleep 0.1; done
  KURL=$(jq -r .url "$TMP/kube.json")
  [[ $KURL =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "fake_kube did not start"
  kc0=$(cpu_s "$KP")
  timeout 600 /usr/bin/time -o "$TMP/time.txt" -f '%e %M' "$TMP/scrape_bench" bench --kubeconfig "$TMP/kube/kubeconfig" \
    --contexts "$SCRAPE_EXPORTERS" --cycles "$CYCLES" --clk-tck "$CLK_TCK" >"$TMP/d.json" 2>>"$RAW/scrape.log" \
    || die "scrape_bench (discovery) failed (see $RAW/scrape.log)"
  kc1=$(cpu_s "$KP")
  KSTATS=$(curl -fsS "$KURL/_bench/stats" | jq -c .)
  stop_pid "$KP"; forget_pid "$KP"
  read -r _ proc_hwm < <(tail -1 "$TMP/time.txt")
  jq -c --arg h "$proc_hwm" '. + {process_peak_rss_kb: ($h | tonumber)}' "$TMP/d.json" >"$RAW/scrape-discovery.json"
  D_ROW=$(row_of "$(cat "$RAW/scrape-discovery.json")")
  D_MED=$(jq -r .cycle_s_median "$RAW/scrape-discovery.json")
  D_MAX=$(jq -r .cycle_s_max "$RAW/scrape-discovery.json")
  D_ADD=$(jq -r '.added_hwm_kb / 1024' "$RAW/scrape-discovery.json")
  D_REJ=$(jq -r .rejected "$RAW/scrape-discovery.json")
  D_STORED=$(jq -r '"\(.samples_stored) of \(.gpus)"' "$RAW/scrape-discovery.json")
  D_NOTE="Through Discovery: fake_kube (\`--contexts $SCRAPE_EXPORTERS --exporters 1 --page-bytes $ROUND\`: one exporter per context, its pod-proxy route answering one full 8-GPU × 20-field page of $ROUND B, the same page for every context, so the GPUs differ by context only; its values are arbitrary, 0–999, so out-of-range ones are refused and counted: $D_REJ in the last cycle, in which $D_STORED GPUs stored a utilization sample); skydeck_discovery::Discovery with default options (proxy mode, six default namespaces, 30 s refresh) over contexts ctx-00 … ctx-$((SCRAPE_EXPORTERS - 1)), the cycles starting once it listed every exporter ($(grep -o 'lists [0-9]* exporters after [0-9.]* s' "$RAW/scrape.log" | tail -1)). Its \"before\" memory already holds $SCRAPE_EXPORTERS Kubernetes clients and the listed targets; CPU includes discovery's own refreshes. fake_kube used $(awk -v a="$kc0" -v b="$kc1" 'BEGIN { printf "%.2f", b - a }') s CPU over the run; requests it counted: \`$KSTATS\`."
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
DATE_END=$(date -u '+%H:%M UTC')

# ------------------------------------------------------------ report --------
verdict_lt() { awk -v m="$1" -v t="$2" 'BEGIN { print (m + 0 < t + 0) ? "met" : "**not met**" }'; }
S_MAX_S=$(fmt "$S_MAX" 3); S_MED_S=$(fmt "$S_MED" 3)
BEGIN_MARK='<!-- gpu.sh: begin (scripts/bench/gpu.sh rewrites this section) -->'
END_MARK='<!-- gpu.sh: end -->'
SECTION=$TMP/section.md
{
  echo "$BEGIN_MARK"
  echo "# GPU utilization sources: Prometheus queries and the direct scrape, 1,000 GPUs"
  echo
  echo "\`scripts/bench/gpu.sh\` measures both GPU utilization sources of issue 11 at 1,000 GPUs on 127.0.0.1, against stand-ins (no GPU, no real cluster, no real SkyPilot server). The DCGM stand-in is \`crates/skydeck-gpu/examples/scrape_bench.rs serve\`: dcgm-exporter-shaped pages (the 20 fields of the default set, labels \`gpu\`, \`UUID\`, \`pci_bus_id\`, \`device\`, \`modelName\`, \`Hostname\`, \`DCGM_FI_DRIVER_VERSION\`, plus \`pod\`/\`namespace\`/\`container\` for the direct scrape), values changing every 5 s, every fourth page idle (under 3 %). **The machine has $NPROC shared CPUs; Prometheus, the stand-ins and skydeck all run on them.**"
  echo
  echo "* date: $DATE_START (to $DATE_END)"
  echo "* machine: $NPROC CPUs ($CPU_MODEL), $MEM RAM, shared; load average at start $LOAD_START, at end $LOAD_END"
  echo "* skydeck: $BIN_VERSION, release build of $BIN_BUILT; scrape_bench built $EX_BUILT (git $GIT_REV$GIT_DIRTY)"
  echo "* Prometheus: $PROM_VERSION (Debian's /usr/bin/prometheus)"
  echo "* raw output: \`target/bench/gpu-$STAMP/\`"
  echo
  echo "Rerun:"
  echo
  echo '```sh'
  echo 'bash scripts/bench/gpu.sh'
  echo '```'
  echo
  echo "## Targets"
  echo
  echo "| measurement | measured | target | |"
  echo "|---|---|---|---|"
  printf '| direct scrape: cycle time, 1,000 GPUs (%s exporters × %s GPUs, plain HTTP) | median %s s, max %s s (%s runs × %s cycles) | < %s s | %s |\n' \
    "$SCRAPE_EXPORTERS" "$SCRAPE_GPUS" "$S_MED_S" "$S_MAX_S" "$SCRAPE_RUNS" "$CYCLES" "$CYCLE_TARGET_S" "$(verdict_lt "$S_MAX" "$CYCLE_TARGET_S")"
  printf '| direct scrape: added memory, 1,000 GPUs (VmHWM after the last cycle − VmRSS before the first; windows full: 1 h retention) | %s MB (max of runs; VmRSS after − before: median %s MB) | < %s MB | %s |\n' \
    "$(fmt "$S_ADD" 1)" "$(fmt "$S_ADD_RSS" 1)" "$MEM_TARGET_MB" "$(verdict_lt "$S_ADD" "$MEM_TARGET_MB")"
  if ((DISCOVERY)); then
    printf '| … the same through Discovery and the fake API server'"'"'s pod proxy | cycle median %s s, max %s s; added %s MB | < %s s, < %s MB | %s, %s |\n' \
      "$(fmt "$D_MED" 3)" "$(fmt "$D_MAX" 3)" "$(fmt "$D_ADD" 1)" "$CYCLE_TARGET_S" "$MEM_TARGET_MB" "$(verdict_lt "$D_MAX" "$CYCLE_TARGET_S")" "$(verdict_lt "$D_ADD" "$MEM_TARGET_MB")"
  fi
  printf '| Prometheus: the two range queries (60 min at 60 s steps, 1,000 GPUs each) | %s ms + %s ms (medians; they are sent at once) | — | |\n' \
    "${Q_MED[60-DCGM_FI_PROF_GR_ENGINE_ACTIVE]}" "${Q_MED[60-DCGM_FI_DEV_GPU_UTIL]}"
  printf '| Prometheus: `skydeck collect` wall time added by `--prometheus-url` | %s s (median of per-run differences, range %s s) | — | |\n' "$(fmt "$ADDED_WALL" 2)" "$ADDED_RANGE"
  echo
  echo "## 1. Prometheus source"
  echo
  echo "Prometheus scrapes the stand-in every ${INTERVAL} s as $PROM_CLUSTERS file_sd targets (one per cluster, $PROM_GPUS GPUs each, page $PAGE_BYTES B; target labels \`instance\` = \`gpu-node-NNN:9400\` and \`skypilot_cluster\`, as a VM setup's scrape config adds them; config in the raw output). History: before Prometheus starts, \`scripts/bench/gpu_backfill.py\` writes $BACKFILL_MIN min of the two queried metrics for every GPU every ${INTERVAL} s with exactly the scraped series' labels ($BF_SAMPLES samples, $((BF_BYTES / 1048576)) MiB of OpenMetrics, ${BF_GEN_S} s) and \`promtool tsdb create-blocks-from openmetrics\` turns it into blocks (${BF_PROMTOOL_S} s); Prometheus then scraped live for $LIVE_S s, so the queried windows are fully covered (backfilled history, then the head) and the newest samples are fresh. When measured: $UP_TARGETS/$PROM_CLUSTERS targets up, $N_ENGINE \`DCGM_FI_PROF_GR_ENGINE_ACTIVE\` and $N_UTIL \`DCGM_FI_DEV_GPU_UTIL\` series, $HEAD_SERIES head series in all (the 20 fields and Prometheus' own); Prometheus' peak RSS $(( ${PROM_HWM:-0} / 1024 )) MB."
  echo
  echo "Each query as skydeck sends it (\`prometheus/mod.rs\`): \`GET /api/v1/query_range?query=<metric>&start=<now − window, integer s>&end=<now>&step=60s\`, \`Accept-Encoding: gzip\` (reqwest's gzip feature); 60 min is what \`collect\` asks for with the defaults (lookback = max(window 30 min, \`[idle] min_idle\` 60 min)), 30 min the window alone. Timed with curl (\`-w '%{time_total} %{size_download}'\`, $QUERY_RUNS runs each, new connection each); \"on the wire\" is the gzip body, \"JSON\" the same answer uncompressed; \"Prometheus CPU\" its user+system time over the runs, per query."
  echo
  echo "| query | window | series | points | time, median (range) | on the wire (gzip) | JSON | Prometheus CPU/query |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s' "$Q_ROWS"
  echo
  echo "\`skydeck collect --config <empty> --endpoint <fake SkyPilot> --format json\` without and with \`--prometheus-url $PROM_URL\`, $COLLECT_RUNS runs each after one warm-up pair, alternating the order; GNU time. The fake SkyPilot server's fleet (the captured fixtures) has **10 clusters, 6 of them UP**; six of the 200 Prometheus clusters carry those names (\`skypilot_cluster\`, matched as the default \`match_label\`), so matching mostly counts unmatched GPUs: what is measured is the query + parse + judge cost of 1,000 GPUs, not a 200-cluster verdict."
  echo
  echo "| run | wall time, median (range) | CPU (user+sys), median | peak RSS, median | exit status |"
  echo "|---|---|---|---|---|"
  echo "| without \`--prometheus-url\` | $(fmt "$W_WALL" 2) s ($(col without 1 | minmax) s) | $(fmt "$W_CPU" 2) s | $(fmt "$(awk -v k="$W_RSS" 'BEGIN { print k / 1024 }')" 1) MB | $W_EXIT|"
  echo "| with \`--prometheus-url\` | $(fmt "$P_WALL" 2) s ($(col with 1 | minmax) s) | $(fmt "$P_CPU" 2) s | $(fmt "$(awk -v k="$P_RSS" 'BEGIN { print k / 1024 }')" 1) MB | $P_EXIT|"
  echo "| **added** (per-run difference, median) | **$(fmt "$ADDED_WALL" 2) s** (range $ADDED_RANGE s) | $(awk -v a="$P_CPU" -v b="$W_CPU" 'BEGIN { printf "%+.2f", a - b }') s | $(awk -v a="$P_RSS" -v b="$W_RSS" 'BEGIN { printf "%+.1f", (a - b) / 1024 }') MB | |"
  echo
  echo "GPU metrics of the last run with Prometheus: \`skydeck.gpu.source_up\` $G_UP, \`skypilot.gpus.unmatched\` $G_UNMATCHED, \`skypilot.gpus.idle\` $G_IDLE, \`skypilot.clusters.gpu_idle\` $G_CIDLE, \`skypilot.clusters.gpu_unknown\` $G_UNKNOWN, \`skypilot.clusters.avg_utilization_percent\` $G_AVG. Its summary lines: \`$SUMMARY_WITH\`."
  echo
  echo "## 2. Direct-scrape source"
  echo
  echo "\`scrape_bench bench\` runs \`skydeck_gpu::Scraper\` (default \`ScrapeOptions\`: 16 scrapes at once, 5 s and 8 MiB per target, 2,000 GPUs of Datadog series, 30 s interval, 1 h retention) for $CYCLES cycles back to back in one process (tokio multi-thread runtime, as serve), each cycle's \"now\" 30 s after the previous, so the windows fill to what an hour of serve holds ($CYCLES × 30 s > 1 h retention: the last cycles also expire samples). Each cycle is \`run_cycle\` plus building the per-GPU Datadog samples (\`Scraper::samples\`: $S_DD samples), as serve does. Plain HTTP: an \`ExporterSource\` over one reqwest client to the stand-in (\`--k8s 1\`, $SCRAPE_EXPORTERS pages of $SCRAPE_GPUS GPUs, $S_PAGE_BYTES B each; $SCRAPE_EXPORTERS contexts, one exporter each), so the API server proxy's cost is not in it. Windows held $S_GPUS GPUs. CPU is the bench process's user+system time (\`/proc/self/stat\`) over all cycles, per cycle; memory from \`/proc/self/status\`, \"before\" taken after the runtime, client and source exist and before the first cycle. The stand-in used a median $(fmt "$S_STANDIN_CPU" 3) s CPU per cycle serving the pages (not included)."
  echo
  echo "| source | run | targets | GPUs | cycles | cycle median | cycle max | CPU per cycle | VmRSS before | VmRSS after | added VmRSS | added (VmHWM after − VmRSS before) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$S_ROWS"
  if [[ -n $D_ROW ]]; then echo "$D_ROW"; fi
  echo
  if [[ -n $D_NOTE ]]; then echo "$D_NOTE"; echo; fi
  if [[ -n $NOTES ]]; then cat "$NOTES"; echo; fi
  echo "$END_MARK"
} >"$SECTION"

cp "$SECTION" "$RAW/section.md"
cat "$SECTION"
if ((WRITE)); then
  # shellcheck source=scripts/bench/section.sh
  source "$SCRIPT_DIR/section.sh"
  write_section "$DOC" "$SECTION" "$BEGIN_MARK" "$END_MARK"
  log "wrote $DOC"
fi
