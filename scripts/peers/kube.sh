#!/usr/bin/env bash
# A real Kubernetes API server (v1.20.2, with etcd) for skydeck's discovery and proxy tests.
#
#   kube.sh install       build kube-apiserver from Debian's `kubernetes` source package with
#                         Debian's Go, once, into $CACHE (outside the repository; about 9 min
#                         cold on 2 cores), and install etcd; print the binary's path last
#   kube.sh up NAME       start etcd and kube-apiserver on free 127.0.0.1 ports under
#                         $PEERS/kube-NAME (certificates, a token file); writes `endpoint`,
#                         `ca.crt` and `admin-token` there; idempotent
#   kube.sh down NAME     stop them
#
# CACHE=${SKYDECK_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skydeck-peers}
# PEERS=${SKYDECK_PEERS_DIR:-<repo>/target/peers}
#
# Why from source: no registry reachable here ships a kube-apiserver binary (and kind, k3s and
# envtest download theirs or need Docker); Debian's bookworm source package vendors every Go
# dependency, so the build needs only Debian's own packages. The vendored reflect2 1.0.1 crashes
# under Go >= 1.18 (SIGSEGV in UnsafeMapType.UnsafeIterate the first time an object with labels
# is encoded), so it is replaced with Debian's reflect2 1.0.2 before `make`.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}
CACHE=${SKYDECK_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skydeck-peers}
BUILD=$CACHE/kubernetes-1.20.2
BIN=$BUILD/kube-apiserver

log() { printf 'kube.sh: %s\n' "$*" >&2; }
die() { printf 'kube.sh: error: %s\n' "$*" >&2; exit 1; }
SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo

apt_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 ||
    { $SUDO apt-get update >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; }
}

