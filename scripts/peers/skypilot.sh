#!/usr/bin/env bash
# A REAL SkyPilot API server (skypilot[server]==0.14.1) with a seeded demo
# fleet, for skydeck's tests, benchmark and demo. Everything binds 127.0.0.1;
# nothing but `install` (pip) touches the network.
#
#   skypilot.sh install
#       venv at $PEERS/skypilot-venv (idempotent; stamp file).
#   skypilot.sh up NAME --clusters N --jobs M [--port P] [--seed S]
#                  [--clouds aws,gcp,lambda,kubernetes] [--extra-config FILE]
#       (re)starts server NAME with HOME=$PEERS/NAME/home and a fresh fleet;
#       writes $PEERS/NAME/endpoint and $PEERS/NAME/fleet.json (the ground
#       truth for expected_metrics.py); prints the URL as the last stdout line.
#       --clouds: the clouds the seeded fleet uses (default: all four).
#       --extra-config: YAML appended to the server's ~/.sky/config.yaml (new
#       top-level keys only, e.g. kubernetes: pricing: ...); the seeder prices
#       Kubernetes from it, as the server does.
#   skypilot.sh down NAME      stop it (and its keeper/controllers); ok if not running
#   skypilot.sh status NAME    exit 0 when /api/health says healthy
#
# PEERS=${SKYDECK_PEERS_DIR:-<repo>/target/peers}. Layout of $PEERS/NAME/:
#   home/        the server's HOME (its ~/.sky: DBs, config, catalogs, logs)
#   tmp/         its TMPDIR
#   bin/         symlinks to the few basic tools it may run (its PATH, with the
#                venv's bin; no cloud CLIs: no aws/gcloud/kubectl/az...)
#   port, endpoint, fleet.json, keeper.pid, seed.log, start.log
# The server log is home/.sky/api_server/server.log.
set -euo pipefail

SKYPILOT_VERSION=0.14.1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}
VENV=$PEERS/skypilot-venv
STAMP=$VENV/.skydeck-installed
READY_TIMEOUT=${SKYDECK_PEER_READY_TIMEOUT:-300}
TIMEOUT_BIN=$(command -v timeout) || { echo "skypilot.sh: error: coreutils 'timeout' not found" >&2; exit 1; }

log() { printf 'skypilot.sh: %s\n' "$*" >&2; }
die() { printf 'skypilot.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

check_name() {
  [[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$ ]] ||
    die "bad server NAME '${1:-}' (letters, digits, - and _ only)"
  [[ $1 != skypilot-venv ]] || die "NAME 'skypilot-venv' is reserved"
}

# ---------------------------------------------------------------- install --
installed() {
  [[ -f $STAMP && $(cat "$STAMP") == "skypilot[server]==$SKYPILOT_VERSION" ]]
}

cmd_install() {
  if installed; then
    log "venv already installed: $VENV (skypilot[server]==$SKYPILOT_VERSION)"
    return 0
  fi
  # One installer at a time (tests may call `up` in parallel).
  mkdir -p "$PEERS"
  exec 9>"$PEERS/.install.lock"
  command -v flock >/dev/null && { flock -w 1800 9 || die "timed out waiting for $PEERS/.install.lock"; }
  if installed; then
    log "venv already installed: $VENV (skypilot[server]==$SKYPILOT_VERSION)"
    return 0
  fi
  local py=${SKYDECK_PYTHON:-python3}
  command -v "$py" >/dev/null || die "no $py on PATH (set SKYDECK_PYTHON)"
  "$py" -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] < (3, 14) else 1)' ||
    die "$py is $("$py" -V 2>&1); skypilot $SKYPILOT_VERSION needs Python 3.9-3.13"
  mkdir -p "$PEERS"
  log "creating venv $VENV with $("$py" -V 2>&1)"
  rm -rf "$VENV"
  "$py" -m venv "$VENV" || die "python -m venv failed"
  log "pip install skypilot[server]==$SKYPILOT_VERSION (about a minute)"
  "$TIMEOUT_BIN" 1800 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "skypilot[server]==$SKYPILOT_VERSION" >&2 ||
    die "pip install skypilot[server]==$SKYPILOT_VERSION failed (see above)"
  # No cloud SDK may be in this venv: with one, the server's status-refresh
  # daemon could start changing (terminating) the fake clusters.
  # Checks run with a scratch HOME/TMPDIR: importing sky touches both.
  local scratch=$PEERS/.install-check bad
  rm -rf "$scratch"; mkdir -p "$scratch/tmp"
  bad=$(env HOME="$scratch" TMPDIR="$scratch/tmp" "$VENV/bin/python" - <<'EOF'
import importlib.util
mods = ['boto3', 'botocore', 'google.cloud', 'googleapiclient',
        'kubernetes', 'azure', 'oci', 'ibm_cloud_sdk_core', 'lambda_cloud']
found = []
for m in mods:
    try:
        if importlib.util.find_spec(m) is not None:
            found.append(m)
    except ModuleNotFoundError:
        pass
print(' '.join(found))
EOF
)
  [[ -z $bad ]] || die "cloud SDK(s) found in $VENV: $bad (must not be installed)"
  env HOME="$scratch" TMPDIR="$scratch/tmp" SKYPILOT_DISABLE_USAGE_COLLECTION=1 \
    "$VENV/bin/python" -c 'import sky; assert sky.__version__ == "'$SKYPILOT_VERSION'", sky.__version__' ||
    die "installed skypilot is not $SKYPILOT_VERSION"
  rm -rf "$scratch"
  echo "skypilot[server]==$SKYPILOT_VERSION" >"$STAMP"
  log "installed: $VENV"
}

