#!/usr/bin/env bash
# Builds kubento-kube (etcd + Kubernetes server components + kubectl, one
# binary) from the pinned k8s.io/kubernetes module, caches it outside the repo
# keyed by the sources' hash, and prints its path. A cached build is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KUBENTO_CACHE:-$HOME/.cache/kubento}/kube"
key="$(cat "$here/VERSION")-$(cat "$here"/go.mod "$here"/go.sum "$here"/*.go | sha256sum | cut -c1-12)"
bin="$cache/$key/kubento-kube"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "build.sh: Go is needed to build the Kubernetes binaries" >&2; exit 1; }
  mkdir -p "$cache/$key"
  echo "building Kubernetes $(cat "$here/VERSION") components into $bin (first time: ~10-20 min on 2 cores)..." >&2
  start=$SECONDS
  (cd "$here" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
  echo "built in $((SECONDS - start))s" >&2
fi
echo "$bin"
