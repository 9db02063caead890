#!/usr/bin/env bash
# Benchmark: the control plane's admin API (`skydeck control`) with 10,000 nodes in the table,
# on SQLite and on PostgreSQL, driven by `hey` at a fixed request rate over loopback.
#
#   bash scripts/bench/control.sh [--databases sqlite,postgres] [--runs N] [--duration D]
#                                 [--db-connections N] [--no-build] [--no-write] [--notes FILE]
#
#   --databases L      which databases (default sqlite,postgres)
#   --runs N           measurements of each endpoint, interleaved (default 3)
#   --duration D       length of one measurement, hey's -z (default 10s)
#   --db-connections N the server's --db-connections (default: the server's own, 16)
#   --no-build         use the existing target/release/skydeck
#   --no-write         print the report only; leave docs/benchmarks.md alone
#   --notes FILE       Markdown appended to the section (observations of a person)
#   --agents N         simulated heartbeating agents (default 2000)
#   --heartbeat-duration D  length of the steady heartbeat run (default 60s)
#
# Per database: a fresh database, `skydeck control --no-reconciler` (API only, never talks to
# SkyPilot), 10,000 nodes seeded through POST /admin/nodes/launch (5 request bodies, 2,000 each,
# 50 at a time), then, after a 2 s warm-up of each, GET /healthz (baseline: no auth, no
# database), GET /admin/nodes?limit=100 and GET /admin/nodes/<name>/status at 1,000 requests/s
# (hey -c 20 -q 50: 20 workers × 50/s, keep-alive), p50/p90/p99/max from hey's latency
# distribution. Where the time goes: each endpoint again one request at a time (hey -n 500 -c 1,
# no rate limit: the service time and the server's CPU per request) and the two SQL queries alone
# through the database's own CLI (500 each); finally 100 launches at once (hey -n 100 -c 100),
# checked by counting the rows in the database and through the list API; last, 2,000 simulated
# agents (examples/store_bench.rs seed: nodes with known tokens, walked to active) heartbeating
# every 30 s for --heartbeat-duration over loopback (examples/heartbeat_load.rs, the contract's
# Heartbeat body), then all 2,000 at once (200 in flight): heartbeat p99 and the server's CPU per
# 1,000 heartbeats. Target (the issue): p99 < 10 ms on both reads.
#
# Writes its section of docs/benchmarks.md (below the "other benchmarks" marker, between the
# control.sh begin/end markers, so scripts/bench/collect.sh keeps it) and prints it on stdout;
# progress on stderr, raw hey output in target/bench/control-<UTC time>/. Everything binds
# 127.0.0.1; the server runs with a throwaway HOME (it never sees ~/.sky); the server, the
# PostgreSQL database it created and its temp dir are removed on exit, whatever happens.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
DOC=$REPO/docs/benchmarks.md
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
PG_ADMIN_DB=postgres # the database psql connects to for CREATE / DROP DATABASE

DATABASES=sqlite,postgres
RUNS=3
DURATION=10s
DB_CONNECTIONS=""
BUILD=1
WRITE=1
NOTES=""
NODES=10000        # seeded nodes
SEED_CONCURRENCY=50
WORKERS=20         # hey -c
QPS_PER_WORKER=50  # hey -q: 20 × 50 = 1,000 requests/s
BURST=100          # concurrent launches
TARGET_MS=10       # p99 target
AGENTS=2000        # simulated agents
HB_DURATION=60s    # steady heartbeat run
HB_INTERVAL=30     # seconds between one agent's heartbeats

log() { printf 'control-bench: %s\n' "$*" >&2; }
die() { printf 'control-bench: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
  case $1 in
    --databases) DATABASES=${2:?}; shift 2 ;;
    --runs) RUNS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --db-connections) DB_CONNECTIONS=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-write) WRITE=0; shift ;;
    --notes) NOTES=${2:?}; shift 2 ;;
    --agents) AGENTS=${2:?}; shift 2 ;;
    --heartbeat-duration) HB_DURATION=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) log "unknown argument '$1'"; usage ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "--duration must be whole seconds, like 10s"
