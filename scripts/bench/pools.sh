#!/usr/bin/env bash
# Benchmark: the pool controller's decision loop with 100 pools and 2,000 nodes, on SQLite and
# on PostgreSQL, and the time from a load step to the scale-up decision.
#
#   bash scripts/bench/pools.sh [--databases sqlite,postgres] [--pools N] [--nodes N]
#                               [--ticks N] [--steps N] [--no-write] [--notes FILE]
#
# Runs crates/skydeck-control/examples/pool_bench.rs (release build) once per database: a fresh
# database, the pools created through the pools room's own `create`, their nodes launched by
# the controller and walked to active with heartbeat reports, then --ticks controller ticks
# timed one after the other, steady (no load change: nothing stored) and moving (every node's
# queue changes before each tick: every pool's state stored each tick); and, on a simulated
# clock, --steps load steps at random phases of the 2 s tick and 30 s heartbeat cycles, each
# timed to the scale-up decision. Writes its section of docs/benchmarks.md (between the
# pools.sh markers) and prints it. Everything is local: SQLite in a temp dir, PostgreSQL on
# 127.0.0.1:5432 in a database of its own, dropped on exit.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
DOC=$REPO/docs/benchmarks.md
DATABASES=sqlite,postgres
POOLS=100
NODES=2000
TICKS=30
STEPS=20
WRITE=1
NOTES=""
while (($#)); do
  case $1 in
    --databases) DATABASES=$2; shift 2 ;;
    --pools) POOLS=$2; shift 2 ;;
    --nodes) NODES=$2; shift 2 ;;
    --ticks) TICKS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --no-write) WRITE=0; shift ;;
    --notes) NOTES=$2; shift 2 ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

TMP=$(mktemp -d)
PG_DB=skydeck_pool_bench_$$
cleanup() {
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "==> building the benchmark" >&2
(cd "$REPO" && cargo build -q --release --locked -p skydeck-control --example pool_bench)
BIN=$REPO/target/release/examples/pool_bench

DATE_START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc)
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD)
GIT_DIRTY=$(git -C "$REPO" diff --quiet && echo "" || echo ", uncommitted changes")

: >"$TMP/report.md"
IFS=, read -r -a DB_LIST <<<"$DATABASES"
for d in "${DB_LIST[@]}"; do
  case $d in
    sqlite) url="sqlite://$TMP/pools.db" ;;
    postgres)
      psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $PG_DB" >/dev/null
      url="postgres://postgres@127.0.0.1:5432/$PG_DB" ;;
    *) echo "error: unknown database $d" >&2; exit 2 ;;
  esac
  echo "==> $d" >&2
  {
    echo "## $d"
    echo
    "$BIN" --database-url "$url" --step-database-url "sqlite://$TMP/step-$d.db" \
      --pools "$POOLS" --nodes "$NODES" --ticks "$TICKS" --steps "$STEPS"
    echo
  } >>"$TMP/report.md"
done

BEGIN_MARK='<!-- pools.sh: begin (scripts/bench/pools.sh rewrites this section) -->'
END_MARK='<!-- pools.sh: end -->'
SECTION=$TMP/section.md
{
  echo "$BEGIN_MARK"
  echo "# Pool controller: $POOLS pools, $NODES nodes"
  echo
  echo "\`scripts/bench/pools.sh\` runs \`crates/skydeck-control/examples/pool_bench.rs\`: $POOLS pools of $((NODES / POOLS)) active nodes each (every node with a heartbeat report), then $TICKS controller ticks timed one after the other — **steady** (no load change, so no pool's state is stored) and **moving** (every node's waiting count changes before each tick, so every pool's state is written each tick; the heartbeats themselves are not timed). A tick reads every pool and every pool node with its report, decides each pool (a pure function) and stores what changed. CPU is this process's (for SQLite the database engine runs in-process; for PostgreSQL only the client side). The load-step rows run one pool on a simulated clock (a 2 s tick, the decision interval; agents heartbeating every 30 s, the default) with the load stepping from under the target to 3× it at a random phase of both cycles: the time from the step to the scale-up decision minus the 60 s up-delay. Target (the issue): within one decision interval after the up-delay — reached whenever the step is reported within the tick it happens in; the agents' heartbeat interval adds up to one heartbeat before the controller can see a step at all."
  echo
  echo "* date: $DATE_START; machine: $NPROC CPUs, shared; load average at start $LOAD_START"
  echo "* skydeck: git $GIT_REV$GIT_DIRTY"
  echo
  echo "Rerun:"
  echo
  echo '```sh'
  echo 'bash scripts/bench/pools.sh'
  echo '```'
  echo
  cat "$TMP/report.md"
  if [[ -n $NOTES ]]; then cat "$NOTES"; echo; fi
  echo "$END_MARK"
} >"$SECTION"

cat "$SECTION"
if ((WRITE)); then
  # shellcheck source=scripts/bench/section.sh
  source "$SCRIPT_DIR/section.sh"
  write_section "$DOC" "$SECTION" "$BEGIN_MARK" "$END_MARK"
  echo "wrote $DOC" >&2
fi
