#!/usr/bin/env bash
# Builds metrics-server from its Go module (sigs.k8s.io/metrics-server at the
# version in VERSION; no image, no binary download), caches it outside the repo
# in ${KUBENTO_CACHE:-~/.cache/kubento}/metrics-server/<version>-<hash>/, and
# prints its path. A cached build is reused. Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KUBENTO_CACHE:-$HOME/.cache/kubento}/metrics-server"
version="$(cat "$here/VERSION")"
key="$version-$(cat "$here/VERSION" "$here/build.sh" | sha256sum | cut -c1-12)"
bin="$cache/$key/metrics-server"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "metrics-server/build.sh: Go is needed to build metrics-server" >&2; exit 1; }
  echo "building metrics-server $version into $bin (first time: a few minutes on 2 cores)..." >&2
  start=$SECONDS
  tmp="$cache/$key/tmp.$$"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # Like upstream's Makefile: static, trimmed, the version stamped where
  # metrics-server reports it (k8s.io/client-go/pkg/version).
  pkg=k8s.io/client-go/pkg/version
  CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath \
    -ldflags "-s -w -X $pkg.gitVersion=$version -X $pkg.gitTreeState=clean" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$version" >&2
  mv "$tmp/metrics-server" "$bin"
  echo "built in $((SECONDS - start))s" >&2
fi
echo "$bin"
