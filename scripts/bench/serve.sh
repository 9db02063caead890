#!/usr/bin/env bash
# Benchmark: `skydeck serve` and its DCGM exporter discovery (issue 8), in one run.
#
#   bash scripts/bench/serve.sh [--runs N] [--duration D] [--sky-seconds S] [--no-real-peer]
#                               [--no-build] [--no-write] [--notes FILE]
#
#   --runs N         measurements of each rate-limited case, interleaved (default 3)
#   --duration D     length of one rate-limited measurement, hey's -z (default 10s)
#   --sky-seconds S  how long serve runs against the fake SkyPilot server (default 60)
#   --no-real-peer   skip the proxy comparison through the real kube-apiserver peer
#   --no-build       use the existing release binaries
#   --no-write       print the report only; leave docs/benchmarks.md alone
#   --notes FILE     Markdown appended to the section (observations of a person)
#
# What it measures (all on 127.0.0.1, load generator `hey` on the same CPUs):
#  1. GET /api/service-discovery at 1,000 requests/s (hey -c 10 -q 100) of a serve watching
#     50 contexts × 20 DCGM exporters (1,000 targets, proxy mode), and of a second serve
#     watching the same 50 plus one context whose API server accepts and never answers; both
#     run at once and the runs alternate. The contexts point at a fake Kubernetes API server
#     (crates/skydeck-discovery/examples/fake_kube.rs). Target: p99 < 2 ms.
#  2. GET /metrics at 1,000 requests/s of `serve --no-skypilot --no-discovery` with one
#     [[collectors]] command printing 10,000 series; the response size. Target: p99 < 5 ms.
#  3. The scrape proxy's added latency on a 100 KB DCGM page, one request at a time (wrk -c 1,
#     microsecond percentiles), runs alternating: (a) against the fake API server: its pod
#     proxy route direct vs. serve's /proxy/… route in front of it; (b) when the real
#     kube-apiserver peer is built (scripts/peers/kube.sh install; root and iproute2 needed),
#     the page served from a network namespace (10.250.X.2, the "pod"): direct from the host,
#     through the API server's pod proxy, and through serve's /proxy/… (serve → API server →
#     pod). Target: serve's added latency (through serve − its upstream) p50 < 1 ms.
#  4. serve's peak RSS (VmHWM) with 1,000 targets, after the SD runs. Target: < 40 MB.
#  5. The SkyPilot API server load: serve with scaled-down intervals against the fake SkyPilot
#     server (crates/skydeck-testkit/examples/fake_skypilot.rs), requests counted there and
#     compared with the formula; requests per hour at the default intervals against a cron
#     `skydeck collect` every 10 minutes.
#
# Writes its section of docs/benchmarks.md (between the serve.sh begin/end markers, below the
# "other benchmarks" marker so scripts/bench/collect.sh keeps it) and prints it on stdout;
# progress on stderr, raw output in target/bench/serve-<UTC time>/. Every process it starts is
# stopped on exit, whatever happens; every load loop is bounded in time.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
DOC=$REPO/docs/benchmarks.md

RUNS=3
DURATION=10s
SKY_SECONDS=60
BUILD=1
WRITE=1
NOTES=""
REAL_PEER=1
WRK_SECONDS=5       # one-at-a-time runs (wrk -t1 -c1), microsecond percentiles
CONTEXTS=50
EXPORTERS=20
SERIES=10000
PAGE_BYTES=100000
WORKERS=10          # hey -c
QPS_PER_WORKER=100  # hey -q: 10 × 100 = 1,000 requests/s
SD_TARGET_MS=2
METRICS_TARGET_MS=5
PROXY_TARGET_MS=1
RSS_TARGET_MB=40
# Scaled-down SkyPilot intervals for the request count (seconds).
SKY_STATUS=1
SKY_JOBS=2
SKY_COST=20

log() { printf 'serve-bench: %s\n' "$*" >&2; }
die() { printf 'serve-bench: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --sky-seconds) SKY_SECONDS=${2:?}; shift 2 ;;
    --no-real-peer) REAL_PEER=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-write) WRITE=0; shift ;;
    --notes) NOTES=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) log "unknown argument '$1'"; usage ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "--duration must be whole seconds, like 10s"
[[ $SKY_SECONDS =~ ^[1-9][0-9]*$ ]] || die "--sky-seconds must be a positive integer"
[[ -z $NOTES || -f $NOTES ]] || die "--notes: $NOTES not found"
RATE=$((WORKERS * QPS_PER_WORKER))

# ------------------------------------------------------------ tools ---------
if ! command -v hey >/dev/null; then
  log "installing hey (apt-get)"
  if [[ $(id -u) == 0 ]]; then apt-get install -y hey >&2 || { apt-get update >&2 && apt-get install -y hey >&2; }
  else sudo apt-get install -y hey >&2; fi
fi
if ! command -v wrk >/dev/null; then
  log "installing wrk (apt-get)"
  if [[ $(id -u) == 0 ]]; then apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; }
  else sudo apt-get install -y wrk >&2; fi
fi
for t in hey wrk curl jq python3 awk; do
  command -v "$t" >/dev/null || die "$t is required"
done

