#!/usr/bin/env bash
# Prometheus's promtool, the judge of skydeck's /metrics exposition.
#
#   prometheus.sh install   install Debian's `prometheus` package (promtool is in it) when
#                           promtool is missing; print promtool's path as the last line
set -euo pipefail
die() { printf 'prometheus.sh: error: %s\n' "$*" >&2; exit 1; }
case ${1:-} in
  install)
    if ! command -v promtool >/dev/null 2>&1; then
      command -v apt-get >/dev/null || die "promtool is missing and apt-get is not available; install Prometheus's promtool"
      SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
      printf 'prometheus.sh: installing Debian package prometheus (for promtool)\n' >&2
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2 ||
        { $SUDO apt-get update >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >&2; }
    fi
    command -v promtool
    ;;
  *) sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