ensure_installed() {
  installed || cmd_install
}

# ------------------------------------------------------------ environment --
# The server's environment: its own HOME/TMPDIR, a PATH of only the venv and a
# directory of basic tools, usage telemetry off, and a dead proxy so that any
# outbound HTTP(S) attempt fails at once on 127.0.0.1 instead of leaving the
# machine (loopback is exempt through NO_PROXY).
make_tool_dir() {
  local bin=$1 t p
  mkdir -p "$bin"
  for t in bash sh env cat ls mkdir rmdir rm cp mv ln chmod touch sleep ps kill \
      grep sed awk head tail tr cut sort uniq wc date hostname id whoami uname \
      dirname basename readlink realpath tee true false echo printf xargs find \
      tar gzip flock nohup setsid timeout which stat mktemp getconf nproc df du \
      expr test sync; do
    p=$(PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin command -v "$t" 2>/dev/null) || continue
    [[ $p == /* ]] || continue   # shell builtins
    ln -sf "$p" "$bin/$t"
  done
}

# run_env NAME PORT cmd...  (runs cmd in the server's environment)
run_env() {
  local name=$1 port=$2; shift 2
  local d=$PEERS/$name
  env -i \
    HOME="$d/home" USER="${USER:-root}" LOGNAME="${USER:-root}" \
    PATH="$VENV/bin:$d/bin" SHELL=/bin/bash LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=dumb \
    TMPDIR="$d/tmp" TMP="$d/tmp" TEMP="$d/tmp" \
    XDG_CONFIG_HOME="$d/home/.config" XDG_CACHE_HOME="$d/home/.cache" \
    XDG_DATA_HOME="$d/home/.local/share" XDG_STATE_HOME="$d/home/.local/state" \
    XDG_RUNTIME_DIR="$d/tmp" \
    SKYPILOT_API_SERVER_LOCAL_PORT="$port" \
    SKYPILOT_DISABLE_USAGE_COLLECTION=1 \
    HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
    http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
    ALL_PROXY=http://127.0.0.1:9 all_proxy=http://127.0.0.1:9 \
    NO_PROXY=127.0.0.1,localhost,::1 no_proxy=127.0.0.1,localhost,::1 \
    PYTHONDONTWRITEBYTECODE=1 \
    "$@"
}

free_port() {
  "$VENV/bin/python" -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_in_use() {
  "$VENV/bin/python" -c '
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# pids of processes whose environment has HOME=$1 (the server, its workers,
# controllers, codegen subprocesses, the keeper), except this shell.
home_pids() {
  local py=$VENV/bin/python
  [[ -x $py ]] || py=python3
  "$py" - "$1" "$$" <<'EOF'
import os, sys
want = b'HOME=' + sys.argv[1].encode()
me = {int(sys.argv[2]), os.getpid(), os.getppid()}
for pid in os.listdir('/proc'):
    if not pid.isdigit() or int(pid) in me:
        continue
    try:
        with open(f'/proc/{pid}/environ', 'rb') as f:
            env = f.read().split(b'\0')
    except OSError:
        continue
    if want in env:
        print(pid)
EOF
}

server_log_tail() {
  local name=$1 f=$PEERS/$1/home/.sky/api_server/server.log
  if [[ -f $f ]]; then
    echo "---- last 40 lines of $f ----" >&2
    tail -n 40 "$f" >&2
    echo "----" >&2
  else
    echo "(no server log at $f)" >&2
  fi
}

# ---------------------------------------------------------------- down ----
cmd_down() {
  local name=${1:-}; check_name "$name"
  local d=$PEERS/$name home=$PEERS/$name/home
  [[ -d $d ]] || { log "$name: not running (no $d)"; return 0; }
  local port
  port=$(cat "$d/port" 2>/dev/null || true)
  if [[ -n $port && -x $VENV/bin/sky && -d $home ]]; then
    log "$name: sky api stop (port $port)"
    run_env "$name" "$port" "$TIMEOUT_BIN" 60 "$VENV/bin/sky" api stop >>"$d/stop.log" 2>&1 ||
      log "$name: sky api stop failed or timed out (see $d/stop.log); killing"
  fi
  # Whatever is left of that HOME: keeper, controllers, workers.
  local pids i
  pids=$(home_pids "$home")
  if [[ -f $d/keeper.pid ]]; then
    local kp; kp=$(cat "$d/keeper.pid")
    if [[ -r /proc/$kp/cmdline ]] && tr '\0' ' ' <"/proc/$kp/cmdline" | grep -qF "skydeck-keeper $home"; then
      pids="$pids $kp"
    fi
  fi
  pids=$(echo $pids | tr ' ' '\n' | sort -un | tr '\n' ' ')
  if [[ -n ${pids// /} ]]; then
    log "$name: stopping leftover processes: $pids"
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 1 50); do
      local alive=""
      for p in $pids; do [[ -d /proc/$p ]] && alive="$alive $p"; done
      [[ -z $alive ]] && break
      sleep 0.2
    done
    for p in $pids; do
      [[ -d /proc/$p ]] && kill -KILL "$p" 2>/dev/null || true
    done
    sleep 0.2
  fi
  local rest; rest=$(home_pids "$home")
  [[ -z $rest ]] || die "$name: processes of $home survived SIGKILL: $rest"
  rm -f "$d/endpoint"
  log "$name: down"
}

# -------------------------------------------------------------- status ----
health_ok() {
  local url=$1
  curl -s --max-time 5 "$url/api/health" 2>/dev/null | grep -q '"status":"healthy"'
}

cmd_status() {
  local name=${1:-}; check_name "$name"
  local ep=$PEERS/$name/endpoint
  [[ -f $ep ]] || { log "$name: not running (no $ep)"; return 1; }
  local url; url=$(cat "$ep")
  if health_ok "$url"; then
    log "$name: healthy at $url"
    return 0
  fi
  log "$name: not healthy at $url"
  return 1
}

# ------------------------------------------------------------------ up ----
write_config() {
  local home=$1 extra=${2:-}
  mkdir -p "$home/.sky"
  cat >"$home/.sky/config.yaml" <<'EOF'
# Written by skydeck scripts/peers/skypilot.sh: a local, offline demo server.
jobs:
  controller:
    # Managed jobs are served by this API server itself (no controller VM).
    consolidation_mode: true
allowed_clouds: [aws, gcp, lambda, kubernetes]
workspaces:
  default: {}
  ml-research: {}
EOF
  if [[ -n $extra ]]; then
    # New top-level keys only: a repeated key would silently replace the one above.
    "$VENV/bin/python" - "$home/.sky/config.yaml" "$extra" <<'EOF' || die "--extra-config $extra: see above"
import sys, yaml
base = yaml.safe_load(open(sys.argv[1]))
extra = yaml.safe_load(open(sys.argv[2]))
if not isinstance(extra, dict) or not extra:
    sys.exit(f'{sys.argv[2]}: not a YAML mapping')
dup = sorted(set(extra) & set(base))
if dup:
    sys.exit(f'{sys.argv[2]}: sets {dup}, which the base config already has')
EOF
    { printf '\n# From --extra-config %s:\n' "$extra"; cat "$extra"; } >>"$home/.sky/config.yaml"
  fi
  # The server checks PyPI for a newer release once a day; a fresh cache (in
  # the far future, so never stale) keeps it from trying.
  printf '{"release_version": "%s", "cached_at": 4102444800}\n' "$SKYPILOT_VERSION" \
    >"$home/.sky/version_cache.json"
}

# api_call URL PATH BODY -> prints the decoded return_value JSON, or fails
# with the server's error type/message on stderr.
api_call() {
  "$VENV/bin/python" - "$@" <<'EOF'
import json, sys, urllib.request, urllib.error
url, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
wait = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
hdrs = {'Content-Type': 'application/json', 'X-SkyPilot-API-Version': '62',
        'X-SkyPilot-Version': '0.14.1'}
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    r = opener.open(urllib.request.Request(url + path, body.encode(), hdrs),
                    timeout=20)
    rid = r.headers['X-Skypilot-Request-ID']
    r = opener.open(urllib.request.Request(
        f'{url}/api/get?request_id={rid}', headers=hdrs), timeout=max(wait, 5))
    payload = json.load(r)
except urllib.error.HTTPError as e:
    raw = e.read().decode(errors='replace')
    try:
        payload = json.loads(raw)['detail']
        err = json.loads(payload['error'])
        print(f"{path}: HTTP {e.code}: {err.get('type')}: {err.get('message')}",
              file=sys.stderr)
    except Exception:
        print(f'{path}: HTTP {e.code}: {raw[:300]}', file=sys.stderr)
    sys.exit(1)
except Exception as e:
    print(f'{path}: {type(e).__name__}: {e}', file=sys.stderr)
    sys.exit(1)
print(payload['return_value'])
EOF
}

start_server() {
  local name=$1 port=$2 d=$PEERS/$1
  log "$name: sky api start --port $port --host 127.0.0.1"
  # Each start gets a fresh server.log (earlier attempts are kept beside it), so that
  # start_failure reads this attempt only.
  local slog=$d/home/.sky/api_server/server.log
  if [[ -f $slog ]]; then
    cat "$slog" >>"$d/server-earlier-starts.log"
    rm -f "$slog"
  fi
  if ! run_env "$name" "$port" "$TIMEOUT_BIN" 300 "$VENV/bin/sky" api start \
      --port "$port" --host 127.0.0.1 >>"$d/start.log" 2>&1; then
    log "$name: 'sky api start' did not report success (see $d/start.log); waiting for /api/health anyway"
  fi
}

# The reason the server's latest start failed, from its log; empty while it has not failed.
start_failure() {
  local f=$PEERS/$1/home/.sky/api_server/server.log
  [[ -f $f ]] || return 0
  { grep 'Failed to start SkyPilot API server' "$f" || true; } |
    tail -n 1 | sed 's/.*Failed to start SkyPilot API server: //' | cut -c1-160
}

cmd_up() {
  local name=${1:-}; check_name "$name"; shift
  local clusters="" jobs="" port="" seed=1 clouds=aws,gcp,lambda,kubernetes extra=""
  while (($#)); do
    case $1 in
      --clouds) clouds=${2:?}; shift 2 ;;
      --extra-config) extra=${2:?}; shift 2 ;;
      --clusters) clusters=${2:?}; shift 2 ;;
      --jobs) jobs=${2:?}; shift 2 ;;
      --port) port=${2:?}; shift 2 ;;
      --seed) seed=${2:?}; shift 2 ;;
      *) die "up: unknown argument '$1'" ;;
    esac
  done
  [[ $clusters =~ ^[0-9]+$ && $jobs =~ ^[0-9]+$ ]] ||
    die "up: --clusters N and --jobs M are required (integers)"
  [[ $seed =~ ^[0-9]+$ ]] || die "up: --seed must be an integer"
  [[ $clouds =~ ^[a-z]+(,[a-z]+)*$ ]] || die "up: bad --clouds '$clouds'"
  if [[ -n $extra ]]; then
    [[ -f $extra ]] || die "up: --extra-config $extra: no such file"
    extra=$(cd "$(dirname "$extra")" && pwd)/$(basename "$extra")
  fi
  ensure_installed
  local t0=$SECONDS d=$PEERS/$name
  cmd_down "$name"
  [[ -z $port ]] && port=$(free_port)
  [[ $port =~ ^[0-9]+$ ]] || die "up: bad --port '$port'"
  if port_in_use "$port"; then die "up: port $port on 127.0.0.1 is already in use"; fi
  rm -rf "$d"
  mkdir -p "$d/home" "$d/tmp"
  make_tool_dir "$d/bin"
  echo "$port" >"$d/port"
  write_config "$d/home" "$extra"

  log "$name: seeding --clusters $clusters --jobs $jobs --seed $seed"
  if ! run_env "$name" "$port" "$TIMEOUT_BIN" 300 "$VENV/bin/python" "$SCRIPT_DIR/seed_fleet.py" \
      --clusters "$clusters" --jobs "$jobs" --seed "$seed" --clouds "$clouds" \
      --out "$d/fleet.json" --keeper-pidfile "$d/keeper.pid" >"$d/seed.log" 2>&1; then
    tail -n 30 "$d/seed.log" >&2
    die "$name: seeding failed (full log: $d/seed.log)"
  fi
  tail -n 1 "$d/seed.log" >&2
  log "$name: seeded after $((SECONDS - t0))s"

  local starts=1
  start_server "$name" "$port"
  local url=http://127.0.0.1:$port deadline=$((SECONDS + READY_TIMEOUT))
  # (the deadline bounds health + the jobs-queue check together)
  until health_ok "$url"; do
    # SkyPilot gives its request-queue process 60 s to come up; that process is started
    # with multiprocessing's spawn, so it imports all of sky again, which on a loaded
    # machine (a cold cargo build on two cores) can take longer. The server then exits
    # with "Failed to start SkyPilot API server"; starting it again is what a user would do.
    local failure; failure=$(start_failure "$name")
    if [[ -n $failure ]] && ((starts < 3)); then
      log "$name: the server exited during start (attempt $starts: $failure); starting it again in 5 s"
      starts=$((starts + 1))
      sleep 5
      start_server "$name" "$port"
      continue
    fi
    if [[ -n $failure ]]; then
      server_log_tail "$name"
      die "$name: the server exited during each of $starts starts (last: $failure); see $d/home/.sky/api_server/server.log"
    fi
    if ((SECONDS >= deadline)); then
      server_log_tail "$name"
      die "$name: /api/health at $url not healthy within ${READY_TIMEOUT}s (left as is for debugging; clean up with: $0 down $name)"
    fi
    sleep 1
  done
  log "$name: /api/health healthy after $((SECONDS - t0))s; waiting for the seeded jobs in /jobs/queue/v2"

  local want_jobs want_clusters out err restarted=0 got
  want_jobs=$("$VENV/bin/python" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["jobs"]))' "$d/fleet.json")
  want_clusters=$("$VENV/bin/python" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["clusters"]))' "$d/fleet.json")
  while :; do
    if out=$(api_call "$url" /jobs/queue/v2 \
        '{"all_users": true, "skip_finished": false, "fields": ["job_id", "status"]}' \
        $((deadline - SECONDS)) 2>"$d/queue.err"); then
      got=$(printf '%s' "$out" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["total"])')
      [[ $got == "$want_jobs" ]] && break
      err="jobs queue has $got jobs, expected $want_jobs"
    else
      err=$(cat "$d/queue.err")
      # Consolidation mode is read from a signal file written at server start;
      # if the server came up without it, a restart picks it up.
      if [[ $err == *ClusterNotUpError* && $restarted == 0 ]]; then
        log "$name: jobs queue not served locally yet ($err); restarting the server once"
        restarted=1
        run_env "$name" "$port" "$TIMEOUT_BIN" 60 "$VENV/bin/sky" api stop >>"$d/stop.log" 2>&1 || true
        start_server "$name" "$port"
        continue
      fi
    fi
    if ((SECONDS >= deadline)); then
      server_log_tail "$name"
      die "$name: /jobs/queue/v2 did not return the $want_jobs seeded jobs within ${READY_TIMEOUT}s: $err (left as is for debugging; clean up with: $0 down $name)"
    fi
    sleep 2
  done
  out=$(api_call "$url" /status '{"all_users": true, "include_credentials": false, "include_handle": false}') ||
    die "$name: /status failed"
  got=$(printf '%s' "$out" | "$VENV/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [[ $got == "$want_clusters" ]] ||
    die "$name: /status returned $got clusters, expected $want_clusters"
  echo "$url" >"$d/endpoint"
  log "$name: ready in $((SECONDS - t0))s: $want_clusters clusters, $want_jobs managed jobs; ground truth $d/fleet.json"
  log "$name: stop it with: $0 down $name"
  echo "$url"
}

# ---------------------------------------------------------------- main ----
case ${1:-} in
  install) cmd_install ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