# ------------------------------------------------------------ cleanup -------
TMP=$(mktemp -d /tmp/skydeck-serve-bench.XXXXXX)
PIDS=()   # every background server this script started
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
NETNS=""
NETNS_RES=""
PEER_NAME=""
cleanup() {
  if [[ -n $CHILD_PID ]]; then kill -TERM "$CHILD_PID" 2>/dev/null || true; wait "$CHILD_PID" 2>/dev/null || true; fi
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [[ -n $NETNS ]]; then ip netns del "$NETNS" 2>/dev/null || true; fi
  if [[ -n $NETNS_RES ]]; then rm -rf "$NETNS_RES"; fi
  if [[ -n $PEER_NAME ]]; then timeout 60 "$REPO/scripts/peers/kube.sh" down "$PEER_NAME" >/dev/null 2>&1 || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background and waits for it, so a signal reaches the trap at once.
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
    log "cargo build --release -p skydeck, examples fake_kube and fake_skypilot (attempt $attempt)"
    if (cd "$REPO" && waited cargo build --release -p skydeck >&2 &&
      waited cargo build --release -p skydeck-discovery --example fake_kube >&2 &&
      waited cargo build --release -p skydeck-testkit --example fake_skypilot >&2); then break; fi
    ((attempt < 3)) || die "the release build failed 3 times"
    log "build failed (someone may be mid-edit); retrying in 60 s"
    sleep 60
  done
fi
for b in skydeck examples/fake_kube examples/fake_skypilot; do
  [[ -x $REPO/target/release/$b ]] || die "target/release/$b not found (run without --no-build)"
done
# Copies, so a rebuild by someone else during the run does not swap a binary under us.
BIN=$TMP/skydeck
cp "$REPO/target/release/skydeck" "$BIN"
cp "$REPO/target/release/examples/fake_kube" "$TMP/fake_kube"
cp "$REPO/target/release/examples/fake_skypilot" "$TMP/fake_skypilot"
BIN_VERSION=$("$BIN" --version 2>/dev/null || echo "skydeck ?")
BIN_BUILT=$(date -u -r "$REPO/target/release/skydeck" '+%Y-%m-%d %H:%M UTC')
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
GIT_DIRTY=""
[[ -n $(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] && GIT_DIRTY=", uncommitted changes in the tree"
HEY_VERSION=$(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo "?")

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$REPO/target/bench/serve-$STAMP
mkdir -p "$RAW"
DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$TMP/home"

# ------------------------------------------------------------ helpers -------
# Starts `skydeck serve ARGS…` with log file $1; sets SPID and SURL.
start_serve() {
  local logf=$1; shift
  : >"$logf"
  (cd "$TMP" && exec env -u SKYPILOT_API_SERVER_ENDPOINT -u SKYPILOT_SERVICE_ACCOUNT_TOKEN \
    -u KUBECONFIG -u DD_API_KEY HOME="$TMP/home" RUST_LOG=info \
    "$BIN" serve --listen 127.0.0.1:0 "$@" 2>>"$logf" >/dev/null) &
  local pid=$! url=""
  PIDS+=("$pid")
  for _ in $(seq 300); do
    url=$(sed -n 's/.*skydeck serve listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$logf" | head -1)
    [[ -n $url ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "serve exited (see $logf)"; }
    sleep 0.1
  done
  [[ -n $url ]] || die "serve did not start listening in 30 s (see $logf)"
  SPID=$pid
  SURL=$url
}

# Number of target groups in the SD body at $1.
sd_targets() { curl -fsS --max-time 5 "$1/api/service-discovery" | jq 'length' 2>/dev/null || echo 0; }

# Waits until the SD body at $1 lists $2 targets (at most 120 s).
wait_targets() {
  local n=0
  for _ in $(seq 240); do
    n=$(sd_targets "$1")
    [[ $n == "$2" ]] && return 0
    sleep 0.5
  done
  die "$1 lists $n targets after 120 s, expected $2"
}

proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat; }
vm_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Reads hey's summary; prints: requests rps p50 p90 p99 max(ms) non2xx.
hey_stats() {
  awk '
    function ms(s) { return sprintf("%.2f", s * 1000) }
    /Requests\/sec:/ { rps = $2 }
    /Slowest:/ { max = $2 }
    /^ *50% in/ { p50 = $3 }
    /^ *90% in/ { p90 = $3 }
    /^ *99% in/ { p99 = $3 }
    /^Status code distribution:/ { sec = "codes"; next }
    /^Error distribution:/ { sec = "errors"; next }
    sec == "codes" && /^ *\[[0-9]+\]/ { code = $1; gsub(/[][]/, "", code); n += $2; if (code !~ /^2/) bad += $2 }
    sec == "errors" && /^ *\[[0-9]+\]/ { c = $1; gsub(/[][]/, "", c); n += c; bad += c }
    END { printf "%d %.0f %s %s %s %s %d\n", n, rps, ms(p50), ms(p90), ms(p99), ms(max), bad }
  ' "$1"
}

# Runs hey into file $1 with the remaining arguments (bounded: -z, or -n with -t and timeout).
hey_to() { local out=$1; shift; waited timeout 300 hey "$@" >"$out" 2>&1 || { cat "$out" >&2; die "hey failed"; }; }

# One request at a time for WRK_SECONDS into file $1 (wrk -t1 -c1 --latency, keep-alive),
# remaining arguments wrk's (headers, URL); prints: requests rps p50 p90 p99 max(ms) non2xx.
wrk_to() { local out=$1; shift; waited timeout $((WRK_SECONDS + 30)) wrk -t1 -c1 -d"${WRK_SECONDS}s" --timeout 5s --latency "$@" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }; }
wrk_stats() {
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 }
      return v
    }
    /^ *Latency / && !/Distribution/ { max = ms($4) }
    /Latency Distribution/ { dist = 1 }
    dist && /^ *50%/ { p50 = ms($2) }
    dist && /^ *90%/ { p90 = ms($2) }
    dist && /^ *99%/ { p99 = ms($2) }
    /requests in/ { n = $1 }
    /Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { bad += $NF }
    /Socket errors:/ { bad += 0 }
    END { printf "%d %.0f %.3f %.3f %.3f %.3f %d\n", n, rps, p50, p90, p99, max, bad }
  ' "$1"
}

# A rate-limited run: file $1, server pid $2, URL $3; prints the table cells after "| case |".
rated_run() {
  local out=$1 pid=$2 url=$3 st0 st1 m0 m1 mc sc n rps p50 p90 p99 max bad
  st0=$(proc_ticks "$pid"); m0=$(machine_ticks)
  hey_to "$out" -z "$DURATION" -c "$WORKERS" -q "$QPS_PER_WORKER" "$url"
  st1=$(proc_ticks "$pid"); m1=$(machine_ticks)
  read -r n rps p50 p90 p99 max bad < <(hey_stats "$out")
  mc=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f%%", 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
  sc=$(awk -v a="$st0" -v b="$st1" -v d="${DURATION%s}" -v hz="$CLK_TCK" -v n="$n" \
    'BEGIN { printf "%.0f%% (%.3f ms/request)", 100 * (b - a) / hz / d, 1000 * (b - a) / hz / (n > 0 ? n : 1) }')
  echo "$n $rps $p50 $p90 $p99 $max $bad|$sc|$mc"
}

lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
verdict() { if lt "$1" "$2"; then echo met; else echo "**not met**"; fi; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }

: >"$TMP/verdicts.md"

# ------------------------------------------------------------ fake API server -
log "starting the fake Kubernetes API server ($CONTEXTS contexts × $EXPORTERS exporters, page ≥ $PAGE_BYTES B)"
"$TMP/fake_kube" --dir "$TMP/kube" --contexts "$CONTEXTS" --exporters "$EXPORTERS" \
  --page-bytes "$PAGE_BYTES" --threads 1 >"$TMP/fake_kube.json" 2>"$RAW/fake_kube.log" &
FAKE_PID=$!
PIDS+=("$FAKE_PID")
for _ in $(seq 100); do [[ -s $TMP/fake_kube.json ]] && break; sleep 0.1; done
[[ -s $TMP/fake_kube.json ]] || die "the fake API server did not start (see $RAW/fake_kube.log)"
FAKE_URL=$(jq -r .url "$TMP/fake_kube.json")
KUBECONFIG_FILE=$(jq -r .kubeconfig "$TMP/fake_kube.json")
PAGE_LEN=$(jq -r .page_bytes "$TMP/fake_kube.json")
cp "$KUBECONFIG_FILE" "$RAW/kubeconfig"
TARGETS=$((CONTEXTS * EXPORTERS))

ctx_list() { # $1: with hung (1) or not (0)
  local i out=""
  for ((i = 0; i < CONTEXTS; i++)); do out+="\"ctx-$(printf %02d "$i")\", "; done
  ((${1})) && out+='"hung", '
  echo "[${out%, }]"
}
for v in ok hung; do
  with=0; [[ $v == hung ]] && with=1
  cat >"$TMP/sd-$v.toml" <<EOF
[skypilot]
enabled = false

[discovery]
kubeconfig = ["$KUBECONFIG_FILE"]
contexts = $(ctx_list "$with")
mode = "proxy"
EOF
  cp "$TMP/sd-$v.toml" "$RAW/sd-$v.toml"
done

log "starting serve A ($CONTEXTS contexts) and serve B ($CONTEXTS contexts + 1 hung)"
T0=$(date +%s.%N)
start_serve "$RAW/serve-sd-ok.log" --no-skypilot --config "$TMP/sd-ok.toml"
PID_A=$SPID; URL_A=$SURL
start_serve "$RAW/serve-sd-hung.log" --no-skypilot --config "$TMP/sd-hung.toml"
PID_B=$SPID; URL_B=$SURL
wait_targets "$URL_A" "$TARGETS"
wait_targets "$URL_B" "$TARGETS"
T1=$(date +%s.%N)
WARM_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')
SD_BYTES=$(curl -fsS "$URL_A/api/service-discovery" | wc -c)
curl -fsS "$URL_A/api/service-discovery" | jq '.[0]' >"$RAW/sd-first-group.json"
RSS_A_WARM=$(vm_kb "$PID_A" VmRSS)
RSS_B_WARM=$(vm_kb "$PID_B" VmRSS)
log "both list $TARGETS targets (${WARM_S} s after start); SD body $SD_BYTES B"

# The hung context must be hung while B is measured: its first refresh times out after
# refresh_timeout (10 s), then it is retried every ~30 s; wait for the first failure.
for _ in $(seq 60); do
  curl -fsS "$URL_B/metrics" | grep -Eq 'skydeck_discovery_context_up\{[^}]*context="hung"[^}]*\} 0' && break
  sleep 0.5
done
HUNG_LINES=$(curl -fsS "$URL_B/metrics" | grep 'context="hung"' | grep -v '^#' | head -5 | sed 's/^/    /')

for c in A B; do
  pid_var=PID_$c; url_var=URL_$c
  log "warm-up SD $c"
  hey_to "$RAW/sd-$c-warmup.txt" -z 2s -c "$WORKERS" -q "$QPS_PER_WORKER" "${!url_var}/api/service-discovery"
done
SD_ROWS=""
declare -A SD_P99=() SD_P50=()
for run in $(seq "$RUNS"); do
  for c in A B; do
    pid_var=PID_$c; url_var=URL_$c
    log "run $run/$RUNS SD $c ($RATE/s for $DURATION)"
    IFS='|' read -r stats sc mc < <(rated_run "$RAW/sd-$c-run$run.txt" "${!pid_var}" "${!url_var}/api/service-discovery")
    read -r n rps p50 p90 p99 max bad <<<"$stats"
    [[ $c == A ]] && label="$CONTEXTS contexts, all answering" || label="$CONTEXTS contexts + 1 hung"
    SD_ROWS+="| $label | $run | $n | $rps | $p50 | $p90 | $p99 | $max | $bad | $sc | $mc | $(verdict "$p99" "$SD_TARGET_MS") |"$'\n'
    SD_P99[$c]+="$p99 "; SD_P50[$c]+="$p50 "
  done
done
# One at a time: the service time without queueing behind other requests.
SD_SERIAL=""
for c in A B; do
  url_var=URL_$c
  wrk_to "$RAW/sd-$c-serial.txt" "${!url_var}/api/service-discovery"
  read -r n _ p50 _ p99 max bad < <(wrk_stats "$RAW/sd-$c-serial.txt")
  SD_SERIAL+="$c: p50 $p50 ms, p99 $p99 ms, max $max ms ($n requests, $bad non-2xx); "
done

# ------------------------------------------------------------ proxy ---------
# Runs the cases named after $1 (each "label|url|wrk header or empty") $RUNS times,
# alternating, one request at a time; appends rows to PROXY_ROWS, percentiles to P50/P99.
declare -A P50=() P99=()
PROXY_ROWS=""
proxy_runs() {
  local tag=$1; shift
  local run spec lbl u hdr st0 st1 cpu n rps p50 p90 p99 max bad i=0
  for run in $(seq "$RUNS"); do
    i=0
    for spec in "$@"; do
      IFS='|' read -r lbl u hdr <<<"$spec"
      i=$((i + 1))
      log "run $run/$RUNS proxy $tag: $lbl (${WRK_SECONDS}s, one request at a time)"
      st0=$(proc_ticks "$PROXY_SERVE_PID")
      if [[ -n $hdr ]]; then wrk_to "$RAW/proxy-$tag-$i-run$run.txt" -H "$hdr" "$u"
      else wrk_to "$RAW/proxy-$tag-$i-run$run.txt" "$u"; fi
      st1=$(proc_ticks "$PROXY_SERVE_PID")
      read -r n rps p50 p90 p99 max bad < <(wrk_stats "$RAW/proxy-$tag-$i-run$run.txt")
      cpu=$(awk -v a="$st0" -v b="$st1" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.3f", 1000 * (b - a) / hz / (n > 0 ? n : 1) }')
      [[ $lbl == *serve* ]] || cpu="— (serve idle)"
      PROXY_ROWS+="| $tag | $lbl | $run | $n | $rps | $p50 | $p90 | $p99 | $max | $bad | $cpu |"$'\n'
      P50[$tag/$i]+="$p50 "; P99[$tag/$i]+="$p99 "
    done
  done
}
# Per-run differences, case $2 minus case $3 of tag $1, in percentile array $4 (P50 or P99).
diffs() {
  local -n arr=$4
  paste -d' ' <(tr ' ' '\n' <<<"${arr[$1/$2]}" | grep -v '^$') <(tr ' ' '\n' <<<"${arr[$1/$3]}" | grep -v '^$') |
    awk '{ printf "%.3f ", $1 - $2 }'
}

POD=nvidia-dcgm-exporter-00
DIRECT=$FAKE_URL/api/v1/namespaces/gpu-operator/pods/$POD:9400/proxy/metrics
VIA=$URL_A/proxy/ctx-00/gpu-operator/$POD/9400/metrics
d_len=$(curl -fsS "$DIRECT" | wc -c)
v_len=$(curl -fsS "$VIA" | wc -c)
[[ $d_len == "$v_len" && $d_len == "$PAGE_LEN" ]] || die "proxy page sizes differ: direct $d_len, via serve $v_len, expected $PAGE_LEN"
curl -fsS "$DIRECT" | cmp -s - <(curl -fsS "$VIA") || die "the page through serve differs from the direct one"
log "proxy (fake API server): warm-up"
hey_to "$RAW/proxy-direct-warmup.txt" -n 200 -c 1 "$DIRECT"
hey_to "$RAW/proxy-via-warmup.txt" -n 200 -c 1 "$VIA"
PROXY_SERVE_PID=$PID_A
proxy_runs fake "direct: the fake API server's pod proxy route|$DIRECT|" "through serve: /proxy/ctx-00/…|$VIA|"
ADD50=$(diffs fake 2 1 P50); ADD99=$(diffs fake 2 1 P99)
ADD50_MED=$(median <<<"$ADD50"); ADD99_MED=$(median <<<"$ADD99")
printf '* %s — fake API server: serve'"'"'s /proxy/… adds < %s ms at p50 over the direct fetch of a %s B page: +%s ms (median of per-run differences, range %s ms; p99 +%s ms)\n' \
  "$(verdict "$ADD50_MED" "$PROXY_TARGET_MS")" "$PROXY_TARGET_MS" "$PAGE_LEN" "$ADD50_MED" "$(minmax <<<"$ADD50")" "$ADD99_MED" >>"$TMP/verdicts.md"
SD_REQS_A=$(( $(cat "$RAW"/sd-A-*.txt | awk '/^ *\[200\]/ {s += $2} END {print s + 0}') + $(awk '/requests in/ {print $1}' "$RAW/sd-A-serial.txt") ))
PROXIED_A=$(curl -fsS "$URL_A/metrics" | awk '/^skydeck_proxy_requests_total\{context="ctx-00",result="ok"\}/ {print $2}')

# ------------------------------------------------------------ real peer -----
REAL_DONE=0
KUBE_BIN=${SKYDECK_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skydeck-peers}/kubernetes-1.20.2/kube-apiserver
if ((REAL_PEER)) && [[ -x $KUBE_BIN && $(id -u) == 0 ]] && command -v ip >/dev/null && command -v etcd >/dev/null; then
  PEER_NAME=bench-serve
  log "real peer: scripts/peers/kube.sh up $PEER_NAME"
  waited timeout 180 "$REPO/scripts/peers/kube.sh" up "$PEER_NAME" >"$TMP/peer.endpoint" 2>"$RAW/peer.log" ||
    die "kube.sh up $PEER_NAME failed (see $RAW/peer.log)"
  PEER_DIR=${SKYDECK_PEERS_DIR:-$REPO/target/peers}/kube-$PEER_NAME
  PEER_URL=$(tail -1 "$TMP/peer.endpoint")
  ADMIN=$(cat "$PEER_DIR/admin-token")
  kapi() { curl -fsS --cacert "$PEER_DIR/ca.crt" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$@"; }
  PEER_VERSION=$(kapi "$PEER_URL/version" | jq -r .gitVersion)
  # A network namespace on a free 10.250.X.0/24 (the reservation scheme of skydeck-testkit's
  # NetnsHost): the API server refuses to proxy to loopback.
  for x in $(seq 200 249) $(seq 1 199); do
    if mkdir "/tmp/skydeck-netns-10.250.$x" 2>/dev/null; then
      NETNS_RES=/tmp/skydeck-netns-10.250.$x; echo $$ >"$NETNS_RES/pid"; break
    fi
  done
  [[ -n $NETNS_RES ]] || die "no free 10.250.X.0/24 subnet"
  HOST_IP=10.250.$x.1; POD_IP=10.250.$x.2
  NETNS=skydeck-bench-$$
  hif=sbh$$; nif=sbn$$
  ip netns add "$NETNS"
  ip link add "$hif" type veth peer name "$nif"
  ip link set "$nif" netns "$NETNS"
  ip addr add "$HOST_IP/24" dev "$hif"; ip link set "$hif" up
  ip netns exec "$NETNS" ip addr add "$POD_IP/24" dev "$nif"
  ip netns exec "$NETNS" ip link set "$nif" up
  ip netns exec "$NETNS" ip link set lo up
  ip netns exec "$NETNS" "$TMP/fake_kube" --page-only "$POD_IP:9400" --page-bytes "$PAGE_BYTES" >/dev/null 2>"$RAW/page-server.log" &
  PIDS+=("$!")
  for _ in $(seq 100); do curl -fsS --max-time 1 -o /dev/null "http://$POD_IP:9400/metrics" 2>/dev/null && break; sleep 0.1; done
  kapi -X POST "$PEER_URL/api/v1/namespaces" -d '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"gpu-operator"}}' >/dev/null 2>&1 || true
  kapi -X POST "$PEER_URL/api/v1/namespaces/gpu-operator/services" -d '{"apiVersion":"v1","kind":"Service",
    "metadata":{"name":"nvidia-dcgm-exporter","labels":{"app":"nvidia-dcgm-exporter"}},
    "spec":{"selector":{"app":"nvidia-dcgm-exporter"},"ports":[{"name":"gpu-metrics","port":9400,"targetPort":9400,"protocol":"TCP"}]}}' >/dev/null
  kapi -X POST "$PEER_URL/api/v1/namespaces/gpu-operator/pods" -d '{"apiVersion":"v1","kind":"Pod",
    "metadata":{"name":"dcgm-bench","labels":{"app":"nvidia-dcgm-exporter"}},
    "spec":{"nodeName":"gpu-node-0","containers":[{"name":"nvidia-dcgm-exporter","image":"nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04","ports":[{"name":"metrics","containerPort":9400}]}]}}' >/dev/null
  kapi "$PEER_URL/api/v1/namespaces/gpu-operator/pods/dcgm-bench/status" |
    jq --arg ip "$POD_IP" '.status = {phase: "Running", podIP: $ip, podIPs: [{ip: $ip}], conditions: [{type: "Ready", status: "True"}]}' >"$TMP/pod-status.json"
  kapi -X PUT "$PEER_URL/api/v1/namespaces/gpu-operator/pods/dcgm-bench/status" -d @"$TMP/pod-status.json" >/dev/null
  kapi -X POST "$PEER_URL/api/v1/namespaces/gpu-operator/endpoints" -d '{"apiVersion":"v1","kind":"Endpoints",
    "metadata":{"name":"nvidia-dcgm-exporter"},
    "subsets":[{"addresses":[{"ip":"'"$POD_IP"'","nodeName":"gpu-node-0","targetRef":{"kind":"Pod","name":"dcgm-bench","namespace":"gpu-operator"}}],
      "ports":[{"name":"gpu-metrics","port":9400,"protocol":"TCP"}]}]}' >/dev/null
  {
    printf 'apiVersion: v1\nkind: Config\ncurrent-context: peer\n'
    printf 'clusters:\n- name: peer\n  cluster:\n    server: %s\n    certificate-authority: %s\n' "$PEER_URL" "$PEER_DIR/ca.crt"
    printf 'users:\n- name: admin\n  user:\n    token: %s\n' "$ADMIN"
    printf 'contexts:\n- name: peer\n  context:\n    cluster: peer\n    user: admin\n'
  } >"$TMP/peer-kubeconfig"
  printf '[skypilot]\nenabled = false\n\n[discovery]\nkubeconfig = ["%s"]\ncontexts = ["peer"]\nmode = "proxy"\n' "$TMP/peer-kubeconfig" >"$TMP/peer.toml"
  start_serve "$RAW/serve-peer.log" --no-skypilot --config "$TMP/peer.toml"
  PID_P=$SPID; URL_P=$SURL
  wait_targets "$URL_P" 1
  R_DIRECT=http://$POD_IP:9400/metrics
  R_APISERVER=$PEER_URL/api/v1/namespaces/gpu-operator/pods/dcgm-bench:9400/proxy/metrics
  R_VIA=$URL_P/proxy/peer/gpu-operator/dcgm-bench/9400/metrics
  cmp -s <(curl -fsS "$R_DIRECT") <(kapi "$R_APISERVER") || die "the page through the API server differs from the direct one"
  cmp -s <(curl -fsS "$R_DIRECT") <(curl -fsS "$R_VIA") || die "the page through serve differs from the direct one"
  log "proxy (real peer): warm-up"
  wrk_to "$RAW/proxy-real-warmup.txt" "$R_VIA"
  PROXY_SERVE_PID=$PID_P
  proxy_runs real "(a) direct from the host: http://10.250.X.2:9400/metrics|$R_DIRECT|" \
    "(b) through the API server's pod proxy ($PEER_VERSION, TLS, admin token)|$R_APISERVER|Authorization: Bearer $ADMIN" \
    "(c) through serve: /proxy/peer/… (→ API server → pod)|$R_VIA|"
  RADD50=$(diffs real 3 2 P50); RADD99=$(diffs real 3 2 P99)
  RAPI50=$(diffs real 2 1 P50)
  RADD50_MED=$(median <<<"$RADD50"); RADD99_MED=$(median <<<"$RADD99"); RAPI50_MED=$(median <<<"$RAPI50")
  printf '* %s — real kube-apiserver %s: serve'"'"'s /proxy/… adds < %s ms at p50 over the API server'"'"'s pod proxy, (c) − (b): +%s ms (median of per-run differences, range %s ms; p99 +%s ms); the API server itself adds +%s ms over the direct fetch, (b) − (a)\n' \
    "$(verdict "$RADD50_MED" "$PROXY_TARGET_MS")" "$PEER_VERSION" "$PROXY_TARGET_MS" "$RADD50_MED" "$(minmax <<<"$RADD50")" "$RADD99_MED" "$RAPI50_MED" >>"$TMP/verdicts.md"
  stop_pid "$PID_P"; forget_pid "$PID_P"
  REAL_DONE=1
