#!/usr/bin/env bash
# PostgreSQL for skydeck's tests and benchmarks, on 127.0.0.1 only.
#
#   postgres.sh url    print the URL of a server the tests may create databases on:
#                      the machine's own on 127.0.0.1:5432 when it answers (trust auth), else a
#                      throwaway cluster under $PEERS/postgres on port 15432 (initdb + pg_ctl,
#                      started once and reused); the URL is the last stdout line
#   postgres.sh stop   stop the throwaway cluster, if this script started one
#
# PEERS=${SKYDECK_PEERS_DIR:-<repo>/target/peers}. Tests create one database per test and drop
# it afterwards; nothing else on the server is touched.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}
DIR=$PEERS/postgres
PORT=15432

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { printf 'postgres.sh: error: %s\n' "$*" >&2; exit 1; }

pg_bin() {
  local name=$1
  command -v "$name" 2>/dev/null && return 0
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/$name ]] && { echo "$d/$name"; return 0; }
  done
  return 1
}

as_pg() {
  # PostgreSQL refuses to run as root.
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

answers() { # host port user
  local isready
  isready=$(pg_bin pg_isready) || return 1
  "$isready" -q -h "$1" -p "$2" -U "$3" -d postgres -t 3
}

cmd_url() {
  if answers 127.0.0.1 5432 postgres; then
    echo "postgres://postgres@127.0.0.1:5432/postgres"
    return 0
  fi
  if answers 127.0.0.1 "$PORT" postgres; then
    echo "postgres://postgres@127.0.0.1:$PORT/postgres"
    return 0
  fi
  local initdb pg_ctl
  initdb=$(pg_bin initdb) || die "no PostgreSQL on 127.0.0.1:5432 and no initdb to start one (apt-get install postgresql)"
  pg_ctl=$(pg_bin pg_ctl) || die "no pg_ctl to start PostgreSQL"
  mkdir -p "$DIR"
  [[ $(id -u) == 0 ]] && chown postgres: "$DIR"
  if [[ ! -f $DIR/data/PG_VERSION ]]; then
    log "initdb $DIR/data"
    as_pg "$initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
      { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  fi
  log "starting a throwaway PostgreSQL on 127.0.0.1:$PORT"
  as_pg "$pg_ctl" -D "$DIR/data" -l "$DIR/log" \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c max_connections=300" -w start >&2 ||
    { tail -n 30 "$DIR/log" >&2; die "PostgreSQL did not start"; }
  touch "$DIR/started-by-script"
  echo "postgres://postgres@127.0.0.1:$PORT/postgres"
}

cmd_stop() {
  [[ -f $DIR/started-by-script ]] || return 0
  local pg_ctl
  pg_ctl=$(pg_bin pg_ctl) || return 0
  as_pg "$pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
  rm -f "$DIR/started-by-script"
}

case ${1:-} in
  url) cmd_url ;;
  stop) cmd_stop ;;
  *) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