[[ -z $DB_CONNECTIONS || $DB_CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "--db-connections must be a positive integer"
[[ $AGENTS =~ ^[1-9][0-9]*$ ]] || die "--agents must be a positive integer"
[[ $HB_DURATION =~ ^[1-9][0-9]*s$ ]] || die "--heartbeat-duration must be whole seconds, like 60s"
[[ -z $NOTES || -f $NOTES ]] || die "--notes: $NOTES not found"
IFS=, read -r -a DB_LIST <<<"$DATABASES"
for d in "${DB_LIST[@]}"; do
  [[ $d == sqlite || $d == postgres ]] || die "--databases: unknown database '$d' (sqlite, postgres)"
done
RATE=$((WORKERS * QPS_PER_WORKER))

# ------------------------------------------------------------ tools ---------
if ! command -v hey >/dev/null; then
  log "installing hey (apt-get)"
  if [[ $(id -u) == 0 ]]; then apt-get install -y hey >&2 || { apt-get update >&2 && apt-get install -y hey >&2; }
  else sudo apt-get install -y hey >&2; fi
fi
for t in hey curl jq sqlite3 psql awk; do
  command -v "$t" >/dev/null || die "$t is required"
done

# ------------------------------------------------------------ cleanup -------
TMP=$(mktemp -d /tmp/skydeck-control-bench.XXXXXX)
SERVER_PID=""
PG_DB=""
CHILD_PID=""

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
drop_pg_db() {
  if [[ -n $PG_DB ]]; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_ADMIN_DB" -qAt \
      -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || log "could not drop database $PG_DB"
    PG_DB=""
  fi
}
cleanup() {
  if [[ -n $CHILD_PID ]]; then kill -TERM "$CHILD_PID" 2>/dev/null || true; wait "$CHILD_PID" 2>/dev/null || true; fi
  stop_server
  drop_pg_db
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
    log "cargo build --release -p skydeck (attempt $attempt)"
    if (cd "$REPO" && waited cargo build --release -p skydeck >&2 &&
      waited cargo build --release -p skydeck-control --example store_bench --example heartbeat_load >&2); then break; fi
    ((attempt < 3)) || die "the release build failed 3 times"
    log "build failed (someone may be mid-edit); retrying in 60 s"
    sleep 60
  done
fi
[[ -x $REPO/target/release/skydeck ]] || die "target/release/skydeck not found (run without --no-build)"
# A copy, so a rebuild by someone else during the run does not swap the binary under us.
BIN=$TMP/skydeck
cp "$REPO/target/release/skydeck" "$BIN"
for ex in store_bench heartbeat_load; do
  [[ -x $REPO/target/release/examples/$ex ]] || die "target/release/examples/$ex not found (run without --no-build)"
  cp "$REPO/target/release/examples/$ex" "$TMP/$ex"
done
BIN_VERSION=$("$BIN" --version 2>/dev/null || echo "skydeck ?")
BIN_BUILT=$(date -u -r "$REPO/target/release/skydeck" '+%Y-%m-%d %H:%M UTC')
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
GIT_DIRTY=""
[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] && GIT_DIRTY=", uncommitted changes in the tree"
HEY_VERSION=$(dpkg-query -W -f '${Version}' hey 2>/dev/null || echo "?")

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$REPO/target/bench/control-$STAMP
mkdir -p "$RAW"
DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------ inputs --------
ADMIN_KEY="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
AUTH="Authorization: Bearer $ADMIN_KEY"
mkdir -p "$TMP/home"
printf 'not the agent; the benchmark never serves it\n' >"$TMP/agent"
# Five launch bodies (providers, GPUs, models, options); node_id is left out, so the server
# generates it.
BODIES=(
  '{"provider":"aws","region":"us-east-1","gpu":"H100:8","model":"meta-llama/Llama-3.1-70B-Instruct","vllm_args":"--tensor-parallel-size 8 --max-model-len 32768"}'
  '{"provider":"gcp","region":"us-central1","gpu":"A100-80GB:2","model":"Qwen/Qwen2.5-32B-Instruct","use_spot":false}'
  '{"provider":"azure","region":"eastus","gpu":"A100","model":"mistralai/Mistral-7B-Instruct-v0.3","disk_size":512}'
  '{"provider":"lambda","region":"us-east-1","gpu":"A10","model":"meta-llama/Llama-3.1-8B-Instruct"}'
  '{"provider":"kubernetes","region":"gke_proj_us-central1_gpu","gpu":"L4","model":"google/gemma-2-9b-it"}'
)
for i in "${!BODIES[@]}"; do printf '%s' "${BODIES[$i]}" >"$TMP/body$i.json"; done

# ------------------------------------------------------------ helpers -------
# Starts the server on DB URL $1; sets SERVER_PID and BASE.
start_server() {
  local url=$1 name=$2 conn=()
  [[ -n $DB_CONNECTIONS ]] && conn=(--db-connections "$DB_CONNECTIONS")
  : >"$RAW/$name-server.log"
  env -u SKYPILOT_API_SERVER_ENDPOINT -u SKYPILOT_SERVICE_ACCOUNT_TOKEN \
    HOME="$TMP/home" SKYDECK_ADMIN_API_KEY="$ADMIN_KEY" \
    "$BIN" control --listen 127.0.0.1:0 --database-url "$url" --no-reconciler \
      --endpoint http://127.0.0.1:9 --agent-binary "$TMP/agent" "${conn[@]}" \
      2>>"$RAW/$name-server.log" >/dev/null &
  SERVER_PID=$!
  BASE=""
  for _ in $(seq 300); do
    BASE=$(sed -n 's/.*skydeck control listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$RAW/$name-server.log" | head -1)
    [[ -n $BASE ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$RAW/$name-server.log" >&2; die "the server exited"; }
    sleep 0.1
  done
  [[ -n $BASE ]] || die "the server did not start listening in 30 s"
  curl -fsS "$BASE/readyz" >/dev/null || die "$BASE/readyz failed"
}

# CPU ticks (user + system) of the server process; busy and total ticks of the machine.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat; }

# Reads hey's summary; prints: requests rps p50 p90 p99 max(ms) non2xx.
hey_stats() {
  awk '
    function ms(s) { return sprintf("%.1f", s * 1000) }
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

# Runs hey into file $1 with the remaining arguments.
hey_to() { local out=$1; shift; waited hey "$@" >"$out" 2>&1 || { cat "$out" >&2; die "hey failed"; }; }

# Rows in the table, counted by the database.
db_count() {
  case $1 in
    sqlite) sqlite3 "$TMP/bench.db" 'SELECT count(*) FROM nodes' ;;
    postgres) psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qAt -c 'SELECT count(*) FROM nodes' ;;
  esac
}

# Walks GET /admin/nodes (pages of 1,000) and writes every cluster name to file $1.
api_names() {
  local out=$1 cursor="" page
  : >"$out"
  while :; do
    page=$(curl -fsS -H "$AUTH" "$BASE/admin/nodes?limit=1000${cursor:+&cursor=$cursor}")
    jq -r '.nodes[].cluster_name' <<<"$page" >>"$out"
    cursor=$(jq -r '.next_cursor // empty' <<<"$page")
    [[ -n $cursor ]] || break
  done
}

# The columns the store selects for a page (crates/skydeck-control/src/store/nodes.rs; migration
# 2 renamed vllm_args to engine_args and added engine, image and the latest heartbeat).
COLUMNS="id, cluster_name, provider, region, gpu_type, gpu_count, model_name, use_spot, disk_size, \
engine_args, status, status_reason, created_at, updated_at, launch_intent_at, launch_request_id, \
launching_at, initializing_at, active_at, unhealthy_at, draining_at, terminated_at, failed_at, \
drain_force, down_intent_at, down_request_id, hourly_price, last_heartbeat_at, attempts, next_attempt_at, \
engine, image, heartbeat"

# Milliseconds per execution of SQL $2 on database $1, run 500 times by the database's CLI
# (output discarded; psql's include a loopback round trip each, like the server's).
sql_ms() {
  local db=$1 sql=$2 n=500 t0 t1
  for _ in $(seq "$n"); do printf '%s;\n' "$sql"; done >"$TMP/q.sql"
  t0=$(date +%s%N)
  case $db in
    sqlite) sqlite3 "$TMP/bench.db" <"$TMP/q.sql" >/dev/null ;;
    postgres) psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qAt -f "$TMP/q.sql" >/dev/null ;;
  esac
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / 1e6 / n }'
}

verdict() { awk -v p="$1" -v t="$TARGET_MS" 'BEGIN { print (p < t ? "met" : "**not met**") }'; }

# ------------------------------------------------------------ one database --
# Appends the Markdown of database $1 to $TMP/report.md and verdict lines to $TMP/verdicts.md.
bench_db() {
  local db=$1 label url
  case $db in
    sqlite)
      label=SQLite
      url=$TMP/bench.db ;;
    postgres)
      label=PostgreSQL
      PG_DB=skydeck_bench_$$_$RANDOM
      psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_ADMIN_DB" -qAt -c "CREATE DATABASE $PG_DB" >/dev/null
      url=postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB ;;
  esac
  local db_version
  case $db in
    sqlite) db_version="SQLite (file, WAL; server's bundled library)" ;;
    postgres) db_version=$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qAt -c 'SHOW server_version' | awk '{print "PostgreSQL " $1}') ;;
  esac
  log "$label: starting the server"
  start_server "$url" "$db"

  # Seed.
  log "$label: seeding $NODES nodes through POST /admin/nodes/launch ($SEED_CONCURRENCY at a time)"
  local per=$((NODES / ${#BODIES[@]})) t0 t1 seed_bad=0 s
  t0=$(date +%s.%N)
  for i in "${!BODIES[@]}"; do
    hey_to "$RAW/$db-seed$i.txt" -n "$per" -c "$SEED_CONCURRENCY" -m POST -T application/json \
      -H "$AUTH" -D "$TMP/body$i.json" "$BASE/admin/nodes/launch"
    read -r _ _ _ _ _ _ s < <(hey_stats "$RAW/$db-seed$i.txt")
    seed_bad=$((seed_bad + s))
  done
  t1=$(date +%s.%N)
  local seed_secs seeded
  seed_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  seeded=$(db_count "$db")
  ((seeded == NODES)) || log "$label: WARNING: $seeded rows after seeding, expected $NODES ($seed_bad non-2xx)"
  api_names "$TMP/names.txt"
  local api_seeded target
  api_seeded=$(wc -l <"$TMP/names.txt")
  target=$(sed -n "$(((api_seeded + 1) / 2))p" "$TMP/names.txt") # a node in the middle of the list

  # Reads at the fixed rate, interleaved, after a warm-up of each endpoint.
  local -a names=(healthz list status)
  declare -A path=(
    [healthz]="/healthz"
    [list]="/admin/nodes?limit=100"
    [status]="/admin/nodes/$target/status"
  )
  declare -A shown=(
    [healthz]='`GET /healthz` (baseline: no auth, no DB)'
    [list]='`GET /admin/nodes?limit=100`'
    [status]='`GET /admin/nodes/{name}/status`'
  )
  for e in "${names[@]}"; do
    log "$label: warm-up $e"
    hey_to "$RAW/$db-$e-warmup.txt" -z 2s -c "$WORKERS" -q "$QPS_PER_WORKER" -H "$AUTH" "$BASE${path[$e]}"
  done
  local rows="" st0 st1 m0 m1 sc mc
  for run in $(seq "$RUNS"); do
    for e in "${names[@]}"; do
      log "$label: run $run/$RUNS $e ($RATE/s for $DURATION)"
      st0=$(server_ticks); m0=$(machine_ticks)
      hey_to "$RAW/$db-$e-run$run.txt" -z "$DURATION" -c "$WORKERS" -q "$QPS_PER_WORKER" -H "$AUTH" "$BASE${path[$e]}"
      st1=$(server_ticks); m1=$(machine_ticks)
      mc=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f%%", 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
      read -r n rps p50 p90 p99 max bad < <(hey_stats "$RAW/$db-$e-run$run.txt")
      sc=$(awk -v a="$st0" -v b="$st1" -v d="${DURATION%s}" -v hz="$CLK_TCK" -v n="$n" \
        'BEGIN { printf "%.0f%% (%.2f ms/request)", 100 * (b - a) / hz / d, 1000 * (b - a) / hz / n }')
      rows+="| ${shown[$e]} | $run | $n | $rps | $p50 | $p90 | $p99 | $max | $bad | $sc | $mc | $(verdict "$p99") |"$'\n'
      if [[ $e != healthz ]]; then
        printf '* %s — %s, %s, run %s: p99 %s ms at %s requests/s achieved (%s non-2xx of %s)\n' \
          "$(verdict "$p99")" "$label" "${shown[$e]}" "$run" "$p99" "$rps" "$bad" "$n" >>"$TMP/verdicts.md"
      fi
    done
  done

  # Where the time goes: one request at a time, then the SQL alone.
  local srows="" u_n u_p50 u_p99 u_max u_bad
  for e in "${names[@]}"; do
    log "$label: one at a time: $e"
    st0=$(server_ticks)
    hey_to "$RAW/$db-$e-serial.txt" -n 500 -c 1 -H "$AUTH" "$BASE${path[$e]}"
    st1=$(server_ticks)
    read -r u_n _ u_p50 _ u_p99 u_max u_bad < <(hey_stats "$RAW/$db-$e-serial.txt")
    sc=$(awk -v a="$st0" -v b="$st1" -v hz="$CLK_TCK" -v n="$u_n" 'BEGIN { printf "%.2f", 1000 * (b - a) / hz / n }')
    srows+="| ${shown[$e]} | $u_n | $u_p50 | $u_p99 | $u_max | $u_bad | $sc |"$'\n'
  done
  log "$label: the SQL alone"
  local q_list q_status
  q_list=$(sql_ms "$db" "SELECT $COLUMNS FROM nodes WHERE 1 = 1 ORDER BY created_at, id LIMIT 100")
  q_status=$(sql_ms "$db" "SELECT $COLUMNS FROM nodes WHERE cluster_name = '$target'")

  # 100 launches at once.
  log "$label: $BURST concurrent launches"
  local before after api_after burst_ok
  before=$(db_count "$db")
  hey_to "$RAW/$db-burst.txt" -n "$BURST" -c "$BURST" -m POST -T application/json \
    -H "$AUTH" -D "$TMP/body0.json" "$BASE/admin/nodes/launch"
  read -r bn _ bp50 _ bp99 bmax bbad < <(hey_stats "$RAW/$db-burst.txt")
  after=$(db_count "$db")
  api_names "$TMP/names-after.txt"
  api_after=$(wc -l <"$TMP/names-after.txt")
  if ((bn == BURST && bbad == 0 && after == before + BURST && api_after == before + BURST)); then
    burst_ok=met
  else
    burst_ok="**not met**"
  fi
  printf '* %s — %s, %s concurrent launches: %s answered, %s non-2xx; rows %s → %s (database), %s (list API)\n' \
    "$burst_ok" "$label" "$BURST" "$bn" "$bbad" "$before" "$after" "$api_after" >>"$TMP/verdicts.md"

  # Heartbeats: simulated agents with real tokens, steady then all at once.
  log "$label: seeding $AGENTS agents (active nodes with known tokens)"
  waited "$TMP/store_bench" seed --database-url "$url" --agents "$AGENTS" --tokens "$TMP/tokens.txt" \
    >"$RAW/$db-agents-seed.txt" 2>&1 || { cat "$RAW/$db-agents-seed.txt" >&2; die "seeding the agents failed"; }
  local hb_rows="" mode hb_args line
  for mode in steady burst; do
    if [[ $mode == steady ]]; then
      hb_args=(--mode steady --interval "$HB_INTERVAL" --duration "${HB_DURATION%s}")
      log "$label: $AGENTS agents heartbeating every ${HB_INTERVAL} s for $HB_DURATION"
    else
      hb_args=(--mode burst --concurrency 200)
      log "$label: $AGENTS heartbeats at once (200 in flight)"
    fi
    st0=$(server_ticks)
    waited "$TMP/heartbeat_load" --base "$BASE" --tokens "$TMP/tokens.txt" "${hb_args[@]}" \
      >"$RAW/$db-heartbeats-$mode.txt" 2>"$RAW/$db-heartbeats-$mode.err" ||
      { cat "$RAW/$db-heartbeats-$mode.err" >&2; die "the heartbeat load failed"; }
    st1=$(server_ticks)
    # requests ok non2xx errors p50_ms p90_ms p99_ms max_ms rps
    read -r h_n h_ok h_bad h_err h_p50 h_p90 h_p99 h_max h_rps <"$RAW/$db-heartbeats-$mode.txt"
    sc=$(awk -v a="$st0" -v b="$st1" -v hz="$CLK_TCK" -v n="$h_n" 'BEGIN { printf "%.0f", 1e6 * (b - a) / hz / n }')
    hb_rows+="| $mode | $h_n | $h_rps | $h_ok | $((h_bad + h_err)) | $h_p50 | $h_p90 | $h_p99 | $h_max | $sc | $(verdict "$h_p99") |"$'\n'
    printf '* %s — %s, heartbeats (%s): p99 %s ms, %s of %s accepted; server CPU %s ms per 1,000 heartbeats\n' \
      "$(verdict "$h_p99")" "$label" "$mode" "$h_p99" "$h_ok" "$h_n" "$sc" >>"$TMP/verdicts.md"
  done

  local log_errors
  log_errors=$(grep -cw ERROR "$RAW/$db-server.log" || true)
  stop_server
  drop_pg_db

  {
    printf '## %s\n\n' "$label"
    printf '%s; server `--db-connections %s`. Seeding: %s launches in %s s, %s non-2xx; rows after seeding: %s (database), %s (list API). Status target: `%s` (the middle of the list).\n\n' \
      "$db_version" "${DB_CONNECTIONS:-16}" "$NODES" "$seed_secs" "$seed_bad" "$seeded" "$api_seeded" "$target"
    printf '| endpoint | run | requests | requests/s achieved | p50 ms | p90 ms | p99 ms | max ms | non-2xx | server CPU (of one core) | machine CPU busy | p99 < %s ms |\n' "$TARGET_MS"
    printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
    printf '%s' "$rows"
    printf '\n%s concurrent launches (`hey -n %s -c %s`, POST /admin/nodes/launch): %s answered, %s non-2xx, p50 %s ms, p99 %s ms, max %s ms; rows %s → %s in the database, %s through the list API: **%s**.\n\n' \
      "$BURST" "$BURST" "$BURST" "$bn" "$bbad" "$bp50" "$bp99" "$bmax" "$before" "$after" "$api_after" "${burst_ok//\*/}"
    printf 'Where the time goes — each endpoint one request at a time (`hey -n 500 -c 1`, no rate limit, same server and data, after the runs above):\n\n'
    printf '| endpoint | requests | p50 ms | p99 ms | max ms | non-2xx | server CPU ms/request |\n'
    printf '|---|---|---|---|---|---|---|\n'
    printf '%s' "$srows"
    printf '\nThe SQL alone, through the database CLI (500 runs, output discarded): list page (`ORDER BY created_at, id LIMIT 100`) %s ms, one node by `cluster_name` %s ms per query.\n\n' "$q_list" "$q_status"
    printf 'Heartbeats — %s simulated agents (`examples/heartbeat_load.rs`, the contract'"'"'s `Heartbeat` body with engine numbers and one GPU, each agent its own token and node): `steady`, each agent every %s s for %s, first beats spread over the first interval; `burst`, all %s at once, 200 in flight (a control plane back after an outage). Server CPU is the server process'"'"'s user+system time over the run:\n\n' "$AGENTS" "$HB_INTERVAL" "$HB_DURATION" "$AGENTS"
    printf '| mode | heartbeats | requests/s | accepted | failed | p50 ms | p90 ms | p99 ms | max ms | server CPU ms per 1,000 | p99 < %s ms |\n' "$TARGET_MS"
    printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
    printf '%s' "$hb_rows"
    printf '\n'
    printf 'Server log: %s ERROR lines.\n\n' "$log_errors"
  } >>"$TMP/report.md"
}

: >"$TMP/report.md"
: >"$TMP/verdicts.md"
for d in "${DB_LIST[@]}"; do bench_db "$d"; done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
DATE_END=$(date -u '+%H:%M UTC')

# ------------------------------------------------------------ report --------
BEGIN_MARK='<!-- control.sh: begin (scripts/bench/control.sh rewrites this section) -->'
END_MARK='<!-- control.sh: end -->'
SECTION=$TMP/section.md
{
  echo "$BEGIN_MARK"
  echo "# Control plane API: 10,000 nodes, $RATE requests/s, SQLite and PostgreSQL"
  echo
  echo "\`scripts/bench/control.sh\` starts \`skydeck control --no-reconciler\` (the API only; nodes stay \`requested\`) on a fresh database, seeds $NODES nodes through \`POST /admin/nodes/launch\` (five bodies: aws/gcp/azure/lambda/kubernetes, various GPUs and models; $SEED_CONCURRENCY at a time, ids generated by the server), and drives each endpoint with [hey](https://github.com/rakyll/hey) over loopback at a fixed rate: \`hey -z $DURATION -c $WORKERS -q $QPS_PER_WORKER\` ($WORKERS keep-alive workers × $QPS_PER_WORKER requests/s = $RATE requests/s), after an unreported 2 s warm-up of each endpoint. Runs are interleaved (healthz, list, status, healthz, …). Latencies are hey's (per request, client side; 0.1 ms resolution). hey's rate limit is per worker and closed-loop: a worker waits for its answer before its next tick, so when answers are slow the achieved rate falls below $RATE/s — the \"requests/s achieved\" column shows whether the rate was held. The load generator runs on the same $NPROC CPUs as the server (and PostgreSQL); \"server CPU\" is the server process's user+system time over the run (and per request), \"machine CPU busy\" the whole machine's (everything, including hey, PostgreSQL and other tenants). \`GET /healthz\` (no auth, no database) is the baseline: what the HTTP stack, hey and the machine cost without the database."
  echo
  echo "* date: $DATE_START (to $DATE_END)"
  echo "* machine: $NPROC CPUs ($CPU_MODEL), $MEM RAM, shared; load average at start $LOAD_START, at end $LOAD_END"
  echo "* skydeck: $BIN_VERSION, release build of $BIN_BUILT (git $GIT_REV$GIT_DIRTY)"
  echo "* load generator: hey $HEY_VERSION; $RUNS run(s) per endpoint of $DURATION each"
  echo "* raw output: \`target/bench/control-$STAMP/\`"
  echo
  echo "Rerun:"
  echo
  echo '```sh'
  echo 'bash scripts/bench/control.sh'
  echo '```'
  echo
  cat "$TMP/report.md"
  echo "## Targets (p99 < $TARGET_MS ms at $RATE requests/s with $NODES nodes; $BURST concurrent launches all accepted and recorded)"
  echo
  cat "$TMP/verdicts.md"
  echo
  if [[ -n $NOTES ]]; then cat "$NOTES"; echo; fi
  echo "$END_MARK"
} >"$SECTION"

cat "$SECTION"
if ((WRITE)); then
  # shellcheck source=scripts/bench/section.sh
  source "$SCRIPT_DIR/section.sh"
  write_section "$DOC" "$SECTION" "$BEGIN_MARK" "$END_MARK"
  log "wrote $DOC"
fi