else
  log "real peer: skipped (--no-real-peer, or kube-apiserver not built at $KUBE_BIN, or not root)"
fi

# ------------------------------------------------------------ RSS -----------
HWM_A=$(vm_kb "$PID_A" VmHWM); RSS_A=$(vm_kb "$PID_A" VmRSS)
HWM_B=$(vm_kb "$PID_B" VmHWM); RSS_B=$(vm_kb "$PID_B" VmRSS)
FAKE_STATS=$(curl -fsS "$FAKE_URL/_bench/stats")
stop_pid "$PID_A"; forget_pid "$PID_A"
stop_pid "$PID_B"; forget_pid "$PID_B"
for c in A B; do
  med=$(median <<<"${SD_P99[$c]}")
  [[ $c == A ]] && label="$CONTEXTS contexts × $EXPORTERS exporters, all answering" || label="the same + 1 hung context"
  printf '* %s — /api/service-discovery p99 < %s ms at %s requests/s, %s: %s ms (median of %s runs, range %s ms)\n' \
    "$(verdict "$med" "$SD_TARGET_MS")" "$SD_TARGET_MS" "$RATE" "$label" "$med" "$RUNS" "$(minmax <<<"${SD_P99[$c]}")" >>"$TMP/verdicts.md"
done
RATIO_SD=$(awk -v a="$(median <<<"${SD_P99[B]}")" -v b="$(median <<<"${SD_P99[A]}")" 'BEGIN { printf "%.2f", a / b }')
printf '* %s — serve peak RSS < %s MB with %s targets: %s MB VmHWM (serve A, after %s SD requests and %s proxied scrapes; serve B with the hung context: %s MB)\n' \
  "$(verdict "$(mb "$HWM_A")" "$RSS_TARGET_MB")" "$RSS_TARGET_MB" "$TARGETS" "$(mb "$HWM_A")" "$SD_REQS_A" \
  "$PROXIED_A" "$(mb "$HWM_B")" >>"$TMP/verdicts.md"

