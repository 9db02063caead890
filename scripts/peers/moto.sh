#!/usr/bin/env bash
# moto's AWS server on 127.0.0.1, the Secrets Manager peer of skydeck-secrets' tests. It comes
# from the tools venv (`scripts/peers/pytools.sh install`, run first if it is missing).
#
#   moto.sh start    (re)start it on a free port; waits until it answers; writes
#                    $PEERS/moto/url and $PEERS/moto/pid; prints the URL as the last stdout line
#   moto.sh stop     stop it (ok if not running)
#   moto.sh status   exit 0 when it answers at $PEERS/moto/url
#
# The tests read the URL from SKYDECK_TEST_MOTO_URL:
#   export SKYDECK_TEST_MOTO_URL=$(scripts/peers/moto.sh start)
# moto keeps everything in memory and accepts any credentials; nothing here leaves 127.0.0.1.
# PEERS=${SKYDECK_PEERS_DIR:-<repo>/target/peers}; the server log is $PEERS/moto/server.log.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}
VENV=$PEERS/tools-venv
DIR=$PEERS/moto
READY_TIMEOUT=${SKYDECK_PEER_READY_TIMEOUT:-60}

log() { printf 'moto.sh: %s\n' "$*" >&2; }
die() { printf 'moto.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Answers at all (any HTTP status): moto is up. curl ignores proxies for this one address.
answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 "$1/moto-api/" \
    2>/dev/null) || true
  [[ -n $code && $code != 000 ]]
}

# The pid in $DIR/pid, if that process is still our moto_server (pids get reused).
our_pid() {
  local pid
  pid=$(cat "$DIR/pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$VENV/bin/moto_server" || return 1
  echo "$pid"
}

cmd_stop() {
  local pid i
  if pid=$(our_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      [[ -d /proc/$pid ]] || break
      sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped (pid $pid)"
  else
    log "not running"
  fi
  rm -f "$DIR/pid" "$DIR/url"
}

cmd_status() {
  local url
  url=$(cat "$DIR/url" 2>/dev/null) || { log "not running (no $DIR/url)"; return 1; }
  if our_pid >/dev/null && answers "$url"; then
    log "answering at $url"
    return 0
  fi
  log "not answering at $url"
  return 1
}

cmd_start() {
  if [[ ! -x $VENV/bin/moto_server ]]; then
    log "no $VENV/bin/moto_server; installing the tools venv"
    "$SCRIPT_DIR/pytools.sh" install
  fi
  [[ -x $VENV/bin/moto_server ]] || die "$VENV/bin/moto_server missing after pytools.sh install"
  command -v curl >/dev/null || die "curl not found"
  mkdir -p "$DIR"
  cmd_stop 2>/dev/null

  local port
  port=$("$VENV/bin/python" -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  local url=http://127.0.0.1:$port
  # setsid: the server outlives this script (the test command stops it with `moto.sh stop`).
  # Dead proxies: should moto ever try to leave the machine, it fails at once on 127.0.0.1.
  setsid env \
    HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
    http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
    NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" \
    </dev/null >"$DIR/server.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$DIR/pid"

  local deadline=$((SECONDS + READY_TIMEOUT))
  until answers "$url"; do
    if [[ ! -d /proc/$pid ]]; then
      tail -n 20 "$DIR/server.log" >&2 || true
      rm -f "$DIR/pid"
      die "moto_server exited before answering on $url (log: $DIR/server.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$DIR/server.log" >&2 || true
      cmd_stop
      die "moto_server did not answer on $url within ${READY_TIMEOUT}s"
    fi
    sleep 0.2
  done
  echo "$url" >"$DIR/url"
  log "answering at $url (pid $pid); stop it with: $0 stop"
  echo "$url"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) usage ;;
esac
