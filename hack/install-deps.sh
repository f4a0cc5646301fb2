#!/usr/bin/env bash
# Installs what the tests need that the machine may lack: Debian packages
# (only when missing, so a prepared machine makes no network calls) and checks
# the Go toolchain that builds the Kubernetes components.
set -euo pipefail
need=()
# prometheus for promtool (the unit tier runs `promtool check|test rules`) and
# prometheus-alertmanager (the e2e tier starts it: e2e/monitoring.py; the
# packaged services are not used). Debian's Prometheus server has no Kubernetes
# service discovery: the e2e tier builds upstream's (hack/prometheus.sh).
for pkg in openssl curl ca-certificates debootstrap prometheus prometheus-alertmanager; do
  [[ "$(dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing Debian packages: ${need[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v go >/dev/null || { echo "Go (>= 1.24; metrics-server v0.9 wants 1.26.4 and fetches that toolchain itself when older) is required to build the Kubernetes components and metrics-server: https://go.dev/dl/" >&2; exit 1; }