# ------------------------------------------------------------ /metrics ------
log "/metrics: serve with one [[collectors]] command printing $SERIES series"
cat >"$TMP/metrics.toml" <<EOF
[skypilot]
enabled = false

[discovery]
enabled = false

[[collectors]]
name = "bench"
format = "prometheus"
command = ["python3", "-c", 'import sys; sys.stdout.write("# HELP bench_series A benchmark series.\n# TYPE bench_series gauge\n" + "".join("bench_series{i=\"%d\"} %d\n" % (i, i) for i in range($SERIES)))']
EOF
cp "$TMP/metrics.toml" "$RAW/metrics.toml"
start_serve "$RAW/serve-metrics.log" --no-skypilot --no-discovery --config "$TMP/metrics.toml"
PID_M=$SPID; URL_M=$SURL
got=0
for _ in $(seq 120); do
  got=$(curl -fsS "$URL_M/metrics" | grep -c '^bench_series' || true)
  ((got >= SERIES)) && break
  sleep 0.5
done
((got >= SERIES)) || die "/metrics shows $got bench_series lines after 60 s, expected $SERIES"
curl -fsS "$URL_M/metrics" >"$RAW/metrics-body.txt"
M_BYTES=$(wc -c <"$RAW/metrics-body.txt")
M_LINES=$(grep -vc '^#' "$RAW/metrics-body.txt")
M_SAMPLE=$(grep -m1 '^bench_series' "$RAW/metrics-body.txt")
M_GZ=$(curl -fsS -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$URL_M/metrics")
M_OM=$(curl -fsS -H 'Accept: application/openmetrics-text; version=1.0.0' -o /dev/null -w '%{size_download}' "$URL_M/metrics")
hey_to "$RAW/metrics-warmup.txt" -z 2s -c "$WORKERS" -q "$QPS_PER_WORKER" "$URL_M/metrics"
M_ROWS=""; M_P99=""
for run in $(seq "$RUNS"); do
  log "run $run/$RUNS /metrics ($RATE/s for $DURATION)"
  IFS='|' read -r stats sc mc < <(rated_run "$RAW/metrics-run$run.txt" "$PID_M" "$URL_M/metrics")
  read -r n rps p50 p90 p99 max bad <<<"$stats"
  M_ROWS+="| \`GET /metrics\` ($SERIES series) | $run | $n | $rps | $p50 | $p90 | $p99 | $max | $bad | $sc | $mc | $(verdict "$p99" "$METRICS_TARGET_MS") |"$'\n'
  M_P99+="$p99 "
done
wrk_to "$RAW/metrics-serial.txt" "$URL_M/metrics"
read -r n _ ms50 _ ms99 msmax mbad < <(wrk_stats "$RAW/metrics-serial.txt")
M_SERIAL="p50 $ms50 ms, p99 $ms99 ms, max $msmax ms ($n requests, $mbad non-2xx)"
HWM_M=$(vm_kb "$PID_M" VmHWM)
stop_pid "$PID_M"; forget_pid "$PID_M"
M_MED=$(median <<<"$M_P99")
printf '* %s — /metrics p99 < %s ms at %s requests/s with %s series: %s ms (median of %s runs, range %s ms); response %s bytes\n' \
  "$(verdict "$M_MED" "$METRICS_TARGET_MS")" "$METRICS_TARGET_MS" "$RATE" "$SERIES" "$M_MED" "$RUNS" "$(minmax <<<"$M_P99")" "$M_BYTES" >>"$TMP/verdicts.md"

# ------------------------------------------------------------ SkyPilot load --
log "SkyPilot load: serve against the fake SkyPilot server for $SKY_SECONDS s (intervals ${SKY_STATUS}s/${SKY_JOBS}s/${SKY_COST}s)"
"$TMP/fake_skypilot" "$TMP/sky-counts.json" >"$TMP/sky.url" 2>"$RAW/fake_skypilot.log" &
SKY_PID=$!
PIDS+=("$SKY_PID")
for _ in $(seq 100); do [[ -s $TMP/sky.url ]] && break; sleep 0.1; done
SKY_URL=$(head -1 "$TMP/sky.url")
[[ $SKY_URL =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "the fake SkyPilot server did not start (see $RAW/fake_skypilot.log)"
printf '[discovery]\nenabled = false\n' >"$TMP/sky.toml"
S0=$(date +%s.%N)
start_serve "$RAW/serve-sky.log" --no-discovery --config "$TMP/sky.toml" \
  --endpoint "$SKY_URL" --status-interval "${SKY_STATUS}s" --jobs-interval "${SKY_JOBS}s" --cost-interval "${SKY_COST}s"
PID_S=$SPID; URL_S=$SURL
sleep "$SKY_SECONDS"
curl -fsS "$URL_S/metrics" >"$RAW/serve-sky-metrics.txt" || true
stop_pid "$PID_S"; forget_pid "$PID_S"
S1=$(date +%s.%N)
sleep 0.5
stop_pid "$SKY_PID"; forget_pid "$SKY_PID"
cp "$TMP/sky-counts.json" "$RAW/sky-counts.json"
SKY_WALL=$(awk -v a="$S0" -v b="$S1" 'BEGIN { printf "%.1f", b - a }')
cnt() { jq -r --arg k "$1" '.by[$k] // 0' "$TMP/sky-counts.json"; }
C_HEALTH=$(cnt "GET /api/health"); C_STATUS=$(cnt "POST /status"); C_JOBS=$(cnt "POST /jobs/queue/v2")
C_COST=$(cnt "POST /cost_report"); C_GET=$(cnt "GET /api/get"); C_TOTAL=$(jq -r .total "$TMP/sky-counts.json")
# The formula: each loop runs at once, then every interval (jitter ±10 % averages out):
# 1 + floor(T / interval) runs in T seconds; each run is a POST and a GET /api/get.
SKY_T=$(awk -v a="$S0" -v b="$S1" 'BEGIN { printf "%.3f", b - a }')
e_runs() { awk -v t="$SKY_T" -v i="$1" 'BEGIN { printf "%d", 1 + int(t / i) }'; }
E_STATUS=$(e_runs "$SKY_STATUS"); E_JOBS=$(e_runs "$SKY_JOBS"); E_COST=$(e_runs "$SKY_COST")
E_TOTAL=$((1 + 2 * (E_STATUS + E_JOBS + E_COST)))
# Per hour at the defaults (status 30 s, jobs 1 min, cost 10 min) vs cron collect every 10 min.
H_SERVE=$((1 + 2 * (3600 / 30 + 3600 / 60 + 3600 / 600)))
H_CRON=$((6 * (1 + 3 + 3)))
SKY_RATIO=$(awk -v a="$H_SERVE" -v b="$H_CRON" 'BEGIN { printf "%.1f", a / b }')
SKY_OK=met
awk -v m="$C_TOTAL" -v e="$E_TOTAL" 'BEGIN { d = m - e; if (d < 0) d = -d; exit !(d <= 0.1 * e) }' || SKY_OK="**not met**"
printf '* %s — the requests serve sent in %s s with intervals %ss/%ss/%ss match the formula within 10 %%: %s counted, %s expected\n' \
  "$SKY_OK" "$SKY_WALL" "$SKY_STATUS" "$SKY_JOBS" "$SKY_COST" "$C_TOTAL" "$E_TOTAL" >>"$TMP/verdicts.md"

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
DATE_END=$(date -u '+%H:%M UTC')

# ------------------------------------------------------------ report --------
BEGIN_MARK='<!-- serve.sh: begin (scripts/bench/serve.sh rewrites this section) -->'
END_MARK='<!-- serve.sh: end -->'
SECTION=$TMP/section.md
{
  echo "$BEGIN_MARK"
  echo "# skydeck serve and discovery"
  echo
  echo "\`scripts/bench/serve.sh\` runs the release \`skydeck serve\` binary on 127.0.0.1 against fakes (no real cluster or SkyPilot server is involved): a fake Kubernetes API server (\`crates/skydeck-discovery/examples/fake_kube.rs\`: API discovery, Services, EndpointSlices and the pod proxy route on plain HTTP, one GPU Operator exporter Service with $EXPORTERS ready endpoints in namespace \`gpu-operator\`, the other default namespaces empty; one kubeconfig with $CONTEXTS contexts pointing at it, plus \`hung\`, pointing at a TCP listener that accepts and never answers) and the fake SkyPilot server of \`skydeck-testkit\` (\`examples/fake_skypilot.rs\`, \`Behavior::Healthy\`, counting requests). Rate-limited runs use [hey](https://github.com/rakyll/hey) \`-z $DURATION -c $WORKERS -q $QPS_PER_WORKER\` ($WORKERS keep-alive workers × $QPS_PER_WORKER/s = $RATE requests/s; closed-loop, so \"requests/s achieved\" shows whether the rate was held) after an unreported 2 s warm-up; latencies are hey's, client side. **The machine has $NPROC shared CPUs and the load generator, the fakes and serve all run on them**: \"server CPU\" is serve's own user+system time over the run, \"machine CPU busy\" everything on the machine (hey, the fakes, other tenants)."
  echo
  echo "* date: $DATE_START (to $DATE_END)"
  echo "* machine: $NPROC CPUs ($CPU_MODEL), $MEM RAM, shared; load average at start $LOAD_START, at end $LOAD_END"
  echo "* skydeck: $BIN_VERSION, release build of $BIN_BUILT (git $GIT_REV$GIT_DIRTY)"
  echo "* load generator: hey $HEY_VERSION; $RUNS run(s) per rate-limited case of $DURATION each"
  echo "* raw output: \`target/bench/serve-$STAMP/\`"
  echo
  echo "Rerun:"
  echo
  echo '```sh'
  echo 'bash scripts/bench/serve.sh'
  echo '```'
  echo
  echo "## Targets"
  echo
  echo "| measurement | measured | target | |"
  echo "|---|---|---|---|"
  printf '| `/api/service-discovery` p99 at %s req/s, %s contexts × %s exporters | %s ms (runs %s) | < %s ms | %s |\n' "$RATE" "$CONTEXTS" "$EXPORTERS" "$(median <<<"${SD_P99[A]}")" "$(minmax <<<"${SD_P99[A]}")" "$SD_TARGET_MS" "$(verdict "$(median <<<"${SD_P99[A]}")" "$SD_TARGET_MS")"
  printf '| … the same with one context hung | %s ms (runs %s) | < %s ms | %s |\n' "$(median <<<"${SD_P99[B]}")" "$(minmax <<<"${SD_P99[B]}")" "$SD_TARGET_MS" "$(verdict "$(median <<<"${SD_P99[B]}")" "$SD_TARGET_MS")"
  printf '| `/metrics` p99 at %s req/s, %s series | %s ms (runs %s) | < %s ms | %s |\n' "$RATE" "$SERIES" "$M_MED" "$(minmax <<<"$M_P99")" "$METRICS_TARGET_MS" "$(verdict "$M_MED" "$METRICS_TARGET_MS")"
  printf '| `/metrics` response size, %s series | %s bytes (text format; %s bytes as OpenMetrics; %s bytes with `Accept-Encoding: gzip`) | — | |\n' "$SERIES" "$M_BYTES" "$M_OM" "$M_GZ"
  if ((REAL_DONE)); then
    printf '| scrape proxy added latency (p50, %s B page), real kube-apiserver: (c) through serve − (b) API server pod proxy | +%s ms (runs %s; p99 +%s ms) | < %s ms | %s |\n' "$PAGE_LEN" "$RADD50_MED" "$(minmax <<<"$RADD50")" "$RADD99_MED" "$PROXY_TARGET_MS" "$(verdict "$RADD50_MED" "$PROXY_TARGET_MS")"
  fi
  printf '| scrape proxy added latency (p50, %s B page), fake API server: through serve − direct | +%s ms (runs %s; p99 +%s ms) | < %s ms | %s |\n' "$PAGE_LEN" "$ADD50_MED" "$(minmax <<<"$ADD50")" "$ADD99_MED" "$PROXY_TARGET_MS" "$(verdict "$ADD50_MED" "$PROXY_TARGET_MS")"
  printf '| serve peak RSS (VmHWM), %s targets | %s MB | < %s MB | %s |\n' "$TARGETS" "$(mb "$HWM_A")" "$RSS_TARGET_MB" "$(verdict "$(mb "$HWM_A")" "$RSS_TARGET_MB")"
  printf '| SkyPilot requests/hour, serve at default intervals | %s (vs. %s for cron `collect` every 10 min: %s×) | — | |\n' "$H_SERVE" "$H_CRON" "$SKY_RATIO"
  printf '| … measured with scaled intervals: counted vs. formula | %s vs. %s | within 10 %% | %s |\n' "$C_TOTAL" "$E_TOTAL" "$SKY_OK"
  echo
  cat "$TMP/verdicts.md"
  echo
  echo "## 1. \`/api/service-discovery\` with $TARGETS targets, and with one context hung"
  echo
  echo "Two serves run at once, their runs alternating: **A** watches \`ctx-00\` … \`ctx-$(printf %02d $((CONTEXTS - 1)))\` (\`--no-skypilot --config sd-ok.toml\`: \`[discovery] kubeconfig, contexts, mode = \"proxy\"\`, default refresh interval 30 s and timeout 10 s, all six default namespaces), **B** the same plus \`hung\`. Both listed all $TARGETS targets ${WARM_S} s after start; the body is $SD_BYTES bytes (one target group per exporter, proxy mode). B's \`hung\` context, when measured:"
  echo
  echo "$HUNG_LINES"
  echo
  echo "| case | run | requests | requests/s achieved | p50 ms | p90 ms | p99 ms | max ms | non-2xx | server CPU (of one core) | machine CPU busy | p99 < $SD_TARGET_MS ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$SD_ROWS"
  echo
  echo "p99 with the hung context / without (medians): ${RATIO_SD}×. One request at a time for ${WRK_SECONDS} s (\`wrk -t1 -c1 --latency\`, microsecond percentiles): ${SD_SERIAL%; }."
  echo
  echo "Refresh load the two serves put on the fake API server over the whole run: \`$FAKE_STATS\`."
  echo
  echo "## 2. \`/metrics\` with $SERIES series"
  echo
  echo "\`skydeck serve --no-skypilot --no-discovery --config metrics.toml\` with one \`[[collectors]]\` command (\`python3 -c\`, $SERIES lines \`bench_series{i=\"N\"} N\`, run every minute, the default). The answer has $M_LINES sample lines (the series plus serve's own health metrics), $M_BYTES bytes; a series reads \`$M_SAMPLE\`. Peak RSS of this serve: $(mb "$HWM_M") MB."
  echo
  echo "| endpoint | run | requests | requests/s achieved | p50 ms | p90 ms | p99 ms | max ms | non-2xx | server CPU (of one core) | machine CPU busy | p99 < $METRICS_TARGET_MS ms |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$M_ROWS"
  echo
  echo "One request at a time for ${WRK_SECONDS} s (\`wrk -t1 -c1 --latency\`): $M_SERIAL. serve does not compress: the answer is as large with \`Accept-Encoding: gzip\`."
  echo
  echo "## 3. Scrape proxy: added latency on a ${PAGE_LEN} B DCGM page"
  echo
  echo "One request at a time, keep-alive, ${WRK_SECONDS} s per run (\`wrk -t1 -c1 --latency\`: microsecond percentiles; hey's 0.1 ms resolution is too coarse here), the cases alternating within each run, after a warm-up. Every page was checked byte-identical across the paths. serve's added latency is its row minus the row of the upstream it forwards to, per run. \"serve CPU\" is serve's user+system time per request of the row."
  echo
  echo "* **fake**: the fake API server's pod proxy route (\`GET /api/v1/namespaces/gpu-operator/pods/$POD:9400/proxy/metrics\`, answered by the fake itself) vs. serve A's \`GET /proxy/ctx-00/gpu-operator/$POD/9400/metrics\`, which checks the target against discovery's list and forwards to exactly that route with the context's credentials, streaming the body back."
  if ((REAL_DONE)); then
    echo "* **real**: the real kube-apiserver peer (\`scripts/peers/kube.sh up $PEER_NAME\`, $PEER_VERSION with etcd, HTTPS on 127.0.0.1) holding a Service, its Endpoints and a Pod whose \`status.podIP\` is 10.250.X.2 in a network namespace this script creates (veth to the host), where \`fake_kube --page-only\` serves the same page on :9400. (a) direct from the host, (b) through the API server's pod proxy (\`/api/v1/namespaces/gpu-operator/pods/dcgm-bench:9400/proxy/metrics\`, admin token), (c) through a serve watching only that context (serve → API server → pod). serve's added latency is (c) − (b)."
  else
    echo "* **real**: skipped (the kube-apiserver peer is not built, \`--no-real-peer\`, or not root)."
  fi
  echo
  echo "| API server | path | run | requests | requests/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | serve CPU ms/request |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$PROXY_ROWS"
  echo
  echo "fake: through serve − direct, per run, at p50: $(sed 's/ $//; s/ / ms, /g' <<<"$ADD50") ms (median +$ADD50_MED ms); at p99: $(sed 's/ $//; s/ / ms, /g' <<<"$ADD99") ms."
  if ((REAL_DONE)); then
    echo
    echo "real: (c) − (b), per run, at p50: $(sed 's/ $//; s/ / ms, /g' <<<"$RADD50") ms (median +$RADD50_MED ms); at p99: $(sed 's/ $//; s/ / ms, /g' <<<"$RADD99") ms. The API server's own cost, (b) − (a), at p50: $(sed 's/ $//; s/ / ms, /g' <<<"$RAPI50") ms (median +$RAPI50_MED ms)."
  fi
  echo
  echo "## 4. Peak RSS with $TARGETS targets"
  echo
  echo "From \`/proc/PID/status\` after everything above: serve A VmHWM $(mb "$HWM_A") MB (VmRSS $(mb "$RSS_A") MB; $(mb "$RSS_A_WARM") MB right after the $TARGETS targets were first listed), serve B (with the hung context) VmHWM $(mb "$HWM_B") MB (VmRSS $(mb "$RSS_B") MB; $(mb "$RSS_B_WARM") MB when warm). Serve A had answered $SD_REQS_A SD requests and $PROXIED_A proxied scrapes."
  echo
  echo "## 5. Load on the SkyPilot API server"
  echo
  echo "Formula (defaults: status every 30 s, jobs every 1 min, cost every 10 min; each refresh is a submit POST plus a \`GET /api/get\`; one \`GET /api/health\` when the client connects): serve sends 1 + 2 × (120 + 60 + 6) = **$H_SERVE requests in its first hour** and 372 per hour after; a cron \`skydeck collect\` every 10 minutes sends 6 × (1 health + 3 POSTs + 3 GETs) = **$H_CRON per hour**, so serve asks ${SKY_RATIO}× as often (per request kind: status 240 vs. 12, jobs 120 vs. 12, cost 12 vs. 12, health 1 vs. 6). The expensive requests on a large fleet (\`/cost_report\`, \`/jobs/queue/v2\`, see the first section of this file) are at the same rate as cron for cost and 10× for jobs."
  echo
  echo "Measured: serve (\`--endpoint <fake> --no-discovery --status-interval ${SKY_STATUS}s --jobs-interval ${SKY_JOBS}s --cost-interval ${SKY_COST}s\`, default ±10 % jitter) ran ${SKY_WALL} s; the fake counted (expected from the formula 1 + ⌊T / interval⌋ runs per loop, T = ${SKY_WALL} s):"
  echo
  echo "| request | counted | expected |"
  echo "|---|---|---|"
  echo "| \`GET /api/health\` | $C_HEALTH | 1 |"
  echo "| \`POST /status\` | $C_STATUS | $E_STATUS |"
  echo "| \`POST /jobs/queue/v2\` | $C_JOBS | $E_JOBS |"
  echo "| \`POST /cost_report\` | $C_COST | $E_COST |"
  echo "| \`GET /api/get\` | $C_GET | $((E_STATUS + E_JOBS + E_COST)) |"
  echo "| **total** | **$C_TOTAL** | **$E_TOTAL** |"
  echo
  echo "All counted: \`$(jq -c .by "$TMP/sky-counts.json")\`."
  echo
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
