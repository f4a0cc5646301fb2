#!/usr/bin/env bash
# Prints a directory holding prometheus-operator's CRDs (PodMonitor,
# ServiceMonitor, PrometheusRule, ...), taken from its Go module (no other
# download here; Go's module cache keeps it). The integration tier validates
# the chart's monitoring objects against them with a real API server.
set -euo pipefail
version="${PROMETHEUS_OPERATOR_VERSION:-v0.80.1}"
command -v go >/dev/null || { echo "prometheus-operator-crds.sh: Go is needed" >&2; exit 1; }
dir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" |
  sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[[ -d "$dir/example/prometheus-operator-crd" ]] || { echo "no CRDs in $dir" >&2; exit 1; }
echo "$dir/example/prometheus-operator-crd"
