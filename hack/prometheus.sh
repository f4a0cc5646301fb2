#!/usr/bin/env bash
# Builds Prometheus (the server) from its Go module, caches it in
# ~/.cache/kubento/prometheus/<version>/prometheus, and prints the path.
#
# Why not Debian's `prometheus` package (installed by hack/install-deps.sh for
# promtool)? Debian builds it without Kubernetes service discovery ("Kubernetes
# support has been completely removed", /usr/share/doc/prometheus/NEWS.Debian.gz),
# so it cannot run the chart's documented scrape configuration
# (kubernetes_sd_configs). This is the same version, 2.42.0 (module v0.42.0),
# built from upstream source. It cannot be `go install`ed (its go.mod has
# replace directives): it is built inside its module directory instead.
# First build: about 5 min on 2 cores; then cached.
set -euo pipefail
version="${PROMETHEUS_VERSION:-v2.42.0}"
bin="${KUBENTO_CACHE:-$HOME/.cache/kubento}/prometheus/$version/prometheus"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "prometheus.sh: Go is needed to build Prometheus" >&2; exit 1; }
  echo "building Prometheus $version into $bin (first time: a few minutes)..." >&2
  start=$SECONDS
  module="github.com/prometheus/prometheus@v0.${version#v2.}"
  src="$(cd / && GOFLAGS=-mod=mod go mod download -json "$module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src/cmd/prometheus" ]] || { echo "prometheus.sh: $module has no cmd/prometheus" >&2; exit 1; }
  mkdir -p "$(dirname "$bin")"
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v} -X github.com/prometheus/common/version.Branch=upstream-module" -o "$bin.tmp" ./cmd/prometheus) >&2
  mv "$bin.tmp" "$bin"
  echo "built in $((SECONDS - start))s" >&2
fi
echo "$bin"
