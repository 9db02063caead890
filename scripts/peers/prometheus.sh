#!/usr/bin/env bash
# Prometheus's promtool, the judge of skydeck's /metrics exposition.
#
#   prometheus.sh install   install Debian's `prometheus` package (the server and promtool)
#                           when either is missing; print promtool's path as the last line
#   prometheus.sh server    print the Prometheus server's path (after install); the tests
#                           start their own servers on 127.0.0.1 with configs they write
set -euo pipefail
die() { printf 'prometheus.sh: error: %s\n' "$*" >&2; exit 1; }
case ${1:-} in
  install)
    if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
      command -v apt-get >/dev/null || die "promtool is missing and apt-get is not available; install Prometheus's promtool"
      SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
      printf 'prometheus.sh: installing Debian package prometheus (for promtool)\n' >&2
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2 ||
        { $SUDO apt-get update >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2; }
    fi
    command -v promtool
    ;;
  server) command -v prometheus || die "prometheus is not installed; run: scripts/peers/prometheus.sh install" ;;
  *) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