cmd_install() {
  if ! command -v etcd >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    log "installing Debian's etcd-server and openssl"
    apt_install etcd-server openssl
  fi
  if [[ -x $BIN ]] && "$BIN" --version 2>/dev/null | grep -q v1.20.2; then
    echo "$BIN"
    return 0
  fi
  command -v apt-get >/dev/null || die "kube-apiserver is not built and apt-get is not available"
  log "building kube-apiserver v1.20.2 from Debian's source package into $BUILD (once; about 9 min)"
  apt_install golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev
  local work=$CACHE/kube-src
  rm -rf "$work" && mkdir -p "$work"
  # deb-src for bookworm, only for this download, from the machine's own Debian mirror.
  local uri src=/etc/apt/sources.list.d/skydeck-kube-src.sources
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $uri ]] || die "cannot read the Debian mirror from /etc/apt/sources.list.d/debian.sources"
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" | $SUDO tee "$src" >/dev/null
  trap '$SUDO rm -f '"$src"'; $SUDO apt-get update >/dev/null 2>&1 || true' RETURN
  $SUDO apt-get update >&2
  (cd "$work" && apt-get source --download-only kubernetes >&2)
  local orig
  orig=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n 1)
  [[ -f $orig ]] || die "apt-get source kubernetes gave no orig tarball"
  tar -C "$work" -xzf "$orig"
  local tree
  tree=$(ls -d "$work"/kubernetes-1.20.* | head -n 1)
  [[ -d $tree ]] || die "no kubernetes-1.20.* tree in $work"
  local gopath=$work/gopath
  mkdir -p "$gopath/src/k8s.io" "$work/home"
  ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  rm -f "$tree"/vendor/github.com/modern-go/reflect2/*.go "$tree"/vendor/github.com/modern-go/reflect2/*.s
  cp "$r2"/*.go "$r2"/*.s "$tree/vendor/github.com/modern-go/reflect2/"
  (
    cd "$gopath/src/k8s.io/kubernetes"
    export GOPATH=$gopath GOCACHE=$CACHE/gocache HOME=$work/home CGO_ENABLED=0 GO111MODULE=off GOFLAGS=
    make WHAT=cmd/kube-apiserver >&2
  )
  mkdir -p "$BUILD"
  cp "$tree/_output/bin/kube-apiserver" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  rm -rf "$work"
  "$BIN" --version >&2
  echo "$BIN"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cmd_up() {
  local name=${1:?usage: kube.sh up NAME}
  local dir=$PEERS/kube-$name
  if [[ -f $dir/endpoint ]] && curl -skf --max-time 2 -H "Authorization: Bearer $(cat "$dir/admin-token")" \
      "$(cat "$dir/endpoint")/readyz" >/dev/null 2>&1; then
    cat "$dir/endpoint"
    return 0
  fi
  [[ -x $BIN ]] || die "kube-apiserver is not built; run: scripts/peers/kube.sh install"
  cmd_down "$name" 2>/dev/null || true
  rm -rf "$dir" && mkdir -p "$dir/certs"
  local eport pport sport
  eport=$(free_port); pport=$(free_port); sport=$(free_port)
  openssl genrsa -out "$dir/certs/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/certs/sa.key" -pubout -out "$dir/certs/sa.pub" 2>/dev/null
  local admin
  admin=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s' "$admin" >"$dir/admin-token"
  # Further users (tokens) are added by the tests through RBAC-less token lines; the file is
  # read once at start, so the tests' tokens are declared here: a reader and a rightless user.
  python3 -c 'import secrets; print(secrets.token_hex(16))' | tr -d '\n' >"$dir/reader-token"
  python3 -c 'import secrets; print(secrets.token_hex(16))' | tr -d '\n' >"$dir/norights-token"
  {
    printf '%s,admin,admin-uid,"system:masters"\n' "$admin"
    printf '%s,skydeck-reader,reader-uid\n' "$(cat "$dir/reader-token")"
    printf '%s,nobody,nobody-uid\n' "$(cat "$dir/norights-token")"
  } >"$dir/certs/tokens.csv"
  setsid etcd --data-dir "$dir/etcd-data" --listen-client-urls "http://127.0.0.1:$eport" \
    --advertise-client-urls "http://127.0.0.1:$eport" --listen-peer-urls "http://127.0.0.1:$pport" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pport" --initial-cluster "default=http://127.0.0.1:$pport" \
    >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  setsid "$BIN" --etcd-servers="http://127.0.0.1:$eport" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --secure-port="$sport" --insecure-port=0 --cert-dir="$dir/certs" --token-auth-file="$dir/certs/tokens.csv" \
    --authorization-mode=RBAC --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/certs/sa.pub" --service-account-signing-key-file="$dir/certs/sa.key" \
    --service-cluster-ip-range=10.96.0.0/24 --enable-priority-and-fairness=false \
    --disable-admission-plugins=ServiceAccount >"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
  local endpoint="https://127.0.0.1:$sport" i
  for i in $(seq 1 600); do
    if curl -skf --max-time 2 -H "Authorization: Bearer $admin" "$endpoint/readyz" >/dev/null 2>&1; then
      cp "$dir/certs/apiserver.crt" "$dir/ca.crt"
      echo "$endpoint" >"$dir/endpoint"
      log "kube-apiserver $name ready at $endpoint"
      echo "$endpoint"
      return 0
    fi
    kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null || { tail -n 40 "$dir/apiserver.log" >&2; die "kube-apiserver exited"; }
    sleep 0.2
  done
  tail -n 40 "$dir/apiserver.log" >&2
  die "kube-apiserver was not ready within 120 s"
}

cmd_down() {
  local name=${1:?usage: kube.sh down NAME}
  local dir=$PEERS/kube-$name f
  for f in apiserver etcd; do
    [[ -f $dir/$f.pid ]] || continue
    local pid i
    pid=$(cat "$dir/$f.pid")
    kill "$pid" 2>/dev/null || true
    # The API server takes a few seconds to drain; don't leave it behind.
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$f.pid"
  done
  rm -f "$dir/endpoint"
}

case ${1:-} in
  install) cmd_install ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  *) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
